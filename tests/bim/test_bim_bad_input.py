"""Bad IFC input: a clear job error, or the one bad element reported while the rest loads;
and a failed re-ingest leaves what was published before."""

from __future__ import annotations

import pytest
from helpers_bim import FZK, HOUSE, edit_ifc, element_ids, run_ingest, tile_vertices
from sqlalchemy import text

from readers.ifc.errors import IfcInputError
from readers.ifc.geometry import CRASH_ENV, DEFAULT_GEOMETRY_LIBRARY, GeometryPool
from readers.ifc.georef import Anchor
from readers.ifc.model import read_bim
from service.core.db import sync_engine

ANCHOR = {"lon": 114.25, "lat": 22.72, "height": 40.0}


def _failed_with(db_url, settings, path, match: str, **params) -> None:
    run = run_ingest(db_url, settings, path, **params)
    assert run.status == "failed"
    assert match in run.job.error, run.job.error
    assert "internal error" not in run.job.error
    with sync_engine(db_url).connect() as conn:
        status = conn.execute(text("SELECT status FROM datasets WHERE id = :d"),
                              {"d": run.dataset_id}).scalar_one()
        rows = conn.execute(text("SELECT count(*) FROM bim_elements WHERE dataset_id = :d"),
                            {"d": run.dataset_id}).scalar_one()
    assert status == "failed" and rows == 0


def test_not_an_ifc_file(db_url, bim_settings, tmp_path):
    path = tmp_path / "notes.ifc"
    path.write_text("These are meeting notes, not a building model.\n")
    _failed_with(db_url, bim_settings, path, "not an IFC file")


def test_truncated_file(db_url, bim_settings, tmp_path):
    path = tmp_path / "half.ifc"
    data = FZK.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _failed_with(db_url, bim_settings, path, "truncated")


def test_unknown_schema(db_url, bim_settings, tmp_path):
    path = tmp_path / "future.ifc"
    path.write_bytes(HOUSE.read_bytes().replace(b"FILE_SCHEMA(('IFC4'));",
                                                b"FILE_SCHEMA(('IFC5X1'));"))
    _failed_with(db_url, bim_settings, path, "'IFC5X1' is not supported", anchor=ANCHOR)


def _corrupt(tmp_path, entity: int, edit) -> tuple[object, int]:
    """FZK-Haus with the line that defines ``#entity`` edited; returns the file and that
    line's number (1-based), counted here apart from the code under test."""
    lines = FZK.read_bytes().split(b"\n")
    (number,) = [i for i, line in enumerate(lines) if line.startswith(b"#%d=" % entity)]
    lines[number] = edit(lines[number])
    path = tmp_path / f"damaged-{entity}.ifc"
    path.write_bytes(b"\n".join(lines))
    return path, number + 1


def test_parse_error_names_line_entity_and_what_to_do(db_url, bim_settings, tmp_path):
    # ifcopenshell refuses this one with "Syntax error during parse, check logs"
    path, line = _corrupt(tmp_path, 35107, lambda t: t.replace(b"(#35106)", b"(#x35106)"))
    run = run_ingest(db_url, bim_settings, path)
    assert run.status == "failed"
    error = run.job.error
    assert f"line {line}, entity #35107" in error, error
    assert "'x35106'" in error and "#35107= IFCFACE((#x35106));" in error
    assert "export it again from the authoring tool" in error and "cut short" in error
    assert "check logs" not in error and "internal error" not in error


