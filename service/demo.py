"""The live demo district: a clearly labelled synthetic part of Longgang (EPSG:4547, around
114.25 E, 22.72 N) that `twinbase serve` loads on the first start, so a new installation
shows the product where its users work.

It holds, all made here from seeded generators (nothing is downloaded):

- a city model of about 2,000 LoD1 buildings on sloping terrain (a CityJSON ingested as an
  ordinary dataset);
- a drone survey of a 320 m square in it (a LAZ ingested as an ordinary survey, so it goes
  through fly and model): the model has none of the survey's new development, a few of its
  buildings lower than they now stand and the rest as they are, so the change report lists
  new, changed and unchanged buildings;
- roads with a day of traffic observations, water stations on 龙岗河 with a month of
  samples, and 龙岗河 itself with two tributaries as lines, through the layers' own ingest;
- drones that fly while the service runs (one process flies them: the holder of an
  advisory lock), reported through the telemetry ingest: rolling fleet plans over five
  vertiports and a route network generated from the district's roads, every flight
  reserved and approved on it, flown as reserved (loops with no route until the network
  is made).

Every dataset, road, station and drone of it is named as synthetic. Later starts find the
demo datasets and load nothing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry.polygon import orient
from sqlalchemy import func, select, text

from service.core.db import make_async_engine, sync_engine
from service.core.settings import Settings
from service.core.tables import datasets
from service.datasets.store import new_dataset
from service.jobs.submit import submit_job
from service.uploads.storage import sha256_of

log = logging.getLogger(__name__)

LABEL = "龙岗演示区（合成数据）"
CITY_NAME = f"{LABEL} 城市模型 · synthetic Longgang demo city model"
SURVEY_NAME = f"{LABEL} 无人机航测 · synthetic Longgang demo survey"
DRONE_PREFIX = "DEMO-LG-"
N_CITY = 2000
N_SURVEY = 120
N_DRONES = 30
CRS = "EPSG:4547"
#: the demo drones' advisory lock: one process of the installation flies them
FLY_LOCK = 4547_2026


def _demo_rows(conn: Any) -> list[Any]:
    return conn.execute(select(datasets.c.id, datasets.c.name)
                        .where(datasets.c.options["demo"].as_boolean())).all()


def _lod1(building: Any, base: float, top: float, oid: str, vertices: list[list[float]],
          attributes: dict[str, Any]) -> dict[str, Any]:
    """A footprint extruded from ``base`` to ``top`` as a CityJSON LoD1 Solid with semantics
    (ground, roof, walls; outward)."""
    # on the millimetre grid the file is written at, with no repeated corner (a wall between
    # two corners that round to one point would have no area)
    clean = shapely.set_precision(building, 0.001).buffer(0)
    if clean.geom_type != "Polygon":  # the largest part of a footprint the grid split
        clean = max(shapely.get_parts(clean), key=lambda p: p.area)
    clean = orient(clean, 1.0)
    ring = clean.exterior.coords[:-1]
    n = len(ring)
    first = len(vertices)
    for x, y in ring:
        vertices.append([x, y, base])
    for x, y in ring:
        vertices.append([x, y, top])
    bottom = [[first + i for i in reversed(range(n))]]
    roof = [[first + n + i for i in range(n)]]
    walls = [[[first + i, first + (i + 1) % n, first + n + (i + 1) % n, first + n + i]]
             for i in range(n)]
    shell = [bottom, roof, *walls]
    return {"type": "Building", "attributes": attributes,
            "geometry": [{"type": "Solid", "lod": "1", "boundaries": [shell],
                          "semantics": {"surfaces": [{"type": "GroundSurface"},
                                                     {"type": "RoofSurface"},
                                                     {"type": "WallSurface"}],
                                        "values": [[0, 1, *([2] * n)]]}}]}


def make_files(out: Path) -> tuple[Path, Path]:
    """The demo's city model (CityJSON) and survey (LAZ) in ``out``."""
    import laspy

    from recon.simulate import LONGGANG_ORIGIN, simulate_district, write_las

    out.mkdir(parents=True, exist_ok=True)
    x0, y0 = LONGGANG_ORIGIN
    # the survey's square lies in the middle of the city; its terrain is the ground of both
    sx, sy = x0 + 640.0, y0 + 640.0
    survey = simulate_district(n_buildings=N_SURVEY, area_m=320.0, density=10.0, seed=2026,
                               origin=(sx, sy))
    city = simulate_district(n_buildings=N_CITY, area_m=1600.0, density=0.01, seed=4547,
                             origin=(x0, y0), wall_density=0.0)
    ground = survey.terrain
    square = shapely.box(sx - 20, sy - 20, sx + 340, sy + 340)
    objects: dict[str, Any] = {}
    vertices: list[list[float]] = []
    for b in city.buildings:
        if b.footprint.intersects(square):
            continue  # the survey's new development: not in the model yet
        xy = np.asarray(b.footprint.exterior.coords)
        base = float(np.min(ground(xy[:, 0], xy[:, 1])))
        objects[f"demo-{b.id}"] = _lod1(b.footprint, base, base + b.max_height,
                                        f"demo-{b.id}", vertices,
                                        {"名称": f"演示楼 {b.id}", "synthetic": True})
    for b in survey.buildings[: N_SURVEY // 2]:
        # half of the surveyed buildings were in the model; a tenth of those stood lower
        lower = 4.0 if b.id % 5 == 0 else 0.0
        top = b.base_z + b.max_height - lower
        objects[f"demo-s{b.id}"] = _lod1(b.footprint, b.base_z, top, f"demo-s{b.id}",
                                         vertices, {"名称": f"航测区楼 {b.id}",
                                                    "synthetic": True})
    arr = np.asarray(vertices)
    lo = arr.min(axis=0)
    scale = 0.001
    ints = np.round((arr - lo) / scale).astype(np.int64).tolist()
    doc = {"type": "CityJSON", "version": "2.0",
           "transform": {"scale": [scale] * 3, "translate": lo.tolist()},
           "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/4547",
                        "title": CITY_NAME},
           "CityObjects": objects, "vertices": ints}
    city_path = out / "longgang_demo_city.city.json"
    city_path.write_text(json.dumps(doc, ensure_ascii=False))
    survey_path = out / "longgang_demo_survey.laz"
    write_las(survey, survey_path)
    las = laspy.read(survey_path)
    las.header.creation_date = date.today()
    las.write(survey_path)
    return city_path, survey_path


