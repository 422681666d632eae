"""3D path planning on a voxel grid over flight levels.

The search area (start and goal grown by ``plan_margin_m``) is cut into square cells of
``plan_cell_m`` and flight levels every ``min(10, 2 * vertical_half)`` metres, counted from
the start's height so the start lies on a level. A voxel is blocked when a drone's volume
there (centre +- half-width horizontally, +- vertical half-height) would break a rule the
validator checks: building clearance, a prohibited or needs-authorisation zone active in
the window, the height limit above ground, the ground itself, or an approved or active flight
of equal or higher priority whose window (both widened by the time margin) meets this one:
within the conflict check's horizontal and vertical separation of its tube (the fourth
dimension: a flight at another time blocks nothing). Blocked regions are grown
by the cell's half-diagonal plus a quarter cell, so any point on a path between free voxel
centres keeps the real margins.

Shortest paths come from scipy's Dijkstra (C, on a sparse graph of 8-connected moves in a
level and climbs between levels), then any-angle smoothing in the spirit of Theta*: from
each kept point, go straight to the farthest later point that is in line of sight through
free voxels. Level spacing at most twice the vertical half-height makes the line-of-sight
test between levels conservative: a volume between two levels lies inside their union.
The result is validated, and checked for conflicts, like any filed route before it is
returned.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from service.lowalt.citymodel import Obstacles, Zone
from service.lowalt.conflicts import Candidate, heights_within_reach
from service.lowalt.geo import grow as grow_area
from service.lowalt.ground import GroundModel
from service.lowalt.settings import LowAltSettings

AVOID_ZONES = ("prohibited", "needs_authorisation")


class NoPath(Exception):
    def __init__(self, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.extra = extra


@dataclass
class PlanProblem:
    start: np.ndarray  # metric x, y, h
    goal: np.ndarray
    half_width: float
    vertical_half: float
    height_limit: float
    obstacles: Obstacles
    zones: list[Zone]
    ground: GroundModel
    settings: LowAltSettings
    flights: list[Candidate] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Grid:
    x0: float
    y0: float
    cell: float
    nx: int
    ny: int
    base: float
    dz: float
    k0: int  # level index of the lowest level (relative to the start)
    nlev: int
    free: np.ndarray  # (nlev, ny * nx)
    why: dict[str, np.ndarray] = field(default_factory=dict)

    def level_z(self, li: np.ndarray | int) -> np.ndarray:
        return self.base + (np.asarray(li) + self.k0) * self.dz

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ix = np.rint((np.asarray(x) - self.x0) / self.cell).astype(np.int64)
        iy = np.rint((np.asarray(y) - self.y0) / self.cell).astype(np.int64)
        return ix, iy

    def free_at(self, pts: np.ndarray) -> np.ndarray:
        ix, iy = self.cell_of(pts[:, 0], pts[:, 1])
        f = (pts[:, 2] - self.base) / self.dz - self.k0
        l0, l1 = np.floor(f + 1e-9).astype(np.int64), np.ceil(f - 1e-9).astype(np.int64)
        ok = ((ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny) & (l0 >= 0)
              & (l1 < self.nlev))
        out = np.zeros(len(pts), bool)
        c = (iy * self.nx + ix)[ok]
        out[ok] = self.free[l0[ok], c] & self.free[np.maximum(l1[ok], l0[ok]), c]
        return out

    def line_of_sight(self, p: np.ndarray, q: np.ndarray) -> bool:
        n = max(2, math.ceil(float(np.linalg.norm(q - p)) / (self.cell / 2)) + 1)
        t = np.linspace(0.0, 1.0, n)[:, None]
        return bool(self.free_at(p + t * (q - p)).all())


def build_grid(pb: PlanProblem) -> Grid:
    """The grid with every voxel a drone may not be in; the part that does not depend on
    the time window (ground, height limit, buildings) is kept in ``pb.cache``, so trying a
    later departure recomputes only zones and flights."""
    if "static" not in pb.cache:
        pb.cache["static"] = _static_grid(pb)
    x0, y0, cell, nx, ny, k0, nlev, dz, gx, gy, g, levels, grow, static, why = \
        pb.cache["static"]
    s = pb.settings
    vh, hw = pb.vertical_half, pb.half_width
    blocked = static.copy()
    why = dict(why)
    zmask = np.zeros_like(blocked)
    for zone in pb.zones:
        if zone.zone_type not in AVOID_ZONES:
            continue
        inside = shapely.contains_xy(grow_area(zone.geom_m, hw + grow), gx, gy)
        base = g if zone.height_reference == "agl" else np.zeros_like(g)
        fl, ce = zone.floor_m + base, zone.ceiling_m + base
        for li, z in enumerate(levels):
            zmask[li] |= inside & (z - vh - 1.0 < ce) & (z + vh + 1.0 > fl)
    why["zone"] = zmask
    blocked |= zmask
    fmask = np.zeros_like(blocked)
    for c in pb.flights:
        # the conflict check's reach and vertical separation, and the cell's spare
        reach = hw + c.half_width + s.separation_h_m + s.conflict_step_m / 2 + grow
        vsep = vh + c.vertical_half + s.separation_v_m + 1.0
        lo, hi = c.xyz[:, :2].min(0) - reach, c.xyz[:, :2].max(0) + reach
        near = np.flatnonzero((gx >= lo[0]) & (gx <= hi[0]) & (gy >= lo[1]) & (gy <= hi[1]))
        if near.size == 0:
            continue
        # the flight's heights near each cell, from the lowest to the highest of its parts
        # within reach (a level between two such parts counts as blocked too)
        zlo, zhi = heights_within_reach(np.column_stack([gx[near], gy[near]]), c.xyz, reach)
        fmask[:, near] |= (levels[:, None] > zlo[None, :] - vsep) \
            & (levels[:, None] < zhi[None, :] + vsep)
    why["flights"] = fmask
    blocked |= fmask
    return Grid(x0, y0, cell, nx, ny, float(pb.start[2]), dz, k0, nlev, ~blocked, why)


def _static_grid(pb: PlanProblem) -> tuple:
    s = pb.settings
    vh, hw = pb.vertical_half, pb.half_width
    x0 = min(pb.start[0], pb.goal[0]) - s.plan_margin_m
    x1 = max(pb.start[0], pb.goal[0]) + s.plan_margin_m
    y0 = min(pb.start[1], pb.goal[1]) - s.plan_margin_m
    y1 = max(pb.start[1], pb.goal[1]) + s.plan_margin_m
    dz = min(10.0, 2 * vh)
    cell = s.plan_cell_m
    for _ in range(8):  # coarsen until the grid fits the budget
        nx, ny = int((x1 - x0) / cell) + 2, int((y1 - y0) / cell) + 2
        xs, ys = x0 + np.arange(nx) * cell, y0 + np.arange(ny) * cell
        gx, gy = np.meshgrid(xs, ys)
        gx, gy = gx.ravel(), gy.ravel()
        g, _ = pb.ground.at_xy(gx, gy)
        lo_z = float((g + vh).min())
        hi_z = float((g + pb.height_limit - vh).max())
        k0 = math.ceil((lo_z - pb.start[2]) / dz)
        k1 = math.floor((hi_z - pb.start[2]) / dz)
        nlev = max(k1 - k0 + 1, 1)
        if nlev * nx * ny <= s.plan_max_cells:
            break
        cell *= math.sqrt(nlev * nx * ny / s.plan_max_cells) * 1.05
    levels = pb.start[2] + (np.arange(nlev) + k0) * dz
    ncell = nx * ny
    grow = cell * (math.sqrt(2) / 2 + 0.25)
    blocked = np.zeros((nlev, ncell), bool)
    why = {}
    # the ground and the height limit (0.5 m spare against interpolation of the ground)
    over = (levels[:, None] + vh - g[None, :]) > pb.height_limit - 0.5
    under = (levels[:, None] - vh) < g[None, :]
    why["height_limit"], why["ground"] = over, under
    blocked |= over | under
    obs = pb.obstacles
    bmask = np.zeros_like(blocked)
    if len(obs):
        pts = shapely.points(gx, gy)
        tree = shapely.STRtree(obs.footprints)
        ci, oi = tree.query(pts, predicate="dwithin", distance=hw + s.clearance_h_m + grow)
        lo = obs.min_z[oi] - s.clearance_v_m - vh - 1.0
        hi = obs.max_z[oi] + s.clearance_v_m + vh + 1.0
        for li, z in enumerate(levels):
            m = (lo < z) & (hi > z)
            bmask[li, ci[m]] = True
    why["building_clearance"] = bmask
    blocked |= bmask
    return x0, y0, cell, nx, ny, k0, nlev, dz, gx, gy, g, levels, grow, blocked, why


def _graph(grid: Grid):
    nx, ny, nlev = grid.nx, grid.ny, grid.nlev
    free = grid.free.reshape(nlev, ny, nx)
    idx = np.arange(nlev * ny * nx).reshape(nlev, ny, nx)
    rows, cols, wts = [], [], []
    c = grid.cell
    for dy, dx, w in ((0, 1, c), (1, 0, c), (1, 1, c * math.sqrt(2)),
                      (1, -1, c * math.sqrt(2))):
        ys = slice(0, ny - dy)
        yd = slice(dy, ny)
        xs = slice(max(0, -dx), nx - max(0, dx))
        xd = slice(max(0, dx), nx - max(0, -dx) if dx < 0 else nx)
        a, b = free[:, ys, xs], free[:, yd, xd]
        m = a & b
        rows.append(idx[:, ys, xs][m])
        cols.append(idx[:, yd, xd][m])
        wts.append(np.full(int(m.sum()), w))
    if nlev > 1:
        m = free[:-1] & free[1:]
        rows.append(idx[:-1][m])
        cols.append(idx[1:][m])
        wts.append(np.full(int(m.sum()), grid.dz))
    r, cc, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(wts)
    n = nlev * ny * nx
    return coo_matrix((w, (r, cc)), shape=(n, n)).tocsr()


def _explain(grid: Grid, li: int, cell: int) -> list[str]:
    return [name for name, mask in grid.why.items() if mask[li, cell]]


def _simplify(pts: np.ndarray) -> np.ndarray:
    keep = [0]
    for i in range(1, len(pts) - 1):
        a, b, c = pts[keep[-1]], pts[i], pts[i + 1]
        u, v = b - a, c - b
        if np.linalg.norm(np.cross(u, v)) > 1e-6 * max(np.linalg.norm(u) * np.linalg.norm(v),
                                                       1e-9):
            keep.append(i)
    keep.append(len(pts) - 1)
    return pts[keep]


def smooth(grid: Grid, pts: np.ndarray) -> np.ndarray:
    out = [pts[0]]
    i = 0
    while i < len(pts) - 1:
        j = i + 1
        while j + 1 < len(pts) and grid.line_of_sight(pts[i], pts[j + 1]):
            j += 1
        out.append(pts[j])
        i = j
    return np.array(out)


def plan(pb: PlanProblem) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A smoothed path (metric x, y, h waypoints), the raw grid path, and search figures.
    Raises NoPath with the reason when the start, the goal or every way is blocked."""
    t0 = time.perf_counter()
    grid = build_grid(pb)
    sx, sy = grid.cell_of(pb.start[0], pb.start[1])
    gx, gy = grid.cell_of(pb.goal[0], pb.goal[1])
    s_cell, g_cell = int(sy * grid.nx + sx), int(gy * grid.nx + gx)
    s_lev = -grid.k0
    ncell = grid.nx * grid.ny
    if not 0 <= s_lev < grid.nlev or not grid.free[s_lev, s_cell]:
        why = _explain(grid, s_lev, s_cell) if 0 <= s_lev < grid.nlev else ["height_limit"]
        raise NoPath("no path: the start is not a free position for this drone "
                     f"({', '.join(why) or 'outside the allowed heights'})", blocked_by=why)
    goal_levels = np.flatnonzero(grid.free[:, g_cell])
    if goal_levels.size == 0:
        why = sorted({w for li in range(grid.nlev) for w in _explain(grid, li, g_cell)})
        raise NoPath("no path: no height above the goal is free for this drone "
                     f"({', '.join(why)})", blocked_by=why)
    graph = _graph(grid)
    t_graph = time.perf_counter()
    src = s_lev * ncell + s_cell
    straight = float(np.linalg.norm(pb.goal - pb.start))
    dist, pred = dijkstra(graph, directed=False, indices=src, return_predecessors=True,
                          limit=6 * straight + 2000)
    # the goal is reached at a free level above it, then straight down or up to it
    cost = dist[goal_levels * ncell + g_cell] + np.abs(grid.level_z(goal_levels) - pb.goal[2])
    order = np.argsort(cost)
    chosen = None
    for k in order:
        if not np.isfinite(cost[k]):
            break
        top = np.array([pb.goal[0], pb.goal[1], float(grid.level_z(goal_levels[k]))])
        if grid.line_of_sight(top, pb.goal):
            chosen = int(goal_levels[k])
            break
    if chosen is None:
        raise NoPath("no path: buildings, zones and the height limit leave no way from the "
                     "start to the goal within the search area",
                     searched_m=[round(grid.nx * grid.cell), round(grid.ny * grid.cell)])
    node = chosen * ncell + g_cell
    chain = []
    while node != src and node >= 0:
        chain.append(node)
        node = pred[node]
    chain.append(src)
    chain.reverse()
    chain = np.array(chain)
    li, ci = chain // ncell, chain % ncell
    raw = np.column_stack([grid.x0 + (ci % grid.nx) * grid.cell,
                           grid.y0 + (ci // grid.nx) * grid.cell, grid.level_z(li)])
    raw = np.vstack([pb.start, raw, [pb.goal[0], pb.goal[1], raw[-1, 2]], pb.goal])
    raw = _simplify(raw)
    path = _simplify(smooth(grid, raw))
    stats = {"cell_m": round(grid.cell, 2), "levels": grid.nlev, "level_step_m": grid.dz,
             "voxels": grid.nlev * ncell, "free_voxels": int(grid.free.sum()),
             "reached": int(np.isfinite(dist).sum()),
             "grid_ms": round((t_graph - t0) * 1000, 1),
             "search_ms": round((time.perf_counter() - t_graph) * 1000, 1),
             "straight_m": round(straight, 1)}
    return path, raw, stats
