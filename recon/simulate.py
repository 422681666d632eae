"""A synthetic airborne LiDAR survey of a Longgang-like district, with its truth kept.

Tests and benchmarks need surveys whose right answer is known: every point's true class,
every building's footprint and roof, the terrain under it all. This module builds a district
(sloping, gently hilly terrain; buildings on a street grid with flat, gable, hip, shed and
multi-part roofs; street and park trees) in EPSG:4547 (CGCS2000 / 3-degree Gauss-Kruger
CM 114E, where Shenzhen's Longgang lies) and flies a nadir survey over it:

- every pulse gives a first return on the model's top surface (roof, crown or ground);
- pulses into a crown may go on to a second and a last return (the ground below);
- walls give sparse returns (a nadir scanner sees them only at the swath's slant);
- Gaussian noise on the heights; every point unclassified in the file, its true class kept
  in :attr:`Survey.truth_class` (2 ground, 6 building, 5 vegetation).

The public API is small and stable::

    survey = simulate_district(n_buildings=20, area_m=200.0, density=12.0, noise_m=0.03, seed=1)
    survey.xyz, survey.return_number, survey.number_of_returns, survey.truth_class
    survey.building_id          # index into survey.buildings, -1 for non-building points
    survey.buildings[i].footprint, .roof_type, .base_z, .roof_z(x, y), .height(x, y)
    survey.ground(x, y)         # true terrain height
    write_las(survey, "district.laz")

Everything is vectorised over the points: pulses are generated already sorted by a coarse
cell, so each roof part or crown reads only the pulses of the cells its box covers (a few
thousand), and the loop is over objects, never over points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

__all__ = [
    "Building",
    "RoofPart",
    "Survey",
    "Terrain",
    "Tree",
    "simulate_district",
    "write_las",
]

CRS = "EPSG:4547"
#: south-west corner of the default district: Longgang centre, 114.247 E 22.72 N
LONGGANG_ORIGIN = (525300.0, 2513500.0)

RoofKind = Literal["flat", "gable", "hip", "shed"]
RoofType = Literal["flat", "gable", "hip", "shed", "multi"]

GROUND, BUILDING, VEGETATION = 2, 6, 5
_CELL = 8.0  # coarse cell of the pulse index, in metres


@dataclass(frozen=True)
class Terrain:
    """Sloping terrain with a few long, low hills: ``z0 + gx*dx + gy*dy + sum of waves``."""

    x0: float
    y0: float
    z0: float
    gx: float
    gy: float
    waves: tuple[tuple[float, float, float, float], ...] = ()  # (amplitude, kx, ky, phase)

    def __call__(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        dx = np.asarray(x, dtype=np.float64) - self.x0
        dy = np.asarray(y, dtype=np.float64) - self.y0
        z = self.z0 + self.gx * dx + self.gy * dy
        for amp, kx, ky, phase in self.waves:
            z = z + amp * np.sin(kx * dx + ky * dy + phase)
        return z


@dataclass(frozen=True)
class RoofPart:
    """One rectangular part of a building with its own roof.

    ``length`` runs along ``angle`` (radians from the x axis), ``width`` across it; a gable
    or hip ridge runs along the length, a shed rises across the width. Heights are metres
    above the building's base.
    """

    cx: float
    cy: float
    length: float
    width: float
    angle: float
    kind: RoofKind
    eave: float
    ridge: float

    def _local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        return dx * c + dy * s, -dx * s + dy * c

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Roof height above the base at x, y; NaN outside the part."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        u, v = self._local(x, y)
        hl, hw = self.length / 2, self.width / 2
        inside = (np.abs(u) <= hl) & (np.abs(v) <= hw)
        rise = self.ridge - self.eave
        if self.kind == "flat":
            h = np.full(u.shape, self.eave)
        elif self.kind == "gable":
            h = self.ridge - rise * np.abs(v) / hw
        elif self.kind == "hip":
            slope = rise / hw
            h = self.eave + slope * np.minimum(hw - np.abs(v), hl - np.abs(u))
        else:  # shed: low eave on the -v side, high on the +v side
            h = self.eave + rise * (v + hw) / self.width
        return np.where(inside, h, np.nan)

    def polygon(self) -> Polygon:
        c, s = math.cos(self.angle), math.sin(self.angle)
        hl, hw = self.length / 2, self.width / 2
        corners = [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]
        return Polygon([(self.cx + u * c - v * s, self.cy + u * s + v * c) for u, v in corners])


@dataclass(frozen=True)
class Building:
    """A true building: its footprint, base height and roof (the highest of its parts)."""

    id: int
    roof_type: RoofType
    parts: tuple[RoofPart, ...]
    base_z: float
    footprint: Polygon

    def height(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """True roof height above the base at x, y (NaN outside the footprint)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        h = np.full(np.broadcast(x, y).shape, np.nan)
        for part in self.parts:
            h = np.fmax(h, part.height(x, y))
        return h

    def roof_z(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """True absolute roof height at x, y (NaN outside the footprint)."""
        return self.base_z + self.height(x, y)

    @property
    def max_height(self) -> float:
        """Highest roof point above the base."""
        return max(p.ridge if p.kind != "flat" else p.eave for p in self.parts)


@dataclass(frozen=True)
class Tree:
    """A tree: a spheroid crown of radius ``radius`` from ``crown_base`` to ``top`` (absolute)."""

    x: float
    y: float
    radius: float
    crown_base: float
    top: float

    def crown_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Top of the crown at x, y; NaN outside the crown's disk."""
        d2 = ((np.asarray(x) - self.x) ** 2 + (np.asarray(y) - self.y) ** 2) / self.radius**2
        half = (self.top - self.crown_base) / 2
        with np.errstate(invalid="ignore"):
            z = self.top - half + half * np.sqrt(1.0 - d2)
        return np.where(d2 < 1.0, z, np.nan)


@dataclass
class Survey:
    """A simulated survey: the points with their true classes, and the model they came from."""

    xyz: np.ndarray  # (N, 3) float64, EPSG:4547 metres
    return_number: np.ndarray  # (N,) uint8, 1-based
    number_of_returns: np.ndarray  # (N,) uint8
    truth_class: np.ndarray  # (N,) uint8: 2 ground, 6 building, 5 vegetation
    building_id: np.ndarray  # (N,) int32: index into ``buildings``, -1 if not a building point
    buildings: list[Building]
    trees: list[Tree]
    terrain: Terrain
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    density: float  # pulses per m2
    noise_m: float
    seed: int
    crs: str = CRS
    extra: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def ground(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """True terrain height at x, y."""
        return self.terrain(x, y)

    @property
    def classification(self) -> np.ndarray:
        """What the file says: every point unclassified (ASPRS class 1)."""
        return np.ones(len(self), dtype=np.uint8)


class _PulseIndex:
    """Pulses sorted by coarse cell: the pulses under a box are a few contiguous runs."""

    def __init__(self, x0: float, y0: float, ncols: int, nrows: int, starts: np.ndarray):
        self.x0, self.y0, self.ncols, self.nrows, self.starts = x0, y0, ncols, nrows, starts

    def in_box(self, xmin: float, ymin: float, xmax: float, ymax: float) -> np.ndarray:
        c0 = max(int((xmin - self.x0) // _CELL), 0)
        c1 = min(int((xmax - self.x0) // _CELL), self.ncols - 1)
        r0 = max(int((ymin - self.y0) // _CELL), 0)
        r1 = min(int((ymax - self.y0) // _CELL), self.nrows - 1)
        if c1 < c0 or r1 < r0:
            return np.empty(0, dtype=np.int64)
        rows = np.arange(r0, r1 + 1)
        lo = self.starts[rows * self.ncols + c0]
        hi = self.starts[rows * self.ncols + c1 + 1]
        return np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])


def _pulses(
    rng: np.random.Generator, x0: float, y0: float, size: float, density: float
) -> tuple[np.ndarray, np.ndarray, _PulseIndex]:
    ncols = nrows = max(1, math.ceil(size / _CELL))
    counts = rng.poisson(density * _CELL * _CELL, ncols * nrows)
    starts = np.zeros(ncols * nrows + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    cell = np.repeat(np.arange(ncols * nrows), counts)
    x = x0 + (cell % ncols + rng.random(cell.size)) * _CELL
    y = y0 + (cell // ncols + rng.random(cell.size)) * _CELL
    # the grid may overhang the district: those pulses stay (harmless), keeping the index exact
    return x, y, _PulseIndex(x0, y0, ncols, nrows, starts)


def _pitched(kind: RoofKind, width: float, rng: np.random.Generator) -> float:
    """Rise of a roof above its eave, from a plausible pitch."""
    if kind == "flat":
        return 0.0
    if kind == "shed":
        return width * math.tan(math.radians(rng.uniform(8, 18)))
    return width / 2 * math.tan(math.radians(rng.uniform(20, 40)))


def _eave(rng: np.random.Generator) -> float:
    # urban villages of 3-6 floors, some mid-rise, a few towers
    r = rng.random()
    if r < 0.7:
        return float(rng.uniform(4.0, 18.0))
    if r < 0.95:
        return float(rng.uniform(18.0, 35.0))
    return float(rng.uniform(35.0, 70.0))


def _part(cx, cy, length, width, angle, kind, eave, rng) -> RoofPart:
    return RoofPart(cx, cy, length, width, angle, kind, eave, eave + _pitched(kind, width, rng))


def _make_building(
    idx: int, cx: float, cy: float, half: float, grid_angle: float, rng: np.random.Generator,
    terrain: Terrain,
) -> Building:
    """A building inside the square zone (cx, cy) +/- half, turned a little off the grid."""
    roof_type: RoofType = rng.choice(
        np.array(["flat", "gable", "hip", "shed", "multi"]), p=[0.3, 0.2, 0.2, 0.1, 0.2]
    ).item()
    angle = grid_angle + (rng.uniform(-0.3, 0.3) if rng.random() < 0.3 else 0.0)
    c, s = math.cos(angle), math.sin(angle)
    # parts in the building's own frame (u along angle), then scaled to fit the zone
    if roof_type != "multi":
        length = rng.uniform(1.1, 1.9) * half
        width = max(rng.uniform(0.45, 0.9) * length, min(6.0, length))
        local = [(0.0, 0.0, length, width, 0.0, roof_type)]
    else:
        l1 = rng.uniform(1.4, 1.9) * half
        w1 = rng.uniform(0.55, 0.85) * half
        w2 = rng.uniform(0.45, 0.7) * half
        l2 = rng.uniform(1.1, 1.8) * half
        k1 = rng.choice(np.array(["gable", "hip", "flat"])).item()
        k2 = rng.choice(np.array(["flat", "gable", "shed"])).item()
        # main wing along u at the bottom, second wing along v at the left end: an L
        local = [
            (0.0, -half + w1 / 2, l1, w1, 0.0, k1),
            (-l1 / 2 + w2 / 2, -half + l2 / 2, l2, w2, math.pi / 2, k2),
        ]
    corners = []
    for pu, pv, pl, pw, pa, _ in local:
        ca, sa = math.cos(pa), math.sin(pa)
        for du, dv in ((-pl / 2, -pw / 2), (pl / 2, -pw / 2), (pl / 2, pw / 2), (-pl / 2, pw / 2)):
            corners.append((pu + du * ca - dv * sa, pv + du * sa + dv * ca))
    cu = np.array(corners)
    centre = (cu.max(axis=0) + cu.min(axis=0)) / 2
    cu = cu - centre
    rx = np.abs(cu[:, 0] * c - cu[:, 1] * s).max()
    ry = np.abs(cu[:, 0] * s + cu[:, 1] * c).max()
    scale = min(1.0, half / max(rx, ry, 1e-9))
    eave_main = _eave(rng)
    parts = []
    for i, (pu, pv, pl, pw, pa, kind) in enumerate(local):
        u, v = (pu - centre[0]) * scale, (pv - centre[1]) * scale
        eave = eave_main if i == 0 else max(3.0, eave_main * rng.uniform(0.4, 0.8))
        parts.append(
            _part(cx + u * c - v * s, cy + u * s + v * c, pl * scale, pw * scale, angle + pa,
                  kind, eave, rng)
        )
    footprint = shapely.union_all([p.polygon() for p in parts])
    footprint = orient(footprint, 1.0)
    fx, fy = np.asarray(footprint.exterior.coords).T
    base = float(terrain(fx, fy).min())
    return Building(idx, roof_type, tuple(parts), base, footprint)


def _tree(x: float, y: float, r: float, terrain: Terrain, rng: np.random.Generator) -> Tree:
    ground = float(terrain(x, y))
    top = ground + rng.uniform(max(4.0, 1.8 * r), max(6.0, 3.2 * r))
    depth = min(top - ground - 1.5, rng.uniform(1.2, 2.0) * r)
    return Tree(x, y, r, top - depth, top)


def simulate_district(
    n_buildings: int = 20,
    area_m: float = 200.0,
    density: float = 12.0,
    noise_m: float = 0.03,
    seed: int = 0,
    *,
    origin: tuple[float, float] = LONGGANG_ORIGIN,
    wall_density: float = 0.3,
    park_fraction: float = 0.12,
) -> Survey:
    """Build a district of ``n_buildings`` on an ``area_m`` x ``area_m`` square and survey it.

    ``density`` is pulses per m2 (first returns; trees add later returns), ``noise_m`` the
    standard deviation of the height noise, ``wall_density`` wall returns per m2 of wall.
    About one lot in ``1 / park_fraction`` is left to trees. The same arguments always give
    the same survey.
    """
    if n_buildings < 0 or area_m <= 0 or density <= 0 or noise_m < 0:
        raise ValueError("n_buildings >= 0, area_m > 0, density > 0 and noise_m >= 0 are needed")
    rng = np.random.default_rng(seed)
    x0, y0 = origin
    terrain = Terrain(
        x0, y0, z0=float(rng.uniform(40, 80)), gx=float(rng.uniform(-0.03, 0.03)),
        gy=float(rng.uniform(0.01, 0.05)),
        waves=(
            (float(rng.uniform(1.5, 4.0)), 2 * math.pi / 420, 2 * math.pi / 610,
             float(rng.uniform(0, 6))),
            (float(rng.uniform(0.5, 1.5)), -2 * math.pi / 230, 2 * math.pi / 330,
             float(rng.uniform(0, 6))),
        ),
    )
    lots_side = max(1, math.ceil(math.sqrt(max(n_buildings, 1) / (1.0 - park_fraction))))
    lot = area_m / lots_side
    street = max(2.5, 0.15 * lot)
    half = lot / 2 - street
    if n_buildings and half < 3.0:
        raise ValueError(f"{n_buildings} buildings do not fit on {area_m} m: lots of {lot:.1f} m")
    grid_angle = 0.0
    lots = rng.permutation(lots_side * lots_side)
    built = lots[:n_buildings]
    buildings = []
    for i, k in enumerate(built):
        cx = x0 + (k % lots_side + 0.5) * lot
        cy = y0 + (k // lots_side + 0.5) * lot
        buildings.append(_make_building(i, cx, cy, half, grid_angle, rng, terrain))

    trees: list[Tree] = []
    for k in lots[n_buildings:]:  # parks: a handful of trees well inside the lot
        lx, ly = x0 + (k % lots_side) * lot, y0 + (k // lots_side) * lot
        for _ in range(rng.poisson(max(1.0, lot * lot / 90))):
            r = rng.uniform(2.0, min(5.0, lot / 4))
            trees.append(_tree(lx + rng.uniform(r, lot - r), ly + rng.uniform(r, lot - r), r,
                               terrain, rng))
    for i in range(lots_side + 1):  # street trees at crossings, clear of the buildings
        for j in range(lots_side + 1):
            if rng.random() < 0.5:
                r = rng.uniform(1.5, max(1.6, min(4.0, street * 1.2)))
                trees.append(_tree(x0 + i * lot, y0 + j * lot, r, terrain, rng))

    px, py, index = _pulses(rng, x0, y0, area_m, density)
    n = px.size
    top = terrain(px, py)
    owner = np.full(n, -1, dtype=np.int32)
    for b in buildings:
        for part in b.parts:
            xmin, ymin, xmax, ymax = part.polygon().bounds
            idx = index.in_box(xmin, ymin, xmax, ymax)
            z = b.base_z + part.height(px[idx], py[idx])
            hit = z > top[idx]  # NaN (outside) compares False
            top[idx[hit]] = z[hit]
            owner[idx[hit]] = b.id
    crown = np.full(n, np.nan)
    for t in trees:
        idx = index.in_box(t.x - t.radius, t.y - t.radius, t.x + t.radius, t.y + t.radius)
        idx = idx[owner[idx] < 0]
        z = t.crown_z(px[idx], py[idx])
        hit = z > np.nan_to_num(crown[idx], nan=-np.inf)
        crown[idx[hit]] = z[hit]

    # pulses into a crown: denser near the stem; a hit returns from some depth in the crown
    in_crown = np.flatnonzero(~np.isnan(crown))
    hits = in_crown[rng.random(in_crown.size) < 0.85]
    ground_z = top.copy()  # under trees top is still the terrain
    first_z = top.copy()
    depth = np.minimum(rng.exponential(0.35, hits.size), 2.0)
    first_z[hits] = np.maximum(crown[hits] - depth, ground_z[hits] + 1.0)
    truth = np.full(n, GROUND, dtype=np.uint8)
    truth[owner >= 0] = BUILDING
    truth[hits] = VEGETATION
    nret = np.ones(n, dtype=np.uint8)
    nret[hits] = rng.choice(np.array([1, 2, 3], dtype=np.uint8), hits.size, p=[0.35, 0.4, 0.25])
    two_plus = hits[nret[hits] >= 2]
    three = hits[nret[hits] == 3]
    gap = first_z[three] - ground_z[three] - 1.0
    mid_z = ground_z[three] + 1.0 + rng.random(three.size) * gap

    walls = _wall_returns(buildings, terrain, wall_density, rng)
    nw = walls.shape[0]

    xs = np.concatenate([px, px[two_plus], px[three], walls[:, 0]])
    ys = np.concatenate([py, py[two_plus], py[three], walls[:, 1]])
    zs = np.concatenate([first_z, ground_z[two_plus], mid_z, walls[:, 2]])
    zs += rng.normal(0.0, noise_m, zs.size) if noise_m > 0 else 0.0
    rn = np.concatenate([
        np.ones(n, np.uint8), nret[two_plus], np.full(three.size, 2, np.uint8),
        np.ones(nw, np.uint8),
    ])
    nr = np.concatenate([nret, nret[two_plus], nret[three], np.ones(nw, np.uint8)])
    cls = np.concatenate([
        truth, np.full(two_plus.size, GROUND, np.uint8), np.full(three.size, VEGETATION, np.uint8),
        np.full(nw, BUILDING, np.uint8),
    ])
    bid = np.concatenate([
        owner, np.full(two_plus.size + three.size, -1, np.int32), walls[:, 3].astype(np.int32)
    ])
    keep = (xs >= x0) & (xs < x0 + area_m) & (ys >= y0) & (ys < y0 + area_m)
    xyz = np.column_stack([xs[keep], ys[keep], zs[keep]])
    return Survey(
        xyz=xyz, return_number=rn[keep], number_of_returns=nr[keep], truth_class=cls[keep],
        building_id=bid[keep], buildings=buildings, trees=trees, terrain=terrain,
        bounds=(x0, y0, x0 + area_m, y0 + area_m), density=density, noise_m=noise_m, seed=seed,
    )


def _wall_returns(
    buildings: Sequence[Building], terrain: Terrain, wall_density: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sparse returns on the outer walls: (M, 4) array of x, y, z, building id."""
    out = []
    for b in buildings:
        ring = np.asarray(b.footprint.exterior.coords)  # counter-clockwise: outside is right
        a, e = ring[:-1], ring[1:]
        d = e - a
        seg = np.hypot(d[:, 0], d[:, 1])
        ok = seg > 1e-6
        a, d, seg = a[ok], d[ok], seg[ok]
        normal = np.column_stack([d[:, 1], -d[:, 0]]) / seg[:, None]
        mid = a + d / 2
        wall_h = b.max_height + b.base_z - terrain(mid[:, 0], mid[:, 1])
        counts = rng.poisson(np.maximum(seg * wall_h, 0) * wall_density)
        k = np.repeat(np.arange(seg.size), counts)
        if k.size == 0:
            continue
        t = rng.random(k.size)
        xy = a[k] + d[k] * t[:, None]
        inner = xy - normal[k] * 0.05
        roof = b.roof_z(inner[:, 0], inner[:, 1])
        ground = terrain(xy[:, 0], xy[:, 1])
        good = ~np.isnan(roof) & (roof > ground + 0.3)
        z = ground + rng.random(k.size) * (roof - ground)
        xy = xy + normal[k] * rng.uniform(0.0, 0.05, k.size)[:, None]
        out.append(np.column_stack([xy[good], z[good], np.full(good.sum(), b.id)]))
    return np.concatenate(out) if out else np.empty((0, 4))


def write_las(survey: Survey, path: str | Path, *, classified: bool = False) -> Path:
    """Write the survey as LAS 1.4 (LAZ if the name ends in .laz), EPSG:4547 in the header.

    The file says every point is unclassified (class 1), as a fresh survey would, unless
    ``classified`` asks for the true classes.
    """
    import laspy
    import pyproj

    path = Path(path)
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.floor(survey.xyz.min(axis=0)) if len(survey) else np.zeros(3)
    header.add_crs(pyproj.CRS(survey.crs))
    las = laspy.LasData(header)
    las.x, las.y, las.z = survey.xyz[:, 0], survey.xyz[:, 1], survey.xyz[:, 2]
    las.return_number = survey.return_number
    las.number_of_returns = survey.number_of_returns
    las.classification = survey.truth_class if classified else survey.classification
    las.write(path)
    return path