def queue_demo(settings: Settings, url: str) -> list[int]:
    """Load the demo district into an installation that has none: the city model and the
    survey are queued as datasets (their jobs run in the worker; the survey is modelled
    after its ingest), roads, stations and drones are written at once."""
    engine = sync_engine(url)
    with engine.connect() as conn:
        loaded = bool(_demo_rows(conn))
        rivers = conn.execute(text("SELECT count(*) FROM waterways WHERE code LIKE 'DEMO-%'")
                              ).scalar()
    if loaded:
        if not rivers:
            asyncio.run(_waterways_only(url))
        return []
    city_path, survey_path = make_files(settings.data_dir / "demo")
    queued = []
    with engine.begin() as conn:
        for kind, name, path, options in (
                ("cityjson", CITY_NAME, city_path, {"crs": CRS, "demo": True}),
                ("lidar", SURVEY_NAME, survey_path, {"crs": CRS, "demo": True})):
            dataset_id = conn.execute(new_dataset(
                kind, name, source_path=str(path), sha256=sha256_of(path),
                size_bytes=path.stat().st_size, options=options, uploaded_by="demo")
            ).scalar_one()
            job = "ingest_cityjson" if kind == "cityjson" else "ingest_lidar"
            submit_job(conn, job, dataset_id=dataset_id, params=options, created_by="demo",
                       max_attempts=settings.job_max_attempts)
            queued.append(dataset_id)
        conn.execute(text(
            "INSERT INTO drones (serial, operator, class, model) SELECT :prefix || "
            "lpad(g::text, 3, '0'), '龙岗演示运营（合成） synthetic demo operator', 'light', "
            "'synthetic' FROM generate_series(1, :n) g ON CONFLICT (serial) DO NOTHING"),
            {"prefix": DRONE_PREFIX, "n": N_DRONES})
    asyncio.run(_layers(url))
    log.info("demo district queued: datasets %s", queued)
    return queued


