"""Georeferencing of real IFC files (no database): each source in its order of trust, the
scale trap, grid convergence, and the refusal that says what to supply."""

from __future__ import annotations

import math

import ifcopenshell
import numpy as np
import pytest
from helpers_bim import DUPLEX, FZK, HOUSE, MAPCONV, edit_ifc
from pyproj import Geod, Proj, Transformer

from readers.ifc.errors import IfcInputError
from readers.ifc.georef import Anchor, parse_anchor, resolve
from tiler.crs import geoid_undulation

GEOD = Geod(ellps="WGS84")


def _open(path):
    return ifcopenshell.open(str(path))


def _geoid(lon: float, lat: float) -> float:
    return float(geoid_undulation(np.array([lon]), np.array([lat]))[0])


def _distance_m(lon1, lat1, lon2, lat2) -> float:
    return GEOD.inv(lon1, lat1, lon2, lat2)[2]


def test_ifcsite_with_true_north_lands_where_the_site_says():
    p = resolve(_open(FZK))
    assert p.source == "IfcSite"
    lat0 = 49 + 6 / 60 + 1.566 / 3600  # RefLatitude (49, 6, 1, 566000)
    lon0 = 8 + 26 / 60 + 11.5404 / 3600  # RefLongitude (8, 26, 11, 540400)
    lon, lat, h = p.to_wgs84(np.zeros((1, 3)))[0]
    assert _distance_m(lon, lat, lon0, lat0) < 0.01
    assert h == pytest.approx(110.0 + _geoid(lon0, lat0), abs=0.01)  # EGM96 applied
    assert "EGM96" in p.height_note
    # The model context's true north (0.766, 0.643) must point to geographic north.
    north = np.array([[0.766044443119 * 20, 0.642787609687 * 20, 0.0]])
    nlon, nlat, _ = p.to_wgs84(north)[0]
    azimuth, _, dist = GEOD.inv(lon, lat, nlon, nlat)
    assert dist == pytest.approx(20, abs=0.01)
    assert azimuth == pytest.approx(0.0, abs=0.01)


def test_ifc2x3_site_with_negative_longitude():
    p = resolve(_open(DUPLEX))
    lon, lat, _ = p.to_wgs84(np.zeros((1, 3)))[0]
    assert lat == pytest.approx(41 + 52 / 60 + 27.84 / 3600, abs=1e-7)
    assert lon == pytest.approx(-(87 + 38 / 60 + 21.84 / 3600), abs=1e-6)
    # RefElevation 0: sea level, as the file says, and a warning that it is likely unset
    assert p.to_wgs84(np.zeros((1, 3)))[0, 2] == pytest.approx(_geoid(lon, lat), abs=0.01)
    assert any("RefElevation" in w for w in p.warnings)
    assert not resolve(_open(FZK)).warnings


def test_unnamed_projected_crs_needs_a_crs_then_lands_where_the_conversion_says():
    model = _open(MAPCONV)
    with pytest.raises(IfcInputError, match="crs=EPSG"):
        resolve(model)
    p = resolve(model, crs="EPSG:3857")
    assert p.source == "IfcMapConversion" and p.crs == "EPSG:3857"
    # millimetre project, Scale omitted: the unit ratio is used, and said so
    assert any("0.001" in w for w in p.warnings)
    pts = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 2.0], [0.0, 5.0, 0.0]])
    llh = p.to_wgs84(pts)
    e, n = Transformer.from_crs(4326, 3857, always_xy=True).transform(llh[:, 0], llh[:, 1])
    t = math.radians(-30)  # XAxisAbscissa 0.866, XAxisOrdinate -0.5
    exp_e = 15000 + pts[:, 0] * math.cos(t) - pts[:, 1] * math.sin(t)
    exp_n = 0 + pts[:, 0] * math.sin(t) + pts[:, 1] * math.cos(t)
    assert np.abs(e - exp_e).max() < 0.01 and np.abs(n - exp_n).max() < 0.01
    assert np.allclose(p.from_wgs84(llh), pts, atol=1e-3)


def _with_map_conversion(tmp_path, name: str, scale, eastings=500_000.0,
                         northings=2_510_000.0, crs_name="EPSG:4547"):
    def edit(model):
        mc = model.by_type("IfcMapConversion")[0]
        mc.Eastings, mc.Northings, mc.OrthogonalHeight = eastings, northings, 40.0
        mc.Scale = scale
        mc.TargetCRS.Name = crs_name

    return _open(edit_ifc(MAPCONV, tmp_path / name, edit))


