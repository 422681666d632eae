"""Shared data of the reconstruction tests: a small simulated district and the AHN3 crop."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
import pytest

from recon.simulate import Survey, simulate_district

AHN_CROP = Path(__file__).resolve().parents[1] / "data" / "recon" / "ahn3_delft_crop_100m.laz"


@pytest.fixture(scope="session")
def district() -> Survey:
    return simulate_district(n_buildings=10, area_m=140.0, density=12.0, noise_m=0.03, seed=7)


@pytest.fixture(scope="session")
def ahn() -> dict[str, np.ndarray]:
    las = laspy.read(AHN_CROP)
    return {
        "xyz": np.column_stack([las.x, las.y, las.z]),
        "return_number": np.asarray(las.return_number),
        "number_of_returns": np.asarray(las.number_of_returns),
        "classification": np.asarray(las.classification),
    }