def _lonlat() -> Transformer:
    return Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def _river_at(t: float, x0: float, y0: float) -> tuple[float, float]:
    """The demo's 龙岗河 (EPSG:4547): west to east across the district, t = 0..1 over it."""
    return x0 - 50 + 1700 * t, y0 + 780 + 90 * math.sin(t * 6)


RIVER = "龙岗河（合成演示）"


def waterways(x0: float, y0: float) -> list[dict[str, Any]]:
    """龙岗河 through the demo's stations (at t = 1/6 .. 5/6 of it, on the line's vertices)
    and two tributaries joining it from the north and the south, as lon/lat WKT rows."""
    to_ll = _lonlat()

    def wkt(xy: list[tuple[float, float]]) -> str:
        lon, lat = to_ll.transform([p[0] for p in xy], [p[1] for p in xy])
        return "LINESTRING(" + ", ".join(f"{a} {b}" for a, b in zip(lon, lat, strict=True)) + ")"

    # steps of 1/60: every station's t is a vertex, and the line runs on past the district
    main = [_river_at(k / 60, x0, y0) for k in range(-12, 73)]
    j1, j2 = _river_at(0.3, x0, y0), _river_at(0.8, x0, y0)
    north = [(j1[0] - 120 + 40 * math.sin(k / 3), j1[1] + 1000 - 100 * k) for k in range(10)]
    south = [(j2[0] + 150 - 30 * math.sin(k / 2), j2[1] - 900 + 100 * k) for k in range(9)]
    return [
        {"code": "DEMO-WW-LGH", "name": RIVER, "kind": "river", "parent": None,
         "wkt": wkt(main)},
        {"code": "DEMO-WW-DSH", "name": "丁山河（合成演示）", "kind": "stream", "parent": RIVER,
         "wkt": wkt([*north, j1])},
        {"code": "DEMO-WW-NYH", "name": "南约河（合成演示）", "kind": "stream", "parent": RIVER,
         "wkt": wkt([*south, j2])},
    ]


async def _waterways_only(url: str) -> None:
    """The rivers alone, for a demo loaded before the layers had them (an upsert by code)."""
    from recon.simulate import LONGGANG_ORIGIN
    from service.layers import store

    engine = make_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(store.upsert_waterways(waterways(*LONGGANG_ORIGIN)))
    finally:
        await engine.dispose()


