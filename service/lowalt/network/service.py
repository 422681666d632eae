"""The route network as a service: vertiports, generation, planners' edits, the current
network for routing (cached per version), and travel times between positions.

Every change of the network is a new ``network_versions`` row, made under one advisory
lock: a generation closes every current edge and writes the new ones; an edit closes or
adds edges. An edit that cuts a vertiport off from others it reached both ways before is
refused with the vertiports named, unless the planner asks for it to be accepted
(``allow_disconnect``); then the version carries the flag.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import numpy as np
import shapely
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import Conflict, NotFound, Unprocessable
from service.lowalt.checks import validate_route
from service.lowalt.citymodel import city_model_version, load_obstacles, load_zones
from service.lowalt.geo import Frame, corridor_polygon, frame
from service.lowalt.ground import load_ground
from service.lowalt.network import store
from service.lowalt.network.corridors import Checker, Edge, build_edges, edge_volume
from service.lowalt.network.graph import (
    Network,
    capacity_per_hour,
    disconnected_by,
    heading_deg,
    layer_agl,
    plan_corridors,
    sector,
)
from service.lowalt.network.schemas import AddEdgeIn, CloseEdgeIn, GenerateIn, VertiportIn
from service.lowalt.schemas import RouteVolume, check_in_area
from service.lowalt.settings import LowAltSettings

TOP_LAYER = 3  # westbound: the highest layer a vertiport's column must reach


def plain(value: Any) -> Any:
    """JSON values only (datetimes as text), for a JSONB column."""
    return json.loads(json.dumps(value, default=str))


# --- vertiports -----------------------------------------------------------------------


def vertiport_feature(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    lon, lat = m.pop("lon"), m.pop("lat")
    return {"type": "Feature", "id": m["id"], "properties": m,
            "geometry": {"type": "Point", "coordinates": [lon, lat, m["pad_m"]]}}


def column_volume(x: float, y: float, pad: float, top: float, s: LowAltSettings, fr: Frame,
                  now: datetime) -> RouteVolume:
    """A vertiport's climb: straight up from the pad to the top layer."""
    xyz = np.array([[x, y, pad], [x, y, top]])
    hw = s.network_half_width_m
    return RouteVolume(fr.lonlatz(xyz), xyz, hw, s.network_vertical_half_m,
                       corridor_polygon(xyz, hw), now, now + timedelta(hours=1), 0, fr)


async def create_vertiport(conn: AsyncConnection, body: VertiportIn, s: LowAltSettings,
                           by: str) -> dict[str, Any]:
    """Validate the vertiport's column (pad to the top layer) like a route; refused with
    the reason when it enters a prohibited zone or breaks a building's clearance."""
    p = np.array(body.position, float)
    if len(p) not in (2, 3):
        raise Unprocessable("position must be [lon, lat] or [lon, lat, pad height]")
    check_in_area(p[:1], p[1:2], s.metric_crs)
    fr = frame(s.metric_crs)
    x, y = fr.to_metric(p[:1], p[1:2])
    x, y = float(x[0]), float(y[0])
    box = shapely.Point(x, y).buffer(s.network_half_width_m + s.clearance_h_m + 5)
    ground = await load_ground(conn, box, fr, s)
    g = float(ground.at_xy(np.array([x]), np.array([y]))[0][0])
    pad = float(p[2]) if len(p) == 3 else g
    if not g - s.below_ground_m <= pad <= g + s.height_limit_m:
        raise Unprocessable(f"pad height {pad:.1f} m is not between the ground ({g:.1f} m) "
                            f"and {s.height_limit_m:g} m above it")
    top = g + layer_agl(TOP_LAYER, s.network_base_agl_m, s.network_layer_step_m)
    now = datetime.now(UTC)
    vol = column_volume(x, y, pad, max(top, pad + 1.0), s, fr, now)
    result = await validate_route(conn, vol, "light", s, ground=ground)
    bad = [v for v in result["violations"] if v["severity"] == "refuse"]
    if bad:
        raise Unprocessable(
            f"vertiport {body.name!r} refused: its climb to the flight layers "
            + "; ".join(v["message"] for v in bad[:3]) + "; nothing was stored",
            violations=bad)
    row = (await conn.execute(
        store.vp.insert().values(
            code=body.code, name=body.name,
            geom=func.ST_SetSRID(func.ST_MakePoint(float(p[0]), float(p[1])), 4326),
            pad_m=pad, capacity_per_hour=body.capacity_per_hour,
            validation=plain(result), created_by=by).returning(store.vp.c.id))).one()
    out = (await conn.execute(store.VERTIPORTS.where(store.vp.c.id == row.id))).one()
    return vertiport_feature(out)


