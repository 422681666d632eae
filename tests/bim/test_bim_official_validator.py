"""Every IFC sample's tileset, as the ingest job publishes it, passes the official CesiumGS
3D Tiles validator with no error (optional string columns such as ``assembly`` or ``space``
are empty for whole tiles of these models)."""

from __future__ import annotations

import pytest
from helpers_3dtiles_validator import assert_no_errors
from helpers_bim import DUPLEX, FZK, HOUSE, MAPCONV

ANCHOR = {"lon": 114.2466, "lat": 22.7209, "height": 45.0, "rotation": 15.0}


@pytest.mark.parametrize("path, params", [(FZK, {}), (DUPLEX, {}), (HOUSE, {"anchor": ANCHOR}),
                                          (MAPCONV, {"crs": "EPSG:3857"})],
                         ids=["fzk-ifc4-site", "duplex-ifc2x3", "openhouse-anchor",
                              "mapconversion"])
def test_bim_tileset_passes_the_official_validator(ingested, path, params):
    run = ingested(path, **params)
    assert run.status == "succeeded", run.job.error
    version = sorted(run.tileset_dir.glob("v*"))[-1]
    report = assert_no_errors(version / "tileset.json")
    assert report["numWarnings"] == 0, report["issues"]
