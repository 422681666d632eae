"""GET /city/export: the city model back out as CityJSON 2.0 and CityJSONSeq.

The samples in tests/data/cim are ingested through the API once per module and exported
again: the official CityJSON 2.0 schemas and cjval's other checks (cityjson_check.py) find
no error, cjio reads every file, vertices come back within millimetres of the source's in
the source's CRS, and semantics and LoDs survive. A copy of multi_lod.json placed in Longgang
(EPSG:4547) checks the default output CRS. History, the reconstructed buildings of a
simulated survey, and bad input have tests of their own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import laspy
import numpy as np
import pytest
from cityjson_check import real_vertices, validate_cityjson, validate_cityjsonseq
from helpers_city import DATA
from helpers_tus import upload
from pyproj import Transformer
from scipy.spatial import cKDTree

from service.jobs.execute import run_job

CJIO = str(Path(sys.executable).parent / "cjio")
MM = 0.003  # metres: what a round trip may move a vertex (millimetre grid, float noise)
# (file, upload metadata); the CRS of each comes from the file unless given
SAMPLES = {
    "rotterdam": ("rotterdam_subset.json", {"crs": "EPSG:7415"}),
    "den_haag": ("DH_01_subs.city.json", {"crs": "EPSG:7415"}),
    "multi_lod": ("multi_lod.json", {"crs": "EPSG:7415"}),
    "delft": ("3dfier_testarea_lod1.json", {}),
    "citygml4j": ("citygml4j_lod2_buildings_v2.city.json", {}),
    "lod4_gml": ("citygml4j_lod4_building_v2.gml", {}),
}
LONGGANG_TRANSLATE = [525_000.0, 2_512_000.0, 50.0]  # EPSG:4547 easting, northing, height


def longgang_copy(folder: Path, raise_m: dict[str, float] | None = None) -> Path:
    """multi_lod.json moved to Longgang and labelled EPSG:4547 (heights then ellipsoidal),
    its ids prefixed with "lg-";
    ``raise_m`` lifts the named objects (each has vertices of its own)."""
    doc = json.loads((DATA / "multi_lod.json").read_text())
    # ids of their own: the same ids would be new versions of the Dutch buildings
    doc["CityObjects"] = {f"lg-{k}": v for k, v in doc["CityObjects"].items()}
    doc["transform"]["translate"] = LONGGANG_TRANSLATE
    doc["metadata"] = {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/4547"}
    for oid, dz in (raise_m or {}).items():
        used = {i for g in doc["CityObjects"][oid]["geometry"]
                for i in _flat(g["boundaries"])}
        for i in used:
            doc["vertices"][i][2] += round(dz / doc["transform"]["scale"][2])
    path = folder / "longgang_multi_lod.city.json"
    path.write_text(json.dumps(doc))
    return path


def _flat(b: Any) -> Iterator[int]:
    if isinstance(b, int):
        yield b
    else:
        for x in b:
            yield from _flat(x)


@dataclasses.dataclass
class City:
    server: Any
    db_url: str
    settings: Any
    datasets: dict[str, int]
    crs: dict[str, str]

    def get(self, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.server.url}/city/export", params=params, timeout=120)

    def export(self, **params: Any) -> dict[str, Any]:
        r = self.get(**params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/city+json"
        return r.json()


@pytest.fixture(scope="module")
def city(migrated_database, live_server_factory, tmp_path_factory) -> Iterator[City]:
    from service.app import create_app
    from service.core.auth import create_key
    from service.core.db import sync_engine
    from service.core.settings import Settings

    url = migrated_database()
    tmp = tmp_path_factory.mktemp("export")
    settings = Settings(database_url=url, data_dir=tmp / "var",
                        max_upload_bytes=8 * 1024 * 1024, in_process_worker=False,
                        load_samples=False)
    with live_server_factory(create_app(settings, url, in_process_worker=False)) as server:
        with sync_engine(url).begin() as conn:
            op = {"Authorization": f"Bearer {create_key(conn, 'export-op', 'operator')}"}
        files = {k: (DATA / f, meta) for k, (f, meta) in SAMPLES.items()}
        files["longgang"] = (longgang_copy(tmp), {})
        datasets, crs = {}, {}
        for key, (path, meta) in files.items():
            ds, job = upload(server, op, path.read_bytes(), filename=path.name, **meta)
            assert run_job(job, url, settings) == "succeeded", key
            datasets[key] = ds
            crs[key] = httpx.get(f"{server.url}/datasets/{ds}").json()["crs"]
        yield City(server, url, settings, datasets, crs)


def source_geometry(path: Path) -> dict[str, dict[str, tuple[np.ndarray, Counter]]]:
    """Per object and LoD of a CityJSON file: its vertices (real coordinates) and the
    count of each semantic surface type."""
    doc = json.loads(path.read_text())
    t = doc.get("transform", {"scale": [1, 1, 1], "translate": [0, 0, 0]})
    verts = np.asarray(doc["vertices"], float) * t["scale"] + t["translate"]
    return _per_lod(doc["CityObjects"], verts)


def _per_lod(objects: dict[str, Any], verts: np.ndarray
             ) -> dict[str, dict[str, tuple[np.ndarray, Counter]]]:
    out: dict[str, dict[str, tuple[np.ndarray, Counter]]] = {}
    for oid, obj in objects.items():
        for g in obj.get("geometry", []):
            idx = sorted(set(_flat(g["boundaries"])))
            sem = g.get("semantics") or {}
            kinds = [s["type"] for s in sem.get("surfaces", [])]
            counts = Counter(kinds[v] for v in _flat(sem.get("values") or []) if v is not None)
            out.setdefault(oid, {})[str(g["lod"])] = (verts[idx], counts)
    return out


def exported_geometry(doc: dict[str, Any]) -> dict[str, dict[str, tuple[np.ndarray, Counter]]]:
    return _per_lod(doc["CityObjects"], real_vertices(doc))


def assert_valid(doc: dict[str, Any]) -> None:
    report = validate_cityjson(doc)
    assert report.errors == [], report.errors[:10]
    assert report.warnings == [], report.warnings[:10]


def cjio_reads(path: Path, stdin: bytes | None = None) -> str:
    """cjio's info on a file (or a CityJSONSeq on its standard input); it must succeed."""
    args = [CJIO, "stdin", "info"] if stdin is not None else [CJIO, str(path), "info"]
    done = subprocess.run(args, input=stdin, capture_output=True, timeout=120)
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0 and "Error" not in out, out[-2000:]
    return out