# --- the current network --------------------------------------------------------------

_CACHE: dict[tuple[str, int], Network] = {}
# the newest version loaded per database: approval reads the current version in its own
# first statement and loads again when it differs
_LATEST: dict[str, Network] = {}


async def current_version(conn: AsyncConnection) -> int | None:
    return (await conn.execute(store.CURRENT_VERSION)).scalar_one()


async def load_network(conn: AsyncConnection, s: LowAltSettings,
                       version: int | None = None, cached: bool = False) -> Network:
    """The current network (edges whose version_to is NULL), cached per version. With
    ``cached``, the newest one loaded before (no query) when there is one: the caller
    checks its version."""
    if cached and version is None:
        hit = _LATEST.get(str(conn.engine.url))
        if hit is not None:
            return hit
    if version is None:
        version = await current_version(conn)
    if version is None:
        raise NotFound("no route network yet: POST /airspace/network/generate")
    key = (str(conn.engine.url), version)
    hit = _CACHE.get(key)
    if hit is not None:
        _remember(key[0], hit)
        return hit
    fr = frame(s.metric_crs)
    nodes = (await conn.execute(store.CURRENT_NODES)).all()
    edges = (await conn.execute(store.CURRENT_EDGES)).all()
    net = network_from_rows(nodes, edges, fr, s, version)
    net.pads = dict((await conn.execute(
        select(store.vp.c.id, store.vp.c.capacity_per_hour))).all())
    if len(_CACHE) > 16:
        _CACHE.clear()
    _CACHE[key] = net
    _remember(key[0], net)
    return net


def _remember(url: str, net: Network) -> None:
    cur = _LATEST.get(url)
    if cur is None or cur.version <= net.version:
        _LATEST[url] = net


def network_from_rows(nodes, edges, fr: Frame, s: LowAltSettings, version: int) -> Network:
    ids = np.array([r.id for r in nodes], np.int64)
    ll = np.array([(r.lon, r.lat) for r in nodes], float).reshape(-1, 2)
    x, y = fr.to_metric(ll[:, 0], ll[:, 1]) if len(ll) else (np.empty(0), np.empty(0))
    pos = {int(i): k for k, i in enumerate(ids)}
    xyz: list[np.ndarray] = []
    if edges:
        geoms = shapely.from_wkb([r.wkb for r in edges])
        c, idx = shapely.get_coordinates(geoms, include_z=True, return_index=True)
        m = fr.xyz(c)
        xyz = np.split(m, np.flatnonzero(np.diff(idx)) + 1)
    return Network(
        node_ids=ids, node_xy=np.column_stack([x, y]) if len(ll) else np.empty((0, 2)),
        node_ground=np.array([r.ground_m for r in nodes], float),
        node_vertiport=np.array([-1 if r.vertiport_id is None else r.vertiport_id
                                 for r in nodes], np.int64),
        edge_ids=np.array([r.id for r in edges], np.int64),
        edge_from=np.array([pos[r.from_node] for r in edges], np.int64),
        edge_to=np.array([pos[r.to_node] for r in edges], np.int64),
        edge_layer=np.array([r.layer for r in edges], np.int64),
        edge_agl=np.array([r.layer_agl_m for r in edges], float),
        edge_length=np.array([r.length_m for r in edges], float),
        edge_speed=np.array([r.speed_ms for r in edges], float),
        edge_capacity=np.array([r.capacity_per_hour for r in edges], np.int64),
        edge_xyz=list(xyz), climb_ms=s.network_climb_ms, version=version)