def test_scale_written_as_1000_for_millimetres_is_caught(tmp_path):
    right = resolve(_with_map_conversion(tmp_path, "right.ifc", 0.001))
    wrong = resolve(_with_map_conversion(tmp_path, "wrong.ifc", 1000.0))
    assert not right.warnings
    assert any("inverse" in w for w in wrong.warnings)
    pts = np.array([[0.0, 0.0, 0.0], [12.0, 7.0, 3.0]])
    a, b = right.to_wgs84(pts), wrong.to_wgs84(pts)
    assert np.abs(a - b).max() < 1e-9
    # and the origin is where the conversion says: E 500000 N 2510000 in EPSG:4547, 40 m
    e, n = Transformer.from_crs(4326, 4547, always_xy=True).transform(a[0, 0], a[0, 1])
    assert abs(e - 500_000) < 0.01 and abs(n - 2_510_000) < 0.01
    assert a[0, 2] == pytest.approx(40.0 + _geoid(a[0, 0], a[0, 1]), abs=0.01)


def test_scale_that_fits_no_unit_ratio_is_refused(tmp_path):
    with pytest.raises(IfcInputError, match="does not match the unit ratio"):
        resolve(_with_map_conversion(tmp_path, "odd.ifc", 7.0))


def test_grid_convergence_is_applied_vertex_by_vertex(tmp_path):
    # 150 km east of the central meridian 114 E of EPSG:4547: about 0.6 degrees convergence
    p = resolve(_with_map_conversion(tmp_path, "east.ifc", 0.001, eastings=650_000.0))
    lon, lat, _ = p.to_wgs84(np.zeros((1, 3)))[0]
    expected = Proj("EPSG:4547").get_factors(lon, lat).meridian_convergence
    assert abs(expected) > 0.3
    assert p.details["grid_convergence_deg"] == pytest.approx(expected, abs=1e-6)
    # the model x axis: -30 deg from grid east; grid north lies the convergence east of true
    # north, so the axis is that much further clockwise from true east
    xl, yl, _ = p.to_wgs84(np.array([[100.0, 0.0, 0.0]]))[0]
    azimuth = GEOD.inv(lon, lat, xl, yl)[0]
    true_from_east = 90 - azimuth
    assert true_from_east == pytest.approx(-30 - expected, abs=0.01)
    assert p.details["model_x_axis_deg_from_true_east"] == pytest.approx(true_from_east,
                                                                        abs=0.01)


def test_anchor_wins_over_the_site_and_rotates_the_model():
    model = _open(FZK)
    p = resolve(model, anchor=Anchor(114.25, 22.72, 35.0, 90.0))
    assert p.source == "anchor"
    lon, lat, h = p.to_wgs84(np.zeros((1, 3)))[0]
    assert (lon, lat) == pytest.approx((114.25, 22.72), abs=1e-9)
    assert h == pytest.approx(35.0 + _geoid(114.25, 22.72), abs=0.01)
    # rotation 90: the model x axis points north
    xl, yl, _ = p.to_wgs84(np.array([[50.0, 0.0, 0.0]]))[0]
    assert GEOD.inv(lon, lat, xl, yl)[0] == pytest.approx(0.0, abs=0.01)
    ell = resolve(model, anchor=Anchor(114.25, 22.72, 35.0), vertical="ellipsoidal")
    assert ell.to_wgs84(np.zeros((1, 3)))[0, 2] == pytest.approx(35.0, abs=1e-6)


def test_no_georeferencing_is_refused_with_what_to_supply():
    with pytest.raises(IfcInputError, match="anchor") as err:
        resolve(_open(HOUSE))
    assert "lon" in str(err.value) and "lat" in str(err.value)


@pytest.mark.parametrize("value, expected", [
    ("114.25,22.72", Anchor(114.25, 22.72)),
    ("114.25,22.72,35,90", Anchor(114.25, 22.72, 35.0, 90.0)),
    ('{"lon": 1, "lat": 2, "height": 3}', Anchor(1.0, 2.0, 3.0)),
    ({"lon": 1, "lat": 2, "rotation": 4}, Anchor(1.0, 2.0, 0.0, 4.0)),
    (None, None),
])
def test_anchor_forms(value, expected):
    assert parse_anchor(value) == expected