def assert_round_trip(source: dict, exported: dict, *, coverage: float = 1.0,
                      semantics: bool = True) -> None:
    """Every exported vertex within MM of one of its object's source vertices at the same
    LoD, and (nearly) every source vertex met; the same LoDs, the same semantics."""
    assert set(exported) <= set(source)
    met = total = 0
    for oid, lods in exported.items():
        assert set(lods) == set(source[oid]), (oid, set(lods), set(source[oid]))
        for lod, (pts, counts) in lods.items():
            src, src_counts = source[oid][lod]
            d, _ = cKDTree(src).query(pts)
            assert d.max() <= MM, (oid, lod, d.max())
            back, _ = cKDTree(pts).query(src)
            met += int((back <= MM).sum())
            total += len(src)
            if semantics:
                assert counts == src_counts, (oid, lod, counts, src_counts)
    assert met >= coverage * total, (met, total)


@pytest.mark.parametrize("key", ["den_haag", "multi_lod", "delft", "citygml4j", "rotterdam"])
def test_samples_round_trip_in_their_crs(city, key, tmp_path):
    """In the source's own CRS (RD New + NAP for the Dutch files: heights back to NAP with
    the geoid the ingest used), every vertex returns within millimetres."""
    path = DATA / SAMPLES[key][0]
    doc = city.export(dataset=city.datasets[key], crs=city.crs[key])
    assert_valid(doc)
    assert doc["metadata"]["referenceSystem"].endswith("/" + city.crs[key].split(":")[1])
    out = tmp_path / f"{key}.city.json"
    out.write_text(json.dumps(doc))
    info = cjio_reads(out)
    assert f"EPSG = {city.crs[key].split(':')[1]}" in info

    source = source_geometry(path)
    exported = exported_geometry(doc)
    with_geometry = {oid for oid, o in json.loads(path.read_text())["CityObjects"].items()
                     if o.get("geometry")}
    assert set(exported) == with_geometry
    # Rotterdam: 9 of its buildings carry a two-vertex sliver ring, dropped at ingest
    assert_round_trip(source, exported, coverage=0.99, semantics=key != "rotterdam")
    ids = set(json.loads(path.read_text())["CityObjects"])
    assert set(doc["CityObjects"]) == ids
    ext = doc["metadata"]["geographicalExtent"]
    v = real_vertices(doc)
    assert np.allclose(ext, [*v.min(axis=0), *v.max(axis=0)], atol=0.0015)


