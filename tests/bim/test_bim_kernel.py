"""The default geometry kernel (ifcopenshell's hybrid: simple CGAL, OpenCASCADE where that
fails) against OpenCASCADE alone, IfcConvert's default: the same elements, each with its
bounding box within 1 cm and its surface area within 1 %, on every sample."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_bim import DUPLEX, FZK, HOUSE, MAPCONV

from readers.ifc.geometry import DEFAULT_GEOMETRY_LIBRARY, shared_pool
from readers.ifc.georef import parse_anchor
from readers.ifc.model import read_bim


def _shapes(path, library: str, **kw) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    model = read_bim(path, pool=shared_pool(), geometry_library=library, **kw)
    assert not model.failures, model.failures[:3]
    out = {}
    for e in model.elements:
        v, f = e.geometry.verts, e.geometry.faces
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        area = float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2)
        out[e.info.global_id] = (v.min(axis=0), v.max(axis=0), area)
    return out


@pytest.mark.parametrize("path, kw", [
    (FZK, {}), (DUPLEX, {}),
    (HOUSE, {"anchor": parse_anchor({"lon": 114.2466, "lat": 22.7209, "height": 45})}),
    (MAPCONV, {"crs": "EPSG:3857"})], ids=["fzk", "duplex", "openhouse", "mapconversion"])
def test_default_kernel_matches_opencascade(path, kw):
    assert DEFAULT_GEOMETRY_LIBRARY != "opencascade"
    fast = _shapes(path, DEFAULT_GEOMETRY_LIBRARY, **kw)
    reference = _shapes(path, "opencascade", **kw)
    assert set(fast) == set(reference)
    for gid, (lo, hi, area) in reference.items():
        f_lo, f_hi, f_area = fast[gid]
        assert np.abs(f_lo - lo).max() < 0.01 and np.abs(f_hi - hi).max() < 0.01, gid
        assert abs(f_area - area) <= 0.01 * area, (gid, f_area, area)


def test_an_unknown_geometry_library_is_refused():
    with pytest.raises(ValueError, match="geometry library must be one of"):
        read_bim(MAPCONV, pool=shared_pool(), crs="EPSG:3857", geometry_library="cgal")