@pytest.mark.parametrize("entity, edit, what", [
    # an unclosed parenthesis: ifcopenshell opened the file without error and dropped the
    # 24,000 entities after it
    (35107, lambda t: t.replace(b"((", b"(((", 1), "not closed"),
    # an entity type the schema does not know: silently dropped, its users left dangling
    (35107, lambda t: t.replace(b"IFCFACE", b"IFCFACEX"), "'IFCFACEX' not found"),
    (19, lambda t: t.replace(b"= ", b"= @", 1), "unexpected character"),
    (35107, lambda t: t.replace(b"#35107", b"#99999999999999999999"), "invalid instance name"),
    (35107, lambda t: t.replace(b"(", b"(1.2.3e,", 1), "invalid token '1.2.3e'"),
], ids=["unclosed-parenthesis", "unknown-entity", "stray-character", "huge-id", "bad-number"])
def test_damaged_files_are_refused_with_the_line(tmp_path, entity, edit, what):
    from readers.ifc.reader import open_ifc

    path, line = _corrupt(tmp_path, entity, edit)
    with pytest.raises(IfcInputError) as info:
        open_ifc(path)
    message = str(info.value)
    assert f"line {line}" in message and what in message, message
    assert "export it again" in message


def test_intact_samples_pass_the_statement_scan():
    from readers.ifc.step_errors import scan_data_section

    for path in (FZK, HOUSE):
        assert scan_data_section(path.read_bytes()) is None


def test_model_without_geometry(db_url, bim_settings, tmp_path):
    def strip(model):
        for product in model.by_type("IfcProduct"):
            product.Representation = None

    path = edit_ifc(HOUSE, tmp_path / "nogeometry.ifc", strip)
    _failed_with(db_url, bim_settings, path, "no geometry", anchor=ANCHOR)


def test_model_without_georeferencing_or_anchor(db_url, bim_settings):
    _failed_with(db_url, bim_settings, HOUSE, "give an anchor")


def test_bad_anchor_param(db_url, bim_settings):
    _failed_with(db_url, bim_settings, HOUSE, "anchor", anchor="somewhere nice")


def test_unknown_geometry_library(db_url, bim_settings):
    _failed_with(db_url, bim_settings, FZK, "geometry_library must be one of",
                 geometry_library="cgal")


def _break_first_wall(model) -> None:
    """Give the first wall a profile of three identical points: the kernel refuses it."""
    wall = model.by_type("IfcWallStandardCase")[0]
    for rep in wall.Representation.Representations:
        for item in rep.Items:
            for sub in model.traverse(item):
                if sub.is_a("IfcExtrudedAreaSolid"):
                    pts = [model.createIfcCartesianPoint((0.0, 0.0)) for _ in range(3)]
                    sub.SweptArea = model.createIfcArbitraryClosedProfileDef(
                        "AREA", None, model.createIfcPolyline(pts))


def test_element_whose_geometry_fails_is_reported_and_the_rest_loads(db_url, bim_settings,
                                                                    tmp_path):
    import ifcopenshell

    path = edit_ifc(HOUSE, tmp_path / "brokenwall.ifc", _break_first_wall)
    wall = ifcopenshell.open(str(path)).by_type("IfcWallStandardCase")[0]
    run = run_ingest(db_url, bim_settings, path, anchor=ANCHOR)
    assert run.status == "succeeded", run.job.error
    report = run.job.report
    assert report["failed_count"] == 1
    failed = report["failed"][0]
    assert failed["global_id"] == wall.GlobalId and failed["ifc_class"] == wall.is_a()
    assert "geometry failed" in failed["reason"] and "IfcPolyline" in failed["reason"]
    ids = element_ids(db_url, run.dataset_id)
    assert wall.GlobalId not in ids and len(ids) == report["elements"] >= 30


def _flatten_first_wall(model) -> None:
    """Give the first wall a body of two slivers 1e-11 m wide: the kernel meshes them, but
    they have no area to draw."""
    wall = model.by_type("IfcWallStandardCase")[0]
    body = next(r for r in wall.Representation.Representations
                if r.RepresentationIdentifier == "Body")
    points = model.createIfcCartesianPointList3D(  # millimetres
        [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1e-8, 0.0), (1.0, 1e-8, 0.0)])
    body.Items = [model.createIfcTriangulatedFaceSet(points, None, None,
                                                     [(1, 2, 3), (2, 4, 3)], None)]
    body.RepresentationType = "Tessellation"
    for void in list(wall.HasOpenings or ()):
        model.remove(void)


