"""Terrain kept with the surveys, through the real service: simulated surveys (true ground
known) uploaded as LAS in EPSG:4547, ingested and modelled; their DTMs sampled, served as
quantized-mesh tiles (decoded here by a reader of our own) and used for heights above
ground; two overlapping surveys; a survey deleted; bad tile addresses."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import numpy as np
import psycopg
import pytest
import shapely
import test_fly_model as fly
from helpers_qmesh import decode, interpolate
from pyproj import Transformer

from recon.simulate import Survey, simulate_district
from service.core.db import make_async_engine
from service.terrain import store
from tiler.crs import geoid_undulation, transform_arrays
from tiler.terrain import tiles as qm

TO_LL = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)
ORIGIN = (525300.0, 2513500.0)


@pytest.fixture
def op(auth):
    return auth("operator")


def survey(seed: int, day: dt.date, server, op, db_url, settings, tmp_path, *,
           origin: tuple[float, float] = ORIGIN, area: float = 80.0, buildings: int = 4
           ) -> tuple[Survey, int, dict]:
    """A simulated survey uploaded, ingested and modelled: (truth, dataset id, report)."""
    s = simulate_district(n_buildings=buildings, area_m=area, density=8.0, seed=seed,
                          origin=origin)
    path = fly._las(s, tmp_path / f"survey{seed}.laz", day)
    dataset_id, job = fly._ingest(server, op, db_url, settings, path)
    assert job is not None
    return s, dataset_id, fly._model(server, db_url, settings, job)


def sample(db_url: str, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    async def run() -> tuple[np.ndarray, np.ndarray]:
        engine = make_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                return await store.sample_heights(conn, lon, lat)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def open_ground(s: Survey, n: int, rng: np.random.Generator, margin: float = 3.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Random places of bare ground inside the survey: off roofs and crowns by 1.5 m."""
    x0, y0, x1, y1 = s.bounds
    cover = shapely.union_all([b.footprint.buffer(1.5) for b in s.buildings]
                              + [shapely.Point(t.x, t.y).buffer(t.radius + 1.5)
                                 for t in s.trees])
    x = rng.uniform(x0 + margin, x1 - margin, 4 * n)
    y = rng.uniform(y0 + margin, y1 - margin, 4 * n)
    keep = ~shapely.contains_xy(cover, x, y)
    return x[keep][:n], y[keep][:n]


def lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = transform_arrays(TO_LL, x, y)
    return lon, lat