async def _layers(url: str) -> None:
    """Roads with a day of traffic, stations on 龙岗河 with a month of samples, and the river
    with its tributaries, through the layers' own ingest (validation, classes, partitions)."""
    from recon.simulate import LONGGANG_ORIGIN
    from service.layers import store, traffic, water

    to_ll = _lonlat()
    x0, y0 = LONGGANG_ORIGIN
    rng = np.random.default_rng(33171)
    segments = []
    for k, offset in enumerate(range(200, 1600, 400)):
        for axis in ("ew", "ns"):
            for j in range(0, 1600, 200):
                a = (x0 + j, y0 + offset) if axis == "ew" else (x0 + offset, y0 + j)
                b = (a[0] + 200, a[1]) if axis == "ew" else (a[0], a[1] + 200)
                (lon0, lon1), (lat0, lat1) = to_ll.transform([a[0], b[0]], [a[1], b[1]])
                road_class = ("primary", "secondary", "branch", "expressway")[k % 4]
                segments.append({
                    "code": f"DEMO-{axis}{offset}-{j}", "name": f"演示路 {axis.upper()}{offset}",
                    "road_class": road_class, "lanes": 3, "speed_limit_kmh": 60,
                    "free_flow_kmh": 55, "wkt": f"LINESTRING({lon0} {lat0}, {lon1} {lat1})"})
    river = [_river_at(t, x0, y0) for t in np.linspace(0, 1, 7)]
    stations = []
    for i, (x, y) in enumerate(river[1:-1]):
        lon, lat = to_ll.transform(x, y)
        stations.append({"code": f"DEMO-LGH-{i + 1}", "name": f"龙岗河演示站 {i + 1}（合成）",
                         "water_body": "龙岗河", "body_type": "river",
                         "wkt": f"POINT({lon} {lat})"})
    engine = make_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(store.upsert_segments(segments))
            await conn.execute(store.upsert_stations(stations))
            await conn.execute(store.upsert_waterways(waterways(x0, y0)))
            seg_ids = list((await conn.execute(text(
                "SELECT id FROM road_segments WHERE code LIKE 'DEMO-%' ORDER BY id"))).scalars())
            st_ids = list((await conn.execute(text(
                "SELECT id FROM water_stations WHERE code LIKE 'DEMO-LGH-%' ORDER BY id"
            ))).scalars())
            day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) \
                - timedelta(days=1)
            rows = []
            for sid in seg_ids:
                for m in range(0, 24 * 60, 5):
                    hour = m / 60
                    peak = math.exp(-((hour - 8.5) ** 2) / 2) + math.exp(-((hour - 18) ** 2) / 2)
                    speed = max(5.0, 55 * (1 - 0.75 * peak) + rng.normal(0, 3))
                    rows.append({"segment_id": sid,
                                 "observed_at": (day + timedelta(minutes=m)).isoformat(),
                                 "volume": int(max(0, 20 + 90 * peak + rng.normal(0, 5))),
                                 "speed_kmh": round(speed, 1)})
            await traffic.ingest_observations(conn, rows)
            samples = []
            for i, sid in enumerate(st_ids):
                worse = 1.0 + 0.5 * i  # downstream the river carries more
                for d in range(30):
                    samples.append({
                        "station_id": sid,
                        "observed_at": (day - timedelta(days=d)).replace(hour=10).isoformat(),
                        "ph": round(float(rng.normal(7.3, 0.2)), 2),
                        "dissolved_oxygen": round(float(max(1.0, rng.normal(7.5 / worse, 0.6))), 2),
                        "codmn": round(float(rng.lognormal(math.log(3 * worse), 0.2)), 2),
                        "nh3_n": round(float(rng.lognormal(math.log(0.3 * worse), 0.3)), 3),
                        "tp": round(float(rng.lognormal(math.log(0.08 * worse), 0.25)), 3)})
            await water.ingest_observations(conn, samples)
    finally:
        await engine.dispose()


async def fly(engine: Any, settings: Settings, stop: asyncio.Event) -> None:
    """Fly the demo drones while the service runs: one report per drone in the air per
    second through the telemetry ingest. One process flies them (the holder of an advisory
    lock); the others wait for the lock in case that one stops.

    Once the demo city model is ingested, five vertiports and a route network over the
    district's roads are made (once), and the drones fly rolling fleet plans: each plan
    (``POST /fleet/plans``'s own path) is reserved and approved on the network, and the
    drones fly its reserved routes, so the conformance monitor finds them conforming. Until
    then, or if the network cannot be made, they fly loops with no route."""
    from service.lowalt.settings import get_lowalt_settings

    s = get_lowalt_settings()
    while not stop.is_set():
        async with engine.connect() as lock_conn:
            got = (await lock_conn.execute(select(func.pg_try_advisory_lock(FLY_LOCK)))
                   ).scalar()
            await lock_conn.commit()
            if not got:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 30)
                continue
            async with engine.connect() as conn:
                rows = (await conn.execute(text(
                    "SELECT id, serial FROM drones WHERE serial LIKE :p ORDER BY id"),
                    {"p": DRONE_PREFIX + "%"})).all()
            if not rows:
                return  # no demo here
            await _fly_fleet(engine, settings, s, rows, stop)