async def travel_time_matrix(conn: AsyncConnection, positions: list[list[float]],
                             s: LowAltSettings) -> dict[str, Any]:
    """Seconds between every pair of positions ([lon, lat], ground to ground) over the
    current network: each position joins its nearest node by a straight hop at the
    network's speed (``access_m`` says how far), then the fastest path on the network
    (climbs, corridors, layer changes, descent). ``seconds[i][j]`` is inf where the network
    has no path. The function task assignment calls."""
    net = await load_network(conn, s)
    # [lon, lat] or [lon, lat, h] mixed: the heights play no part in a ground-to-ground time
    p = np.array([q[:2] for q in positions], float).reshape(-1, 2)
    check_in_area(p[:, 0], p[:, 1], s.metric_crs)
    fr = frame(s.metric_crs)
    x, y = fr.to_metric(p[:, 0], p[:, 1])
    idx, access = net.nearest_nodes(np.column_stack([x, y]))
    uniq, inv = np.unique(idx, return_inverse=True)
    t = net.travel_times(uniq, uniq)[np.ix_(inv, inv)]
    hop = access / s.network_speed_ms
    seconds = t + hop[:, None] + hop[None, :]
    np.fill_diagonal(seconds, 0.0)
    return {"seconds": seconds, "nodes": net.node_ids[idx], "access_m": access,
            "version": net.version}


# --- generation -----------------------------------------------------------------------


def _lines_from_geojson(doc: dict[str, Any]) -> tuple[list[shapely.Geometry], list[str]]:
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    lines, names = [], []
    for i, f in enumerate(feats or []):
        geom = f.get("geometry") if f.get("type") == "Feature" else f
        try:
            g = shapely.geometry.shape(geom)
        except Exception as exc:  # shapely raises several types for malformed input
            raise Unprocessable(f"guide feature {i} is not a geometry: {exc}") from exc
        if g.geom_type not in ("LineString", "MultiLineString"):
            raise Unprocessable(f"guide feature {i} is a {g.geom_type}; guides are lines")
        props = f.get("properties") or {}
        name = str(props.get("name") or props.get("code") or f.get("id") or f"guide-{i}")
        for part in shapely.get_parts(shapely.force_2d(g)):
            if part.length > 0:
                lines.append(part)
                names.append(name)
    return lines, names


async def _guides(conn: AsyncConnection, body: GenerateIn
                  ) -> tuple[list[shapely.Geometry], list[str]]:
    if body.guides != "roads":
        return _lines_from_geojson(body.guides)
    stmt = store.ROADS
    if body.road_classes:
        stmt = stmt.where(store.road_segments.c.road_class.in_(body.road_classes))
    rows = (await conn.execute(stmt)).all()
    return ([shapely.from_wkb(r.wkb) for r in rows],
            [r.code or f"road-{r.id}" for r in rows])


