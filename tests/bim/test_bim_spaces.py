"""IFC spaces (rooms) through the real ingest job and PostGIS: every IfcSpace stored with its
footprint, height range and floor area (checked against the file's own quantities), never
in the tiles nor among the elements; elements in the room the file contains them in, else
the one around them; the rooms each element bounds, as the file's IfcRelSpaceBoundary says;
/bim/spaces (?element=) and /bim/elements?space= (&space_relation=); a re-ingest replaces the
rooms and the boundaries, and a room whose geometry fails is kept without it."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import httpx
import ifcopenshell
import ifcopenshell.util.element as ue
import pytest
from helpers_bim import DUPLEX, FZK, HOUSE, MAPCONV, edit_ifc, run_ingest, tile_vertices
from sqlalchemy import text

from service.core.db import sync_engine

# the same params as test_bim_ingest.py, so the session's ingests are shared
ANCHOR = {"lon": 114.2466, "lat": 22.7209, "height": 45.0, "rotation": 15.0}
SAMPLES = [(FZK, {}, 7), (DUPLEX, {}, 21), (HOUSE, {"anchor": ANCHOR}, 0),
           (MAPCONV, {"crs": "EPSG:3857"}, 0)]
SAMPLE_IDS = ["fzk", "duplex", "openhouse", "mapconversion"]
SOFA = "M_Sofa:1830mm:1830mm:168377"  # Duplex_A: contained in room A102, Living Room


def _spaces(db_url: str, dataset_id: int) -> dict[str, object]:
    with sync_engine(db_url).connect() as conn:
        rows = conn.execute(text(
            "SELECT global_id, name, long_name, storey, psets, floor_area, min_height, "
            "max_height, ST_Area(footprint::geography) AS geo_area, ST_IsValid(footprint) "
            "AS valid, ST_XMin(bbox3d) AS x0, ST_XMax(bbox3d) AS x1 FROM bim_spaces "
            "WHERE dataset_id = :d"), {"d": dataset_id}).all()
    return {r.global_id: r for r in rows}


def _element_spaces(db_url: str, dataset_id: int) -> dict[str, str | None]:
    with sync_engine(db_url).connect() as conn:
        return dict(conn.execute(text(
            "SELECT global_id, space_global_id FROM bim_elements WHERE dataset_id = :d"),
            {"d": dataset_id}).all())


def _element_bounds(db_url: str, dataset_id: int) -> dict[str, list[str]]:
    with sync_engine(db_url).connect() as conn:
        return dict(conn.execute(text(
            "SELECT global_id, bounded_space_global_ids FROM bim_elements WHERE dataset_id = :d"),
            {"d": dataset_id}).all())


def _file_boundaries(path: Path) -> dict[str, set[str]]:
    """{element GlobalId: the IfcSpaces it bounds}, read from the file with ifcopenshell
    alone (the samples name neither openings nor assemblies as boundaries)."""
    out: dict[str, set[str]] = defaultdict(set)
    for rel in ifcopenshell.open(str(path)).by_type("IfcRelSpaceBoundary"):
        if rel.RelatedBuildingElement is not None and rel.RelatingSpace.is_a("IfcSpace"):
            out[rel.RelatedBuildingElement.GlobalId].add(rel.RelatingSpace.GlobalId)
    return dict(out)


def _storey(space) -> str | None:
    node = ue.get_aggregate(space)
    while node is not None and not node.is_a("IfcBuildingStorey"):
        node = ue.get_aggregate(node)
    return node.Name if node is not None else None


@pytest.mark.parametrize("path, params, count", SAMPLES, ids=SAMPLE_IDS)
def test_every_space_is_stored_with_its_area_and_none_is_tiled(ingested, db_url, path,
                                                               params, count):
    run = ingested(path, **params)
    assert run.status == "succeeded", run.job.error
    model = ifcopenshell.open(str(path))
    in_file = {s.GlobalId: s for s in model.by_type("IfcSpace")}
    assert len(in_file) == count
    stored = _spaces(db_url, run.dataset_id)
    assert set(stored) == set(in_file)
    assert run.job.report["spaces"] == count and run.job.report["spaces_failed"] == []

    for gid, row in stored.items():
        space = in_file[gid]
        assert (row.name, row.long_name, row.storey) == (space.Name, space.LongName,
                                                         _storey(space))
        assert row.valid and row.min_height < row.max_height and row.x0 < row.x1
        # the area computed in model metres is the footprint's area on the ellipsoid
        assert row.floor_area == pytest.approx(row.geo_area, rel=0.005)
        quantities = {k: v for props in ue.get_psets(space).values() for k, v in props.items()
                      if k in ("GrossFloorArea", "NetFloorArea")}
        if quantities:  # FZK-Haus has them (BaseQuantities); Duplex_A only Revit's own
            # the footprint is the whole body seen from above: the gross area
            assert row.floor_area == pytest.approx(quantities["GrossFloorArea"], rel=0.01)
            assert row.floor_area >= quantities["NetFloorArea"] * 0.99
        assert row.psets == {k: {p: v for p, v in props.items() if p != "id"}
                             for k, props in ue.get_psets(space).items()}

    elements = _element_spaces(db_url, run.dataset_id)
    tiled, _ = tile_vertices(run.tileset_dir)
    assert set(tiled) == set(elements) and not set(tiled) & set(in_file)
    assert len(elements) == run.job.report["elements"]
    assert {s for s in elements.values() if s} <= set(in_file)


def test_elements_are_in_the_room_the_file_says_else_the_one_around_them(ingested, db_url):
    duplex = ingested(DUPLEX)
    model = ifcopenshell.open(str(DUPLEX))
    contained = {e.GlobalId: rel.RelatingStructure.GlobalId
                 for rel in model.by_type("IfcRelContainedInSpatialStructure")
                 if rel.RelatingStructure.is_a("IfcSpace") for e in rel.RelatedElements}
    assert len(contained) == 61  # the furniture
    where = _element_spaces(db_url, duplex.dataset_id)
    assert all(where[g] == s for g, s in contained.items())
    sofa = next(e for e in model.by_type("IfcFurnishingElement") if e.Name == SOFA)
    living = next(s for s in model.by_type("IfcSpace") if s.Name == "A102")
    assert living.LongName == "Living Room" and where[sofa.GlobalId] == living.GlobalId
    # the stair flights are not contained in the stairwells: found by their position
    names = {s.GlobalId: s.Name for s in model.by_type("IfcSpace")}
    flights = [f.GlobalId for f in model.by_type("IfcStairFlight")]
    assert flights and not set(flights) & set(contained)
    assert sorted(names[where[f]] for f in flights) == ["A105", "B105"]

    # FZK-Haus contains nothing in its rooms: the stair stands in the living room
    fzk = ingested(FZK)
    model = ifcopenshell.open(str(FZK))
    where = _element_spaces(db_url, fzk.dataset_id)
    wohnen = next(s for s in model.by_type("IfcSpace") if s.LongName == "Wohnen")
    (stair_gid,) = [e.GlobalId for e in model.by_type("IfcStair")]
    assert where[stair_gid] == wohnen.GlobalId
    # room boundaries (walls, doors, windows, slabs) are in no room
    boundaries = {r.RelatedBuildingElement.GlobalId
                  for r in model.by_type("IfcRelSpaceBoundary") if r.RelatedBuildingElement}
    assert {c for c in ("IfcWall", "IfcDoor", "IfcWindow", "IfcSlab")
            if any(e.GlobalId in boundaries for e in model.by_type(c))} \
        == {"IfcWall", "IfcDoor", "IfcWindow", "IfcSlab"}
    assert all(where[g] is None for g in boundaries if g in where)


@pytest.mark.parametrize("path, params, count", SAMPLES, ids=SAMPLE_IDS)
def test_each_element_keeps_the_rooms_the_file_says_it_bounds(ingested, db_url, path, params,
                                                              count):
    run = ingested(path, **params)
    expected = _file_boundaries(path)
    stored = _element_bounds(db_url, run.dataset_id)
    assert stored == {g: sorted(expected.get(g, ())) for g in stored}
    assert run.job.report["space_boundaries"] == sum(len(v) for v in stored.values())
    # every boundary is stored but the file's virtual elements, which have no body
    model = ifcopenshell.open(str(path))
    assert {model.by_guid(g).is_a() for g in set(expected) - set(stored)} <= {
        "IfcVirtualElement"}
    if count:
        bounding = [g for g, rooms in stored.items() if rooms]
        assert {model.by_guid(g).is_a("IfcBuildingElement") for g in bounding} == {True}
        assert {s for g in bounding for s in stored[g]} == {
            s.GlobalId for s in model.by_type("IfcSpace")}  # every room has boundaries
    else:  # no rooms, no boundaries: every element has an empty array, not NULL
        assert not expected and stored and all(v == [] for v in stored.values())


@pytest.mark.parametrize("path", [FZK, DUPLEX], ids=["fzk", "duplex"])
def test_doors_bound_the_rooms_they_open(ingested, live_server, db_url, path):
    run = ingested(path)
    model = ifcopenshell.open(str(path))
    expected = _file_boundaries(path)
    doors = {d.GlobalId for d in model.by_type("IfcDoor")}
    assert doors and doors <= set(expected)  # every door of both samples bounds a room
    stored = _element_bounds(db_url, run.dataset_id)
    assert {d: stored[d] for d in doors} == {d: sorted(expected[d]) for d in doors}
    assert any(len(expected[d]) == 2 for d in doors)  # a door between two rooms
    where = _element_spaces(db_url, run.dataset_id)
    assert all(where[d] is None for d in doors)  # and in neither

    for space in model.by_type("IfcSpace"):
        r = _get(live_server, "/bim/elements", dataset=run.dataset_id, space=space.GlobalId,
                 space_relation="boundary", limit=1000, **{"class": "IfcDoor"})
        assert r.status_code == 200, r.text
        features = r.json()["features"]
        assert {f["id"] for f in features} == {d for d in doors if space.GlobalId in expected[d]}
        assert all(space.GlobalId in f["properties"]["bounded_space_global_ids"]
                   for f in features)


@pytest.mark.parametrize("path, params, count", SAMPLES, ids=SAMPLE_IDS)
def test_a_clicked_element_names_its_rooms_in_the_tiles(ingested, db_url, path, params,
                                                        count):
    run = ingested(path, **params)
    _, tile_rows = tile_vertices(run.tileset_dir)
    model = ifcopenshell.open(str(path))
    label = {s.GlobalId: " ".join(p for p in (s.Name, s.LongName) if p)
             for s in model.by_type("IfcSpace")}
    inside, bounds = _element_spaces(db_url, run.dataset_id), _element_bounds(db_url,
                                                                                run.dataset_id)
    rows = {gid: found[0] for gid, found in tile_rows.items()}
    assert set(rows) == set(inside)
    if not count:  # a model without rooms gets no room columns
        assert not any("space" in r or "bounds_spaces" in r for r in rows.values())
        return
    for gid, row in rows.items():
        assert row["space"] == (label[inside[gid]] if inside[gid] else "")
        assert row["bounds_spaces"] == "; ".join(label[g] for g in bounds[gid])
    named = [r for r in rows.values() if r["space"]]
    assert named and any(";" in r["bounds_spaces"] for r in rows.values())


def _get(server, path: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, timeout=30)


def test_rooms_and_their_boundaries_through_the_api(ingested, live_server, db_url):
    run = ingested(FZK)
    ds = run.dataset_id
    model = ifcopenshell.open(str(FZK))
    stored = _element_bounds(db_url, ds)
    expected = {g: rooms for g, rooms in _file_boundaries(FZK).items() if g in stored}
    where = _element_spaces(db_url, ds)

    def ids(path: str = "/bim/elements", **params) -> set[str]:
        r = _get(live_server, path, dataset=ds, limit=1000, **params)
        assert r.status_code == 200, r.text
        return {f["id"] for f in r.json()["features"]}

    spaces = {f["id"]: f for f in _get(live_server, "/bim/spaces", dataset=ds,
                                       limit=1000).json()["features"]}
    assert len(spaces) == 7
    for gid, f in spaces.items():
        props = f["properties"]
        bounding = {g for g, rooms in expected.items() if gid in rooms}
        assert props["boundary_elements"] == len(bounding) > 0
        followed = httpx.get(live_server.url + props["links"]["boundary_elements"],
                             timeout=30).json()
        assert {x["id"] for x in followed["features"]} == bounding
        contained = {g for g, s in where.items() if s == gid}
        assert props["elements"] == len(contained)
        assert ids(space=gid) == ids(space=gid, space_relation="contained") == contained
        assert ids(space=gid, space_relation="any") == contained | bounding

    # the living room: the stair in it, its walls, windows, door and slabs around it
    wohnen = next(s for s in model.by_type("IfcSpace") if s.LongName == "Wohnen")
    (stair,) = [e.GlobalId for e in model.by_type("IfcStair")]
    around = ids(space="wohnen", space_relation="BOUNDARY")
    assert around == ids(space=wohnen.GlobalId, space_relation="boundary")
    assert stair not in around and ids(space="Wohnen") == {stair}
    assert {model.by_guid(g).is_a() for g in around} >= {"IfcDoor", "IfcWindow", "IfcSlab"}
    assert ids(space="Wohnen", space_relation="boundary", **{"class": "IfcWall"}) == {
        g for g in around if model.by_guid(g).is_a("IfcWall")}

    # the rooms of a wall: the ones it bounds, in none
    wall = max((w for w in model.by_type("IfcWall") if w.GlobalId in expected),
               key=lambda w: (len(expected[w.GlobalId]), w.GlobalId))
    rooms = expected[wall.GlobalId]
    assert len(rooms) >= 2
    assert ids("/bim/spaces", element=wall.GlobalId) == rooms
    assert ids("/bim/spaces", element=wall.GlobalId, space_relation="boundary") == rooms
    assert ids("/bim/spaces", element=wall.GlobalId, space_relation="contained") == set()
    one = _get(live_server, f"/bim/elements/{wall.GlobalId}", dataset=ds).json()
    assert one["properties"]["bounded_space_global_ids"] == sorted(rooms)
    assert one["properties"]["space_global_id"] is None
    followed = httpx.get(live_server.url + one["properties"]["links"]["spaces"],
                         timeout=30).json()
    assert {f["id"] for f in followed["features"]} == rooms
    # and of the stair: the one it stands in, which it does not bound
    assert ids("/bim/spaces", element=stair) == {wohnen.GlobalId}
    assert ids("/bim/spaces", element=stair, space_relation="boundary") == set()
    assert ids("/bim/spaces", element="0000000000000000000000") == set()

    bad = [("/bim/elements", {"space": "Wohnen", "space_relation": "inside"}, "space_relation"),
           ("/bim/elements", {"space": "Wohnen", "space_relation": ""}, "space_relation"),
           ("/bim/elements", {"space_relation": "boundary"}, "give space"),
           ("/bim/spaces", {"element": stair, "space_relation": "walls"}, "space_relation"),
           ("/bim/spaces", {"space_relation": "any"}, "give element"),
           ("/bim/spaces", {"element": ""}, "element"),
           ("/bim/spaces", {"element": "x" * 23}, "22"),
           ("/bim/spaces", {"element": "2MY\x00"}, "NUL")]  # refused for any query field
    for path, params, reason in bad:
        r = _get(live_server, path, dataset=ds, **params)
        assert r.status_code == 400, (path, params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert reason in r.json()["detail"], r.json()


def test_spaces_and_elements_by_space_through_the_api(ingested, live_server, db_url):
    run = ingested(DUPLEX)
    ds = run.dataset_id
    model = ifcopenshell.open(str(DUPLEX))

    r = _get(live_server, "/bim/spaces", dataset=ds, limit=1000)
    assert r.status_code == 200, r.text
    spaces = {f["id"]: f for f in r.json()["features"]}
    assert len(spaces) == 21
    a102 = next(f for f in spaces.values() if f["properties"]["name"] == "A102")
    props = a102["properties"]
    assert props["long_name"] == "Living Room" and props["storey"] == "Level 1"
    assert props["floor_area"] == pytest.approx(27.66, abs=0.01)  # its 8.9 x 3.1 m profile
    assert props["min_height"] < props["max_height"] and len(a102["bbox"]) == 6
    assert a102["geometry"]["type"] == "MultiPolygon" and "psets" not in props
    assert props["elements"] == 5  # two sofas, three tables

    def ids(**params) -> set[str]:
        r = _get(live_server, "/bim/elements", dataset=ds, limit=1000, **params)
        assert r.status_code == 200, r.text
        return {f["id"] for f in r.json()["features"]}

    by_gid = ids(space=a102["id"])
    assert len(by_gid) == 5 and by_gid == ids(space="A102") == ids(space="a102")
    sofa = next(e for e in model.by_type("IfcFurnishingElement") if e.Name == SOFA)
    assert sofa.GlobalId in by_gid
    one = _get(live_server, f"/bim/elements/{sofa.GlobalId}", dataset=ds).json()
    assert one["properties"]["space_global_id"] == a102["id"]
    # a long name two flats share finds both rooms' elements
    b102 = next(f for f in spaces.values() if f["properties"]["name"] == "B102")
    assert ids(space="living room") == by_gid | ids(space=b102["id"])
    followed = httpx.get(live_server.url + props["links"]["elements"], timeout=30).json()
    assert {f["id"] for f in followed["features"]} == by_gid
    assert ids(space="No Such Room") == set()
    assert ids(space="A102", **{"class": "IfcWall"}) == set()
    # the counts add up to the elements that have a room
    assert sum(f["properties"]["elements"] for f in spaces.values()) == len(
        [s for s in _element_spaces(db_url, ds).values() if s])

    baths = _get(live_server, "/bim/spaces", dataset=ds, name="BATH").json()["features"]
    assert sorted(f["properties"]["name"] for f in baths) == ["A104", "A204", "B104", "B204"]
    level2 = {s.GlobalId for s in model.by_type("IfcSpace") if _storey(s) == "Level 2"}
    assert {f["id"] for f in _get(live_server, "/bim/spaces", dataset=ds,
                                  storey="level 2").json()["features"]} == level2
    with_psets = _get(live_server, "/bim/spaces", dataset=ds, name="A102", psets="true").json()
    assert with_psets["features"][0]["properties"]["psets"]["GSA Space Areas"][
        "GSA BIM Area"] == pytest.approx(30.1416, abs=1e-3)
    page = _get(live_server, "/bim/spaces", dataset=ds, limit=20).json()
    assert page["numberReturned"] == 20
    rest = httpx.get(next(x["href"] for x in page["links"] if x["rel"] == "next")).json()
    assert rest["numberReturned"] == 1

    summary = _get(live_server, f"/bim/datasets/{ds}").json()
    assert summary["spaces"] == 21 and summary["links"]["spaces"] == f"/bim/spaces?dataset={ds}"

    for bad in ("", "   ", "A10\x002", "x" * 300):
        r = _get(live_server, "/bim/elements", dataset=ds, space=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        # a NUL is refused for every query field before the route reads it
        assert r.json()["detail"].startswith("a NUL" if "\x00" in bad else "space "), r.text
    assert _get(live_server, "/bim/spaces", name="\x01").status_code == 400


def _without_living_room_and_a_broken_kitchen(model) -> None:
    import ifcopenshell.api.root

    rooms = {s.LongName: s for s in model.by_type("IfcSpace")}
    ifcopenshell.api.root.remove_product(model, product=rooms["Wohnen"])
    body = next(r for r in rooms["Küche"].Representation.Representations
                if r.RepresentationIdentifier == "Body")
    # a profile of three identical points: the kernel refuses it
    pts = [model.createIfcCartesianPoint((0.0, 0.0)) for _ in range(3)]
    origin = model.createIfcAxis2Placement3D(model.createIfcCartesianPoint((0.0, 0.0, 0.0)),
                                             None, None)
    body.Items = [model.createIfcExtrudedAreaSolid(
        model.createIfcArbitraryClosedProfileDef("AREA", None, model.createIfcPolyline(pts)),
        origin, model.createIfcDirection((0.0, 0.0, 1.0)), 2.5)]


def _without_boundaries(model) -> None:
    for rel in model.by_type("IfcRelSpaceBoundary"):
        model.remove(rel)


def test_reingest_replaces_the_spaces_and_a_failed_space_is_kept_without_geometry(
        db_url, bim_settings, tmp_path, live_server):
    first = run_ingest(db_url, bim_settings, FZK)
    assert first.status == "succeeded", first.job.error
    model = ifcopenshell.open(str(FZK))
    rooms = {s.LongName: s.GlobalId for s in model.by_type("IfcSpace")}
    (stair,) = [e.GlobalId for e in model.by_type("IfcStair")]
    assert len(_spaces(db_url, first.dataset_id)) == 7
    assert _element_spaces(db_url, first.dataset_id)[stair] == rooms["Wohnen"]
    assert any(rooms["Wohnen"] in b for b in _element_bounds(db_url, first.dataset_id).values())

    # the same dataset, its source replaced by an edited model
    with sync_engine(db_url).connect() as conn:
        source = conn.execute(text("SELECT source_path FROM datasets WHERE id = :d"),
                              {"d": first.dataset_id}).scalar_one()
    edited = edit_ifc(FZK, tmp_path / "fewer-rooms.ifc",
                      _without_living_room_and_a_broken_kitchen)
    shutil.copyfile(edited, source)
    again = run_ingest(db_url, bim_settings, FZK, dataset_id=first.dataset_id)
    assert again.status == "succeeded", again.job.error
    stored = _spaces(db_url, first.dataset_id)
    assert set(stored) == set(rooms.values()) - {rooms["Wohnen"]}  # 6, none twice
    kitchen = stored[rooms["Küche"]]
    assert kitchen.floor_area is None and kitchen.min_height is None and kitchen.x0 is None
    assert kitchen.long_name == "Küche" and kitchen.psets  # kept, without geometry
    (failed,) = again.job.report["spaces_failed"]
    assert failed["global_id"] == rooms["Küche"] and "geometry failed" in failed["reason"]
    assert again.job.report["failed_count"] == 0  # the elements all loaded
    assert again.job.report["spaces"] == 6
    # the stair's room went with it, and so did the room from the walls around it
    assert _element_spaces(db_url, first.dataset_id)[stair] is None
    bounds = _element_bounds(db_url, first.dataset_id)
    assert bounds == {g: sorted(_file_boundaries(edited).get(g, ())) for g in bounds}
    assert not any(rooms["Wohnen"] in b for b in bounds.values())
    assert sum(map(len, bounds.values())) > 0

    # the rooms kept, their boundaries dropped: every array empties
    bare = edit_ifc(FZK, tmp_path / "no-boundaries.ifc", _without_boundaries)
    shutil.copyfile(bare, source)
    third = run_ingest(db_url, bim_settings, FZK, dataset_id=first.dataset_id)
    assert third.status == "succeeded", third.job.error
    assert len(_spaces(db_url, first.dataset_id)) == 7
    bounds = _element_bounds(db_url, first.dataset_id)
    assert bounds and all(b == [] for b in bounds.values())
    listed = _get(live_server, "/bim/spaces", dataset=first.dataset_id).json()["features"]
    assert len(listed) == 7 and all(f["properties"]["boundary_elements"] == 0 for f in listed)
    assert _get(live_server, "/bim/elements", dataset=first.dataset_id, space="Flur",
                space_relation="boundary").json()["features"] == []