@pytest.mark.parametrize("value", ["1", "a,b", '{"lon": 1}', '{"lon": 1, "lat": 2, "x": 3}',
                                   "200,0", "0,95", '{"lon": "nan", "lat": 1}', "[1,2]"])
def test_bad_anchors_are_refused(value):
    with pytest.raises(IfcInputError):
        parse_anchor(value)


def test_ifc2x3_epset_map_conversion_wins_over_the_site(tmp_path):
    """IFC2X3 has no IfcMapConversion: the buildingSMART guide's property sets carry it."""
    import ifcopenshell.api.pset

    def edit(model):
        site = model.by_type("IfcSite")[0]
        crs = ifcopenshell.api.pset.add_pset(model, product=site, name="ePSet_ProjectedCRS")
        ifcopenshell.api.pset.edit_pset(model, pset=crs, properties={"Name": "EPSG:32616"})
        mc = ifcopenshell.api.pset.add_pset(model, product=site, name="ePSet_MapConversion")
        ifcopenshell.api.pset.edit_pset(model, pset=mc, properties={
            "Eastings": 447_000.0, "Northings": 4_636_000.0, "OrthogonalHeight": 180.0,
            "XAxisAbscissa": 0.0, "XAxisOrdinate": 1.0, "Scale": 1.0})

    p = resolve(_open(edit_ifc(DUPLEX, tmp_path / "epset.ifc", edit)))
    assert p.source == "ePSet_MapConversion" and p.crs == "EPSG:32616"
    llh = p.to_wgs84(np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]))
    e, n = Transformer.from_crs(4326, 32616, always_xy=True).transform(llh[:, 0], llh[:, 1])
    # rotation 90 deg: the model x axis runs grid north
    assert np.allclose(e, [447_000, 447_000], atol=0.01)
    assert np.allclose(n, [4_636_000, 4_636_010], atol=0.01)
    assert llh[0, 2] == pytest.approx(180.0 + _geoid(llh[0, 0], llh[0, 1]), abs=0.01)


def _in_map_coordinates(tmp_path):
    """IfcOpenHouse (millimetres) moved to E 500 km, N 2510 km: exported in map units."""
    def edit(model):
        site = model.by_type("IfcSite")[0]
        loc = site.ObjectPlacement.RelativePlacement.Location
        loc.Coordinates = (500_000_000.0, 2_510_000_000.0, 40_000.0)

    return edit_ifc(HOUSE, tmp_path / "shared_coordinates.ifc", edit)


def test_model_in_map_coordinates_is_placed_by_the_crs_given(tmp_path):
    from readers.ifc.geometry import shared_pool
    from readers.ifc.model import read_bim

    path = _in_map_coordinates(tmp_path)
    with pytest.raises(IfcInputError, match="km from its origin"):
        read_bim(path, pool=shared_pool(), anchor=Anchor(114.25, 22.72))
    bim = read_bim(path, pool=shared_pool(), crs="EPSG:4547")
    assert bim.placement.source == "crs" and bim.placement.crs == "EPSG:4547"
    lo, hi = bim.bounds()["min"], bim.bounds()["max"]
    e, n = Transformer.from_crs(4326, 4547, always_xy=True).transform(
        (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2)
    assert abs(e - 500_000) < 30 and abs(n - 2_510_000) < 30  # a house of about 10 m



def test_orthogonal_height_far_off_the_earth_is_refused(tmp_path):
    """An IfcMapConversion height written in millimetres (40,000 for 40 m) would float the
    model 40 km up: refused by the placement check, not published."""
    from readers.ifc.georef import check_on_globe

    def edit(model):
        mc = model.by_type("IfcMapConversion")[0]
        mc.Eastings, mc.Northings, mc.OrthogonalHeight = 500_000.0, 2_510_000.0, 40_000.0
        mc.TargetCRS.Name = "EPSG:4547"

    placement = resolve(_open(edit_ifc(MAPCONV, tmp_path / "high.ifc", edit)))
    llh = placement.to_wgs84(np.array([[0.0, 0.0, 0.0], [12.0, 7.0, 3.0]]))
    with pytest.raises(IfcInputError, match="height"):
        check_on_globe(placement, llh)