async def generate(conn: AsyncConnection, body: GenerateIn, s: LowAltSettings, by: str
                   ) -> dict[str, Any]:
    t0 = time.perf_counter()
    await conn.execute(store.NETWORK_LOCK)
    lines_ll, names = await _guides(conn, body)
    if not lines_ll:
        raise Unprocessable("no guide lines: the roads table is empty (or no road of the "
                            "classes asked for), or the GeoJSON has no line")
    fr = frame(s.metric_crs)
    allc = np.vstack([shapely.get_coordinates(g) for g in lines_ll])
    check_in_area(allc[:, 0], allc[:, 1], s.metric_crs)
    lines = list(fr.geom_to_metric(np.asarray(lines_ll, dtype=object)))
    vps = (await conn.execute(store.VERTIPORTS)).all()
    vxy = np.column_stack(fr.to_metric(np.array([r.lon for r in vps], float),
                                       np.array([r.lat for r in vps], float))) \
        if vps else np.empty((0, 2))
    plan = plan_corridors(lines, names, vxy, s.network_max_connector_m,
                          gap=s.separation_h_m + 2 * s.network_half_width_m)
    reach = s.network_half_width_m + s.clearance_h_m + 5
    x0, y0, x1, y1 = shapely.total_bounds(np.asarray(lines, dtype=object))
    if len(vxy):
        x0, y0 = min(x0, vxy[:, 0].min()), min(y0, vxy[:, 1].min())
        x1, y1 = max(x1, vxy[:, 0].max()), max(y1, vxy[:, 1].max())
    box = shapely.box(x0 - reach, y0 - reach, x1 + reach, y1 + reach)
    now = datetime.now(UTC)
    obstacles = await load_obstacles(conn, box, fr, s.obstacle_types)
    zones = await load_zones(conn, box, fr, now, now + timedelta(hours=1))
    ground = await load_ground(conn, box, fr, s)
    model = await city_model_version(conn)
    t_load = time.perf_counter()
    check = Checker(obstacles, zones, ground, s)
    kept, dropped = await anyio.to_thread.run_sync(build_edges, plan, check, s, fr, now)
    t_build = time.perf_counter()
    parent = await current_version(conn)
    stats = {"guides": len(lines), "parts": len(plan.parts), "nodes": len(plan.nodes),
             "edges": len(kept), "dropped": len(dropped), "dropped_edges": dropped[:500],
             "unconnected_vertiports": [int(vps[k].id) for k in plan.unconnected],
             "obstacles": len(obstacles), "zones": len(zones),
             "capacity_per_hour": capacity_per_hour(
                 s.network_speed_ms, s.separation_h_m, s.network_half_width_m,
                 s.network_buffer_s),
             "load_s": round(t_load - t0, 2), "build_s": round(t_build - t_load, 2)}
    params = {"guides": "roads" if body.guides == "roads" else "geojson",
              "road_classes": body.road_classes, "speed_ms": s.network_speed_ms,
              "half_width_m": s.network_half_width_m,
              "vertical_half_m": s.network_vertical_half_m,
              "layers_agl_m": [layer_agl(k, s.network_base_agl_m, s.network_layer_step_m)
                               for k in range(4)],
              "buffer_s": s.network_buffer_s, "separation_h_m": s.separation_h_m}
    ver = (await conn.execute(store.NEW_VERSION, {
        "parent_id": parent, "change": "generate", "note": body.note,
        "params": params, "stats": plain(stats), "flags": [], "city_model_version": model,
        "created_by": by})).one()
    node_ids = await _write_nodes(conn, plan, ground, vps, fr, ver.id)
    await conn.execute(store.CLOSE_ALL, {"version": ver.id, "reason": "regenerated"})
    await _write_edges(conn, kept, node_ids, s, fr, ver.id)
    stats["write_s"] = round(time.perf_counter() - t_build, 2)
    stats["total_s"] = round(time.perf_counter() - t0, 2)
    await conn.execute(store.v.update().where(store.v.c.id == ver.id)
                       .values(stats=plain(stats)))
    return {"version": ver.id, "created_at": ver.created_at, **stats}


async def _write_nodes(conn: AsyncConnection, plan, ground, vps, fr: Frame, version: int
                       ) -> np.ndarray:
    if not len(plan.nodes):
        return np.empty(0, np.int64)
    g, _ = ground.at_xy(plan.nodes[:, 0], plan.nodes[:, 1])
    lon, lat = fr.to_lonlat(plan.nodes[:, 0], plan.nodes[:, 1])
    rows = []
    for i in range(len(plan.nodes)):
        k = int(plan.vertiport_of[i])
        rows.append({"version_id": version, "kind": "vertiport" if k >= 0 else "junction",
                     "vertiport_id": int(vps[k].id) if k >= 0 else None,
                     "lon": float(lon[i]), "lat": float(lat[i]),
                     "ground_m": float(vps[k].pad_m) if k >= 0 else float(g[i])})
    res = await conn.execute(store.NEW_NODE, rows)
    return np.array([r.id for r in res.all()], np.int64)