def tile_at(lon: float, lat: float, z: int) -> qm.Tile:
    size = 180.0 / (1 << z)
    return qm.Tile(z, int((lon + 180) // size), int((lat + 90) // size))


def sample_positions(mesh, tile: qm.Tile) -> tuple[np.ndarray, np.ndarray]:
    """The height samples the vertices are (a 257 x 257 grid of lon / lat per tile)."""
    w, s, e, n = tile.bounds
    k = qm.SAMPLES - 1
    col, row = np.rint(mesh.u * k / 32767), np.rint(mesh.v * k / 32767)
    return w + (e - w) * col / k, s + (n - s) * row / k


def test_a_modelled_survey_keeps_its_dtm_and_serves_it_as_terrain(live_server, op, db_url,
                                                                 settings, tmp_path):
    url = live_server.url
    truth, ds, report = survey(11, dt.date(2026, 3, 1), live_server, op, db_url, settings,
                               tmp_path)
    terrain = report["terrain"]
    assert terrain["stored"] is True and terrain["cell_m"] == 0.5
    assert terrain["heights"] == "WGS 84 ellipsoidal" and terrain["crs"] == "EPSG:4547"
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT rows, cols, cell, crs, encoding, octet_length(heights),"
                           " ST_Area(footprint::geography) FROM survey_terrain"
                           " WHERE dataset_id = %s", (ds,)).fetchone()
    assert row is not None
    rows, cols, cell, crs, encoding, nbytes, area = row
    assert (cell, crs, encoding) == (0.5, "EPSG:4547", "f32-shuffle-zlib")
    assert rows * cols >= 150 * 150 and nbytes < rows * cols * 4
    # the footprint is the surveyed square, give or take its edge blocks
    assert 80 * 80 * 0.95 < area < 90 * 90

    # sampled at lon / lat, the DTM is the true ground within a few cm (EPSG:4547 heights
    # are ellipsoidal here: the file has no vertical CRS)
    rng = np.random.default_rng(5)
    x, y = open_ground(truth, 400, rng)
    lon, lat = lonlat(x, y)
    h, which = sample(db_url, lon, lat)
    err = h - truth.terrain(x, y)
    assert (which == ds).all()
    assert np.median(np.abs(err)) < 0.02 and np.percentile(np.abs(err), 95) < 0.05, \
        np.percentile(np.abs(err), [50, 95, 100])
    # under the buildings the TIN bridges the gap: still the ground, within decimetres
    bx = np.array([b.footprint.centroid.x for b in truth.buildings])
    by = np.array([b.footprint.centroid.y for b in truth.buildings])
    hb, _ = sample(db_url, *lonlat(bx, by))
    assert np.abs(hb - truth.terrain(bx, by)).max() < 0.3
    # beyond the survey: no DTM
    far, src = sample(db_url, lon + 0.01, lat)
    assert np.isnan(far).all() and (src == -1).all()

    # layer.json: the survey's tiles down to its cell size
    layer = httpx.get(f"{url}/terrain/layer.json")
    assert layer.status_code == 200 and layer.headers["cache-control"] == "no-cache"
    doc = layer.json()
    assert doc["format"] == "quantized-mesh-1.0" and doc["scheme"] == "tms"
    assert doc["projection"] == "EPSG:4326" and doc["surveys"] == 1
    assert doc["maxzoom"] == qm.level_for_cell(0.5) == 18
    assert len(doc["available"]) == 19 and doc["available"][0] == [
        {"startX": 0, "startY": 0, "endX": 1, "endY": 0}]
    centre = (float(np.mean(lon)), float(np.mean(lat)))
    deep = tile_at(*centre, 18)
    [r18] = [r for r in doc["available"][18]
             if r["startX"] <= deep.x <= r["endX"] and r["startY"] <= deep.y <= r["endY"]]
    assert (r18["endX"] - r18["startX"] + 1) * (r18["endY"] - r18["startY"] + 1) <= 4 * 4
    assert httpx.get(f"{url}/terrain/layer.json",
                     headers={"If-None-Match": layer.headers["etag"]}).status_code == 304

    # a tile of the deepest level over the survey: vertices on the DTM within the height
    # quantization, inside the tile's bounds, its edges where the tile's edges are
    template = doc["tiles"][0]
    tile_url = f"{url}/terrain/" + template.format(z=deep.z, x=deep.x, y=deep.y)
    r = httpx.get(tile_url, headers={"Accept": "application/vnd.quantized-mesh"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/vnd.quantized-mesh")
    assert r.headers["cache-control"] == "public, max-age=86400"
    mesh = decode(r.content)
    w, s, e, n = deep.bounds
    p = mesh.lonlath(deep.bounds)
    assert p[:, 0].min() == w and p[:, 0].max() == pytest.approx(e, abs=1e-12)
    assert p[:, 1].min() == s and p[:, 1].max() == pytest.approx(n, abs=1e-12)
    assert set(mesh.u[mesh.edges["west"]]) == {0} and set(mesh.u[mesh.edges["east"]]) == {
        32767}
    assert set(mesh.v[mesh.edges["south"]]) == {0} and set(mesh.v[mesh.edges["north"]]) == {
        32767}
    assert len(mesh.edges["west"]) >= 2 and len(mesh.triangles) >= 2
    # every vertex is one of the tile's height samples (a 257 x 257 grid of lon / lat), its
    # u / v rounded to 1/32767 of the tile (2.6 mm here at most)
    slon, slat = sample_positions(mesh, deep)
    assert np.abs(p[:, 0] - slon).max() <= (e - w) / 32767 / 2 + 1e-12
    assert np.abs(p[:, 1] - slat).max() <= (n - s) / 32767 / 2 + 1e-12
    dtm_h, _ = sample(db_url, slon, slat)
    on = np.isfinite(dtm_h)
    assert on.mean() > 0.5  # the survey covers most of the tile
    assert np.abs(p[on, 2] - dtm_h[on]).max() <= mesh.height_step / 2 + 1e-4
    off = ~on  # the rest of the tile is sea level
    if off.any():
        assert np.abs(p[off, 2] - geoid_undulation(slon[off], slat[off])).max() \
            <= mesh.height_step / 2 + 1e-4
    # between vertices the mesh is the DTM within the simplification error of its level
    glon = rng.uniform(w, e, 200)
    glat = rng.uniform(s, n, 200)
    inside_dtm, _ = sample(db_url, glon, glat)
    meshed = interpolate(mesh, deep.bounds, glon, glat)
    ok = np.isfinite(inside_dtm) & np.isfinite(meshed)
    # cells next to the survey's edge meet sea level within one sample spacing: skip those
    edge = np.isnan(sample(db_url, glon + (e - w) / 200, glat)[0]) | np.isnan(
        sample(db_url, glon - (e - w) / 200, glat)[0]) | np.isnan(
        sample(db_url, glon, glat + (n - s) / 200)[0]) | np.isnan(
        sample(db_url, glon, glat - (n - s) / 200)[0])
    ok &= ~edge
    assert ok.sum() > 50
    gap = np.abs(meshed[ok] - inside_dtm[ok])
    # the error bound of Delatin, plus linear vs bilinear between samples of 0.3 m
    assert gap.max() <= qm.max_error(18) + mesh.height_step + 0.01, np.sort(gap)[-5:]
    # the normals the Accept header asked for
    with_normals = httpx.get(tile_url, headers={
        "Accept": "application/vnd.quantized-mesh;extensions=octvertexnormals"})
    normals = decode(with_normals.content).extensions[1]
    assert len(normals) == 2 * len(mesh.u)
    # revalidation costs no tile
    again = httpx.get(tile_url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304

    # the whole globe at level 0: sea level, never a hole; the survey's tile reaches down
    for z in range(0, 19, 3):
        t = tile_at(*centre, z)
        got = httpx.get(f"{url}/terrain/{t.z}/{t.x}/{t.y}.terrain")
        assert got.status_code == 200, (z, got.text)
        m = decode(got.content)
        assert len(m.triangles) >= 2 and m.min_h <= m.max_h

    # a survey deleted takes its DTM with it: the layer is sea level again
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM datasets WHERE id = %s", (ds,))
        assert conn.execute("SELECT count(*) FROM survey_terrain").fetchone()[0] == 0
    gone = httpx.get(f"{url}/terrain/layer.json").json()
    assert gone["surveys"] == 0 and gone["maxzoom"] == 0 and len(gone["available"]) == 1
    after = httpx.get(tile_url, headers={"If-None-Match": r.headers["etag"]})
    assert after.status_code == 200  # its DTM is gone: a new tag
    pa = decode(after.content).lonlath(deep.bounds)
    assert np.abs(pa[:, 2] - geoid_undulation(pa[:, 0], pa[:, 1])).max() < 0.05
    h2, src2 = sample(db_url, lon, lat)
    assert np.isnan(h2).all() and (src2 == -1).all()


def test_overlapping_surveys_newest_first(live_server, op, db_url, settings, tmp_path):
    # the later survey is uploaded first: the acquisition time decides, not the upload
    newer, ds_new, _ = survey(21, dt.date(2026, 6, 1), live_server, op, db_url, settings,
                              tmp_path, origin=(ORIGIN[0] + 40, ORIGIN[1]), buildings=0)
    older, ds_old, _ = survey(22, dt.date(2026, 2, 1), live_server, op, db_url, settings,
                              tmp_path, buildings=0)
    # different seeds, different terrain: metres apart where they overlap
    rng = np.random.default_rng(9)
    both_x = rng.uniform(ORIGIN[0] + 45, ORIGIN[0] + 75, 100)
    both_y = rng.uniform(ORIGIN[1] + 5, ORIGIN[1] + 75, 100)
    assert np.abs(newer.terrain(both_x, both_y) - older.terrain(both_x, both_y)).min() > 1
    clear = ~shapely.contains_xy(shapely.union_all(
        [shapely.Point(t.x, t.y).buffer(t.radius + 1.5) for t in newer.trees + older.trees]),
        both_x, both_y)
    h, src = sample(db_url, *lonlat(both_x[clear], both_y[clear]))
    assert (src == ds_new).all()
    assert np.abs(h - newer.terrain(both_x[clear], both_y[clear])).max() < 0.15
    # where only the older one flew, it is the ground
    ox, oy = open_ground(older, 100, rng)
    only = ox < ORIGIN[0] + 35
    h_old, src_old = sample(db_url, *lonlat(ox[only], oy[only]))
    assert (src_old == ds_old).all()
    assert np.abs(h_old - older.terrain(ox[only], oy[only])).max() < 0.15
    layer = httpx.get(f"{live_server.url}/terrain/layer.json").json()
    assert layer["surveys"] == 2 and layer["dataset_ids"] == [ds_new, ds_old]
    # and the tiles follow: a deep tile over the overlap has the newer survey's heights
    lon, lat = lonlat(np.array([ORIGIN[0] + 60.0]), np.array([ORIGIN[1] + 40.0]))
    t = tile_at(float(lon[0]), float(lat[0]), 18)
    mesh = decode(httpx.get(f"{live_server.url}/terrain/{t.z}/{t.x}/{t.y}.terrain").content)
    p = mesh.lonlath(t.bounds)
    expect, which = sample(db_url, *sample_positions(mesh, t))
    assert (which[np.isfinite(expect)] == ds_new).any()
    fine = np.isfinite(expect)
    assert np.abs(p[fine, 2] - expect[fine]).max() <= mesh.height_step / 2 + 1e-4


def test_no_survey_still_gives_a_globe_and_bad_tiles_are_404(live_server):
    url = live_server.url
    doc = httpx.get(f"{url}/terrain/layer.json").json()
    assert doc["surveys"] == 0 and doc["maxzoom"] == 0
    assert doc["available"] == [[{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]]
    assert doc["tiles"] and "{z}/{x}/{y}.terrain" in doc["tiles"][0]
    for x in (0, 1):
        r = httpx.get(f"{url}/terrain/0/{x}/0.terrain")
        assert r.status_code == 200
        m = decode(r.content)
        p = m.lonlath(qm.Tile(0, x, 0).bounds)
        assert (p[:, 0].min(), p[:, 0].max()) == ((-180.0, 0.0) if x == 0 else (0.0, 180.0))
        slon, slat = sample_positions(m, qm.Tile(0, x, 0))
        assert np.abs(p[:, 2] - geoid_undulation(slon, slat)).max() < m.height_step / 2 + 1e-4
        # fine enough to follow the globe's curve: Cesium draws straight triangles
        assert len(m.u) >= 33 * 33
    for path, reason in (("21/0/0", "level 21 is outside 0..20"),
                         ("3/16/0", "x 16 is outside 0..15 at level 3"),
                         ("3/0/8", "y 8 is outside 0..7 at level 3"),
                         ("-1/0/0", "level -1")):
        r = httpx.get(f"{url}/terrain/{path}.terrain")
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("application/problem+json")
        assert reason in r.json()["detail"]
    assert httpx.get(f"{url}/terrain/a/0/0.terrain").status_code == 422