def test_parents_children_and_types(city):
    """Den Haag's buildings are parents of their parts; the CityGML sample's rooms and
    furniture keep theirs under CityJSON 2.0's names."""
    doc = city.export(dataset=city.datasets["den_haag"], crs="EPSG:7415")
    src = json.loads((DATA / "DH_01_subs.city.json").read_text())["CityObjects"]
    for oid, obj in src.items():
        assert sorted(doc["CityObjects"][oid].get("children", [])) == sorted(
            obj.get("children", [])), oid
        assert doc["CityObjects"][oid].get("parents", []) == obj.get("parents", [])
        assert doc["CityObjects"][oid]["type"] == obj["type"]

    gml = city.export(dataset=city.datasets["lod4_gml"], crs=city.crs["lod4_gml"])
    assert_valid(gml)
    types = Counter(o["type"] for o in gml["CityObjects"].values())
    assert types["BuildingRoom"] >= 1 and types["TINRelief"] == 1
    rooms = [o for o in gml["CityObjects"].values() if o["type"] == "BuildingRoom"]
    assert all(o["attributes"]["sourceType"] == "Room" and o["parents"] for o in rooms)
    tin = next(o for o in gml["CityObjects"].values() if o["type"] == "TINRelief")
    assert {g["type"] for g in tin["geometry"]} == {"CompositeSurface"}
    # CityGML's LoD4 becomes CityJSON's highest, LoD3
    assert {g["lod"] for o in gml["CityObjects"].values() for g in o.get("geometry", [])} \
        <= {"3", "2", "1", "0"}


def test_longgang_default_crs_and_every_lod(city, tmp_path):
    """Default output: EPSG:4547 with ellipsoidal heights, said so; LoD 1.2, 1.3 and 2.2
    Solids of each building, vertices within millimetres of the source's."""
    doc = city.export(dataset=city.datasets["longgang"])
    assert_valid(doc)
    meta = doc["metadata"]
    assert meta["referenceSystem"] == "https://www.opengis.net/def/crs/EPSG/0/4547"
    assert "ellipsoidal" in meta["title"] and "EPSG:4547" in meta["title"]
    assert doc["transform"]["scale"] == [0.001] * 3
    assert all(isinstance(i, int) for v in doc["vertices"][:50] for i in v)
    geoms = [g for o in doc["CityObjects"].values() for g in o["geometry"]]
    assert Counter((g["type"], g["lod"]) for g in geoms) == {
        ("Solid", "1.2"): 10, ("Solid", "1.3"): 10, ("Solid", "2.2"): 10}
    lod22 = [g for g in geoms if g["lod"] == "2.2"]
    assert all({s["type"] for s in g["semantics"]["surfaces"]}
               >= {"RoofSurface", "WallSurface", "GroundSurface"} for g in lod22)
    source = source_geometry(longgang_copy(tmp_path))
    assert_round_trip(source, exported_geometry(doc))
    # the same through a bbox in EPSG:4547 (northing first) around the whole copy
    v = real_vertices(doc)
    (e0, n0, _), (e1, n1, _) = v.min(axis=0), v.max(axis=0)
    boxed = city.export(bbox=f"{n0 - 1},{e0 - 1},{n1 + 1},{e1 + 1}", **{"bbox-crs": "EPSG:4547"})
    assert set(boxed["CityObjects"]) == set(doc["CityObjects"])