def test_element_without_surface_area_is_reported_and_kept_out(db_url, bim_settings,
                                                               tmp_path):
    import ifcopenshell

    path = edit_ifc(HOUSE, tmp_path / "flatwall.ifc", _flatten_first_wall)
    wall = ifcopenshell.open(str(path)).by_type("IfcWallStandardCase")[0]
    run = run_ingest(db_url, bim_settings, path, anchor=ANCHOR)
    assert run.status == "succeeded", run.job.error
    report = run.job.report
    assert [(f["global_id"], f["reason"]) for f in report["failed"]] == [
        (wall.GlobalId, "geometry has no surface area")]
    assert report["failed_count"] == 1
    ids = element_ids(db_url, run.dataset_id)
    _, tile_rows = tile_vertices(run.tileset_dir)
    assert wall.GlobalId not in ids and wall.GlobalId not in tile_rows
    assert ids == set(tile_rows) and len(ids) == report["elements"] >= 30


def test_a_crash_of_the_geometry_kernel_costs_one_element(monkeypatch):
    """A segmentation fault in the kernel kills its child process; the chunk is split until
    the element that crashes it is found, and everything else is meshed."""
    import ifcopenshell

    model = ifcopenshell.open(str(HOUSE))
    victim = model.by_type("IfcMember")[3]
    monkeypatch.setenv(CRASH_ENV, str(victim.id()))
    pool = GeometryPool(2)
    try:
        bim = read_bim(HOUSE, pool=pool, anchor=Anchor(114.25, 22.72))
    finally:
        pool.close()
    assert [f["global_id"] for f in bim.failures] == [victim.GlobalId]
    assert "crashed" in bim.failures[0]["reason"]
    assert len(bim.elements) == bim.products - 1


def test_an_element_that_crashes_the_fast_kernel_gets_opencascade(monkeypatch):
    """A crash of the hybrid kernel alone (not of OpenCASCADE) costs nothing: the element is
    meshed again with OpenCASCADE and loads like the rest."""
    import ifcopenshell

    model = ifcopenshell.open(str(HOUSE))
    victim = model.by_type("IfcMember")[3]
    monkeypatch.setenv(CRASH_ENV, f"{victim.id()}:{DEFAULT_GEOMETRY_LIBRARY}")
    pool = GeometryPool(2)
    try:
        bim = read_bim(HOUSE, pool=pool, anchor=Anchor(114.25, 22.72))
    finally:
        pool.close()
    assert bim.failures == []
    assert len(bim.elements) == bim.products
    assert victim.GlobalId in {e.info.global_id for e in bim.elements}


def test_failed_reingest_keeps_what_was_published(db_url, bim_settings):
    first = run_ingest(db_url, bim_settings, HOUSE, anchor=ANCHOR)
    assert first.status == "succeeded", first.job.error
    again = run_ingest(db_url, bim_settings, HOUSE, dataset_id=first.dataset_id,
                       anchor={"lon": 500, "lat": 0})
    assert again.status == "failed" and "not on the globe" in again.job.error
    with sync_engine(db_url).connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM bim_elements WHERE dataset_id = :d"),
                            {"d": first.dataset_id}).scalar_one()
        current = conn.execute(text(
            "SELECT version FROM tilesets WHERE name = :n AND is_current"),
            {"n": f"bim-{first.dataset_id}"}).scalar_one()
    assert rows == first.job.report["elements"]
    assert current == first.job.report["version"]


@pytest.mark.parametrize("anchor", ["1", {"lon": 1}])
def test_anchor_errors_name_the_fix(anchor):
    from readers.ifc.georef import parse_anchor

    with pytest.raises(IfcInputError, match="lon"):
        parse_anchor(anchor)