#: where the demo vertiports go: outside the ring corridor around the built blocks, facing
#: five demo roads (metres from the district's origin; the nearest spot clear of
#: buildings), joined to the ring by a connector
VERTIPORT_SPOTS = ((-120, 200), (1720, 1000), (600, -120), (1400, 1720), (-120, 1400))
#: the ring corridor runs this far outside the district's square; the roads are led out to
#: it. The district's blocks are dense (lots of about 32 m), so a corridor over a road
#: passes over buildings, and the ones too tall for its layer are dropped by validation;
#: the ring keeps every vertiport and road end joined.
RING_M = 40.0


def _ring_guides() -> list[dict[str, Any]]:
    """GeoJSON lines (WGS 84): the ring around the district and the demo roads' stubs out
    to it."""
    from recon.simulate import LONGGANG_ORIGIN

    x0, y0 = LONGGANG_ORIGIN
    lo, hi = -RING_M, 1600 + RING_M
    lines = [[(lo, lo), (hi, lo), (hi, hi), (lo, hi), (lo, lo)]]
    for offset in range(200, 1600, 400):
        lines += [[(lo - 20, offset), (0, offset)], [(1600, offset), (hi + 20, offset)],
                  [(offset, lo - 20), (offset, 0)], [(offset, 1600), (offset, hi + 20)]]
    to_ll = _lonlat()
    out = []
    for line in lines:
        xs, ys = zip(*((x0 + x, y0 + y) for x, y in line), strict=True)
        lon, lat = to_ll.transform(xs, ys)
        out.append({"type": "Feature", "properties": {"name": "演示外环航路（合成）"},
                    "geometry": {"type": "LineString",
                                 "coordinates": [list(p) for p in zip(lon, lat, strict=True)]}})
    return out


async def _fly_fleet(engine: Any, settings: Settings, s: Any, rows: list[Any],
                     stop: asyncio.Event) -> None:
    from recon.simulate import LONGGANG_ORIGIN
    from service.lowalt import demo_fleet
    from service.lowalt.schemas import TelemetryIn
    from service.lowalt.simulator import FleetSimulator
    from service.lowalt.telemetry import ingest

    ids = [r.id for r in rows]
    x0, y0 = LONGGANG_ORIGIN
    lon, lat = _lonlat().transform(x0 + 800, y0 + 800)
    loops = FleetSimulator(ids, centre_lon=lon, centre_lat=lat, spread_m=600.0)
    sim = None  # the plan's flights, once there is one
    ports: list[Any] = []
    plan_until = None
    next_try = datetime.now(UTC)
    seed = 0
    while not stop.is_set():
        now = datetime.now(UTC)
        if now >= next_try and (plan_until is None
                                or now >= plan_until - timedelta(
                                    seconds=demo_fleet.RENEW_BEFORE_S)):
            next_try = now + timedelta(seconds=20)
            try:
                state = await demo_fleet.city_state(engine)
                if state in ("ready", "failed", None):
                    if not ports:
                        ports = await demo_fleet.ensure_network(
                            engine, s, [(x0 + dx, y0 + dy) for dx, dy in VERTIPORT_SPOTS],
                            _ring_guides())
                    if ports:
                        seed += 1
                        start = max(now, plan_until or now) + timedelta(seconds=30)
                        plan = await demo_fleet.make_demo_plan(
                            engine, s, ports, [r.serial for r in rows], start, seed)
                        new = await demo_fleet.plan_simulator(engine, plan)
                        sim = new if sim is None else sim.extended(new, now)
                        plan_until = demo_fleet.plan_end(plan)
                        log.info("demo fleet plan %s: %s tasks planned (%s not), %s "
                                 "flights reserved, %s vertiports", plan["id"],
                                 plan["planned"], len(plan["unassigned"]),
                                 plan["reservation"].get("approved"), len(ports))
            except Exception:  # the demo carries on with what it has
                log.exception("demo fleet plan not made")
        reports = sim.reports(now) if sim is not None else loops.reports(now)
        if reports:
            points = [TelemetryIn(**r) for r in reports]
            try:
                async with engine.begin() as conn:
                    await ingest(conn, points, s, settings.telemetry_retention_days)
            except Exception:  # a report refused or the database away: try next second
                log.exception("demo telemetry not stored")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