def test_bbox_brings_the_whole_family(city):
    """A bbox that meets one part of a Den Haag building exports the building and all its
    parts (a BuildingPart needs its parent, a parent lists its children)."""
    whole = city.export(dataset=city.datasets["den_haag"], crs="EPSG:7415")
    part_id = "GUID_13974D93-CB4F-4B5A-AB1E-577DD9928CF2_3"
    part = whole["CityObjects"][part_id]
    idx = list(_flat(part["geometry"][0]["boundaries"]))
    rd = real_vertices(whole)[idx]
    to_ll = Transformer.from_crs("EPSG:28992", "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(rd[:, 0], rd[:, 1])
    cx, cy = float(np.mean(lon)), float(np.mean(lat))
    doc = city.export(bbox=f"{cx - 1e-6},{cy - 1e-6},{cx + 1e-6},{cy + 1e-6}", crs="EPSG:7415")
    assert_valid(doc)
    family = {"GUID_13974D93-CB4F-4B5A-AB1E-577DD9928CF2"} | {
        f"GUID_13974D93-CB4F-4B5A-AB1E-577DD9928CF2_{i}" for i in (1, 2, 3)}
    assert set(doc["CityObjects"]) == family


def test_dataset_filter(city):
    ours = city.export(dataset=city.datasets["multi_lod"], crs="EPSG:7415")
    theirs = city.export(dataset=city.datasets["den_haag"], crs="EPSG:7415")
    src = lambda name: set(json.loads((DATA / name).read_text())["CityObjects"])  # noqa: E731
    assert set(ours["CityObjects"]) == src("multi_lod.json")
    assert set(theirs["CityObjects"]) == src("DH_01_subs.city.json")
    # without the filter, both (and the other Dutch samples) come in one file
    both = city.get(crs="EPSG:7415", bbox="4.2,51.8,4.6,52.2")  # Den Haag, Rotterdam, Delft
    assert both.status_code == 200
    assert set(theirs["CityObjects"]) <= set(both.json()["CityObjects"])
    assert not set(ours["CityObjects"]) & set(both.json()["CityObjects"])  # multi_lod: Oss


def test_cityjsonseq_lines_validate(city, tmp_path):
    r = city.get(dataset=city.datasets["den_haag"], crs="EPSG:7415", f="cityjsonseq")
    assert r.status_code == 200 and r.headers["content-type"] == "application/city+json-seq"
    lines = r.text.splitlines()
    docs = [json.loads(line) for line in lines]  # each line parses alone
    report = validate_cityjsonseq(lines)
    assert report.errors == [] and report.warnings == [], report.errors[:10]
    head, features = docs[0], docs[1:]
    assert head["type"] == "CityJSON" and head["CityObjects"] == {} and head["vertices"] == []
    # one feature per building, its parts inside it
    assert len(features) == 4
    assert all(f["type"] == "CityJSONFeature" and f["id"] in f["CityObjects"] for f in features)
    whole = city.export(dataset=city.datasets["den_haag"], crs="EPSG:7415")
    assert {k for f in features for k in f["CityObjects"]} == set(whole["CityObjects"])
    # the same coordinates as the single document (each feature decoded with the header)
    for f in features:
        one = {**head, "CityObjects": f["CityObjects"], "vertices": f["vertices"]}
        for oid, lods in exported_geometry(one).items():
            for lod, (pts, counts) in lods.items():
                ref, ref_counts = exported_geometry(whole)[oid][lod]
                assert cKDTree(ref).query(pts)[0].max() < 1e-6 and counts == ref_counts
        lo, hi = head["metadata"]["geographicalExtent"][:3], \
            head["metadata"]["geographicalExtent"][3:]
        v = real_vertices(one)
        assert (v >= np.array(lo) - 1e-6).all() and (v <= np.array(hi) + 1e-6).all()
    info = cjio_reads(tmp_path, stdin=r.content)
    assert "Building (4)" in info and "BuildingPart (8)" in info


def test_empty_selection_is_a_valid_empty_file(city, tmp_path):
    doc = city.export(bbox="100.0,0.0,100.001,0.001")
    assert doc["CityObjects"] == {} and doc["vertices"] == []
    assert_valid(doc)
    (tmp_path / "empty.city.json").write_text(json.dumps(doc))
    cjio_reads(tmp_path / "empty.city.json")
    seq = city.get(bbox="100.0,0.0,100.001,0.001", f="cityjsonseq")
    assert seq.status_code == 200 and len(seq.text.splitlines()) == 1
    assert validate_cityjsonseq(seq.text.splitlines()).errors == []


BAD = [
    ({"bbox": "1,2,3"}, 400, "bbox"),
    ({"bbox": "a,b,c,d"}, 400, "bbox"),
    ({"bbox": "5,5,4,4"}, 400, "bbox"),
    ({"bbox": "4.4,51.9,4.5,52.0", "bbox-crs": "EPSG:999999"}, 400, "bbox-crs"),
    ({"crs": "EPSG:4326"}, 400, "geographic"),
    ({"crs": "EPSG:4490"}, 400, "geographic"),
    ({"crs": "EPSG:999999"}, 400, "not a CRS"),
    ({"crs": "no such crs"}, 400, "not a CRS"),
    ({"crs": "EPSG:4978"}, 400, "geocentric"),
    ({"crs": "EPSG:2229"}, 400, "foot"),
    ({"crs": "EPSG:4547+5737"}, 400, "no EPSG code"),
    ({"datetime": "yesterday"}, 400, "RFC 3339"),
    ({"datetime": "2026-13-45T00:00:00Z"}, 400, "RFC 3339"),
    ({"datetime": "2026-01-01T00:00:00"}, 400, "time zone"),
    ({"datetime": "2026-01-01T00:00:00Z/2026-02-01T00:00:00Z"}, 400, "interval"),
    ({"datetime": "../2026-02-01T00:00:00Z"}, 400, "interval"),
    ({"f": "citygml"}, 422, "cityjson"),
    ({"dataset": "999999"}, 404, "no dataset"),
    ({"dataset": "0"}, 422, ""),
]


def test_bad_input_is_a_clear_4xx(city):
    for params, status, words in BAD:
        r = city.get(**params)
        assert r.status_code == status, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert words in json.dumps(r.json()), (params, r.text)
    # an output CRS whose area of use is half a world away from the objects
    r = city.get(dataset=city.datasets["den_haag"])  # the default, EPSG:4547, for Den Haag
    assert r.status_code == 422 and "outside where EPSG:4547 is used" in r.json()["detail"]
    assert "EPSG:7415" in r.json()["detail"]  # the source's CRS is suggested


def test_too_many_objects_for_one_document(city):
    limit = city.settings.city_export_max_objects
    city.settings.city_export_max_objects = 100
    try:
        r = city.get(dataset=city.datasets["delft"], crs="EPSG:28992")
        assert r.status_code == 422
        body = r.json()
        assert body["objects"] == 570 and body["limit"] == 100
        assert "570" in body["detail"] and "cityjsonseq" in body["detail"]
        seq = city.get(dataset=city.datasets["delft"], crs="EPSG:28992", f="cityjsonseq")
        assert seq.status_code == 200
        lines = seq.text.splitlines()
        assert len(lines) == 571 and validate_cityjsonseq(lines).errors == []
    finally:
        city.settings.city_export_max_objects = limit


def test_checker_finds_what_is_wrong(city):
    """The checks above can fail: broken copies of a good export are refused."""
    good = city.export(dataset=city.datasets["den_haag"], crs="EPSG:7415")
    assert validate_cityjson(good)
    part = "GUID_13974D93-CB4F-4B5A-AB1E-577DD9928CF2_1"
    breakages = {
        "lod": lambda d: d["CityObjects"][part]["geometry"][0].update(lod="4"),
        "parent": lambda d: d["CityObjects"][part].pop("parents"),
        "index": lambda d: d["CityObjects"][part]["geometry"][0]["boundaries"][0][0][0]
        .append(len(d["vertices"])),
        "semantics": lambda d: d["CityObjects"][part]["geometry"][0]["semantics"]["values"][0]
        .append(0),
        "type": lambda d: d["CityObjects"][part].update(type="Room"),
    }
    for name, breakage in breakages.items():
        bad = json.loads(json.dumps(good))
        breakage(bad)
        assert validate_cityjson(bad).errors, name


def test_datetime_gives_the_city_as_it_was(live_server, auth, db_url, settings, tmp_path):
    """A building raised by a later delivery: an instant between the two gives the old
    version, the default the new one, an instant before both nothing."""
    op = auth("operator")
    url = live_server.url
    before = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    path = longgang_copy(tmp_path)
    _, job = upload(live_server, op, path.read_bytes(), filename=path.name)
    assert run_job(job, db_url, settings) == "succeeded"
    time.sleep(0.05)
    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    path = longgang_copy(tmp_path, raise_m={"lg-6751773": 3.0})
    _, job = upload(live_server, op, path.read_bytes(), filename=path.name)
    assert run_job(job, db_url, settings) == "succeeded"

    def heights(**params: Any) -> dict[str, float]:
        r = httpx.get(f"{url}/city/export", params=params, timeout=60)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert_valid(doc)
        return {oid: float(v[:, 2].max()) for oid, lods in exported_geometry(doc).items()
                for lod, (v, _) in lods.items() if lod == "2.2"}

    now, then = heights(), heights(datetime=between.isoformat())
    assert set(now) == set(then) and len(now) == 10
    assert now["lg-6751773"] == pytest.approx(then["lg-6751773"] + 3.0, abs=0.002)
    assert all(now[k] == then[k] for k in now if k != "lg-6751773")
    assert heights(datetime=before.isoformat()) == {}
    # a date is the end of that day: today's city, as now
    assert heights(datetime=dt.datetime.now(dt.UTC).date().isoformat()) == now


def test_reconstructed_survey_exports_valid_solids(live_server, auth, db_url, settings,
                                                  tmp_path):
    """A simulated survey modelled into buildings: each exports as LoD1.2 and LoD2.2
    Solids, closed (every edge met once the other way) and oriented outward."""
    from recon.simulate import simulate_district, write_las

    settings.max_upload_bytes = 60 * 1024 * 1024
    survey = simulate_district(n_buildings=6, area_m=80.0, density=10.0, seed=7)
    path = tmp_path / "flight.laz"
    write_las(survey, path)
    las = laspy.read(path)
    las.header.creation_date = dt.date(2026, 3, 1)
    las.write(path)
    op = auth("operator")
    ds, job = upload(live_server, op, path.read_bytes(), filename=path.name)
    assert run_job(job, db_url, settings) == "succeeded"
    model_job = httpx.get(f"{live_server.url}/jobs/{job}").json()["report"]["model_job_id"]
    assert run_job(model_job, db_url, settings) == "succeeded"

    r = httpx.get(f"{live_server.url}/city/export", params={"dataset": ds}, timeout=60)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert_valid(doc)
    buildings = doc["CityObjects"]
    assert len(buildings) >= 5
    verts = real_vertices(doc)
    full = 0
    for oid, obj in buildings.items():
        by_lod = {g["lod"]: g for g in obj["geometry"]}
        assert "1.2" in by_lod, oid
        full += "2.2" in by_lod
        for lod, g in by_lod.items():
            assert g["type"] == "Solid", (oid, lod)
            shell = g["boundaries"][0]
            edges = Counter((a, b) for face in shell for ring in face
                            for a, b in zip(ring, ring[1:] + ring[:1], strict=True))
            assert all(n == 1 and edges[(b, a)] == 1 for (a, b), n in edges.items()), oid
            assert _volume(verts, shell) > 1.0, (oid, lod)
            kinds = {s["type"] for s in g["semantics"]["surfaces"]}
            assert {"RoofSurface", "WallSurface", "GroundSurface"} <= kinds, (oid, lod)
    assert full >= len(buildings) - 1  # the simulated roofs all reach LoD2.2 but maybe one
    # in the survey's frame: the truth's footprints lie where the exported ground is
    truth = [b.footprint for b in survey.buildings]
    ground = np.array([verts[i] for o in buildings.values() for g in o["geometry"]
                       if g["lod"] == "2.2" for face, v in zip(
                           g["boundaries"][0], g["semantics"]["values"][0], strict=True)
                       if g["semantics"]["surfaces"][v]["type"] == "GroundSurface"
                       for i in face[0]])
    import shapely

    inside = shapely.contains_xy(shapely.union_all(truth).buffer(1.0), ground[:, 0],
                                 ground[:, 1])
    assert inside.mean() > 0.95


def _volume(verts: np.ndarray, shell: list) -> float:
    """Signed volume of a closed shell (positive: faces oriented outward), each face fanned
    from its first vertex, relative to the shell's first vertex for precision."""
    origin = verts[shell[0][0][0]]
    total = 0.0
    for face in shell:
        for ring in face:
            p = verts[ring] - origin
            for i in range(1, len(ring) - 1):
                total += float(np.dot(p[0], np.cross(p[i], p[i + 1]))) / 6.0
    return total


CUBE = [[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]],
        [[3, 0, 4, 7]]]  # outward, vertices 0-3 at the bottom, 4-7 on top