def _edge_row(edge, u_id: int, v_id: int, s: LowAltSettings, fr: Frame, version: int,
              source: str | None = None) -> dict[str, Any]:
    wkb = shapely.to_wkb(shapely.LineString(fr.lonlatz(edge.xyz)), output_dimension=3)
    r = edge.result
    return {"from_node": u_id, "to_node": v_id, "wkb": wkb,
            "heading_deg": round(edge.heading, 2), "layer": edge.layer,
            "layer_agl_m": edge.agl, "half_width_m": s.network_half_width_m,
            "vertical_half_m": s.network_vertical_half_m, "length_m": edge.length,
            "speed_ms": s.network_speed_ms, "capacity_per_hour": edge.capacity,
            "source": source or edge.source, "guide": edge.guide, "verdict": r["verdict"],
            "validation": plain({"verdict": r["verdict"], "violations": r["violations"],
                                 "checked": r["checked"]}),
            "version_from": version}


async def _write_edges(conn: AsyncConnection, kept, node_ids: np.ndarray,
                       s: LowAltSettings, fr: Frame, version: int) -> None:
    rows = [_edge_row(ed, int(node_ids[ed.u]), int(node_ids[ed.v]), s, fr, version)
            for ed in kept]
    for i in range(0, len(rows), 2000):
        await conn.execute(store.NEW_EDGE, rows[i:i + 2000])


# --- planners' edits ------------------------------------------------------------------


def _without(net: Network, closed: set[int]) -> Network:
    keep = np.array([int(i) not in closed for i in net.edge_ids], bool)
    return Network(net.node_ids, net.node_xy, net.node_ground, net.node_vertiport,
                   net.edge_ids[keep], net.edge_from[keep], net.edge_to[keep],
                   net.edge_layer[keep], net.edge_agl[keep], net.edge_length[keep],
                   net.edge_speed[keep], net.edge_capacity[keep],
                   [x for x, k in zip(net.edge_xyz, keep, strict=True) if k], net.climb_ms)


def _disconnect_guard(before: Network, after: Network, allow: bool) -> list[dict]:
    cut = disconnected_by(before, after)
    if cut and not allow:
        names = ", ".join(str(c["vertiport"]) for c in cut)
        raise Conflict(
            f"the edit disconnects vertiport(s) {names} from vertiports they reach now; "
            "nothing was changed (allow_disconnect=true accepts it, flagged)",
            disconnected=cut)
    return cut


async def close_edge(conn: AsyncConnection, edge_id: int, body: CloseEdgeIn,
                     s: LowAltSettings, by: str) -> dict[str, Any]:
    await conn.execute(store.NETWORK_LOCK)
    row = (await conn.execute(store.EDGE_FOR_UPDATE, {"id": edge_id})).first()
    if row is None:
        raise NotFound(f"no network edge {edge_id}")
    if row.version_to is not None:
        raise Conflict(f"network edge {edge_id} is closed already (version {row.version_to})")
    ids = {edge_id}
    if body.both_directions:
        ids |= {r.id for r in (await conn.execute(
            store.TWINS, {"u": row.to_node, "v": row.from_node})).all()}
    before = await load_network(conn, s)
    cut = _disconnect_guard(before, _without(before, ids), body.allow_disconnect)
    parent = await current_version(conn)
    ver = (await conn.execute(store.NEW_VERSION, {
        "parent_id": parent, "change": "close", "note": body.reason,
        "params": {"edges": sorted(ids)}, "stats": {"closed": len(ids)},
        "flags": [{"disconnected": c} for c in cut], "city_model_version": None,
        "created_by": by})).one()
    await conn.execute(store.CLOSE_EDGES, {"ids": sorted(ids), "version": ver.id,
                                           "reason": body.reason})
    return {"version": ver.id, "closed": sorted(ids), "disconnected": cut,
            "flagged": bool(cut)}


async def add_edge(conn: AsyncConnection, body: AddEdgeIn, s: LowAltSettings, by: str
                   ) -> dict[str, Any]:
    """A planner's corridor between two nodes, at its heading's layer, validated like a
    generated one; refused when invalid or when it crosses a corridor of the same layer
    between nodes."""
    await conn.execute(store.NETWORK_LOCK)
    fr = frame(s.metric_crs)
    ends = []
    for nid in (body.from_node, body.to_node):
        r = (await conn.execute(store.NODE, {"id": nid})).first()
        if r is None:
            raise Unprocessable(f"no network node {nid}")
        ends.append(r)
    if body.from_node == body.to_node:
        raise Unprocessable("a corridor joins two different nodes")
    ll = np.array([[ends[0].lon, ends[0].lat]]
                  + [c[:2] for c in (body.via or [])] + [[ends[1].lon, ends[1].lat]], float)
    check_in_area(ll[:, 0], ll[:, 1], s.metric_crs)
    x, y = fr.to_metric(ll[:, 0], ll[:, 1])
    xy = np.column_stack([x, y])
    line = shapely.LineString(xy)
    if line.length < 1.0:
        raise Unprocessable("the two nodes are less than 1 m apart")
    reach = s.network_half_width_m + s.clearance_h_m + 5
    box = line.buffer(reach)
    now = datetime.now(UTC)
    obstacles = await load_obstacles(conn, box, fr, s.obstacle_types)
    zones = await load_zones(conn, box, fr, now, now + timedelta(hours=1))
    ground = await load_ground(conn, box, fr, s)
    check = Checker(obstacles, zones, ground, s)
    cap = capacity_per_hour(s.network_speed_ms, s.separation_h_m, s.network_half_width_m,
                            s.network_buffer_s)
    made = []
    dirs = [(0, 1, xy)] + ([(1, 0, xy[::-1])] if body.both_directions else [])
    for a, b, pts in dirs:
        h = heading_deg(pts[0], pts[-1])
        k = sector(h)
        agl = layer_agl(k, s.network_base_agl_m, s.network_layer_step_m)
        vol = edge_volume(pts, agl, ground, s, fr, now)
        result = check(vol, now)
        if result["verdict"] != "accepted":
            bad = [v for v in result["violations"] if v["severity"] != "notice"]
            raise Unprocessable(
                "the corridor fails validation: " + "; ".join(v["message"] for v in bad[:3])
                + "; nothing was stored", violations=bad)
        made.append(Edge(a, b, vol.xyz, h, k, agl, vol.length_m, cap, "planner", None,
                         result))
    # crossing a current corridor away from the two nodes, on the same layer, is not
    # vertically separated
    inner = shapely.LineString(fr.geom_to_lonlat(line).coords)
    for r in (await conn.execute(store.CROSSED, {"line": shapely.to_wkb(inner)})).all():
        shared = {r.from_node, r.to_node} & {body.from_node, body.to_node}
        if r.layer in {m.layer for m in made} and not shared:
            raise Unprocessable(
                f"the corridor crosses network edge {r.id} on the same layer away from a "
                "node; add a junction (split the corridor) or route it elsewhere",
                edge=r.id)
    parent = await current_version(conn)
    ver = (await conn.execute(store.NEW_VERSION, {
        "parent_id": parent, "change": "add", "note": body.note,
        "params": {"from_node": body.from_node, "to_node": body.to_node},
        "stats": {"added": len(made)}, "flags": [], "city_model_version": None,
        "created_by": by})).one()
    node_ids = np.array([body.from_node, body.to_node], np.int64)
    rows = [_edge_row(m, int(node_ids[m.u]), int(node_ids[m.v]), s, fr, ver.id)
            for m in made]
    res = await conn.execute(store.NEW_EDGE.returning(store.e.c.id), rows)
    return {"version": ver.id, "added": [r.id for r in res.all()],
            "edges": [{"layer": m.layer, "layer_agl_m": m.agl, "heading_deg": round(m.heading, 2),
                       "capacity_per_hour": m.capacity, "length_m": round(m.length, 2)}
                      for m in made]}


async def versions(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    rows = (await conn.execute(store.VERSIONS.order_by(store.v.c.id.desc()).limit(limit))).all()
    return [dict(r._mapping) for r in rows]