def test_solids_are_found_by_topology():
    """A closed, consistently oriented shell is a Solid; an open box, a flipped face or a
    type without solids is a MultiSurface; two shells a MultiSolid where allowed."""
    from service.cim.export import geometry_object, shells

    sems = ["GroundSurface", "RoofSurface"] + ["WallSurface"] * 4
    assert shells(CUBE) == [list(range(6))]
    assert shells(CUBE[1:]) is None
    flipped = [*CUBE[:1], [list(reversed(CUBE[1][0]))], *CUBE[2:]]
    assert shells(flipped) is None
    solid = geometry_object("Building", "2.2", CUBE, sems)
    assert solid["type"] == "Solid" and solid["boundaries"] == [CUBE]
    assert solid["semantics"]["values"] == [[0, 1, 2, 2, 2, 2]]
    assert [s["type"] for s in solid["semantics"]["surfaces"]] == \
        ["GroundSurface", "RoofSurface", "WallSurface"]
    assert geometry_object("Building", "2.2", CUBE[1:], sems[1:])["type"] == "MultiSurface"
    assert geometry_object("Road", "2", CUBE, sems)["type"] == "MultiSurface"
    assert geometry_object("TINRelief", "2", CUBE, [None] * 6) == {
        "type": "CompositeSurface", "lod": "2", "boundaries": CUBE}
    second = [[[i + 8 for i in ring] for ring in face] for face in CUBE]
    two = geometry_object("CityFurniture", "2", CUBE + second, sems * 2)
    assert two["type"] == "MultiSolid" and len(two["boundaries"]) == 2
    assert two["semantics"]["values"] == [[[0, 1, 2, 2, 2, 2]], [[0, 1, 2, 2, 2, 2]]]
    # a Building may not be a MultiSolid: two shells stay surfaces
    assert geometry_object("Building", "2", CUBE + second, sems * 2)["type"] == "MultiSurface"


def test_rings_lose_vertices_that_meet_on_the_grid():
    from service.cim.export import clean_rings

    idx = np.array([1, 1, 2, 3,  5, 6, 5,  7, 8, 9, 7,  4, 4, 4])
    kept, sizes = clean_rings(idx, np.array([4, 3, 4, 3]))
    # [1, 2, 3]; [6, 5] (the first 5 repeats the last): too few, dropped (negative);
    # [8, 9, 7] (the first 7 repeats the closing one); nothing of [4, 4, 4]
    assert sizes.tolist() == [3, -2, 3, 0]
    assert kept == [1, 2, 3, 6, 5, 8, 9, 7]
