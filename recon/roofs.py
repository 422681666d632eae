"""Roof planes, the roof partition of a footprint, and the closed solid built over it.

Steps for one building (all in coordinates local to the building, for precision):

1. :func:`detect_planes`: sequential RANSAC on the roof points, vectorised over a few hundred
   hypotheses at a time, with a point counting as an inlier only when it is within ``eps`` of
   the plane *and* its local normal (PCA of its neighbours, ``scipy.spatial.cKDTree``) agrees
   with the plane's; the normal test keeps the band of a neighbouring roof face along a ridge
   from being taken. Steep planes (walls) are not roofs and are refused.
2. :func:`partition_roof`: which plane covers which part of the footprint. Two candidates are
   built and the one closer to the points wins: the lower envelope of the planes (exact,
   straight ridges and hips for gable, hip, shed and flat roofs, where the roof is the minimum
   of its planes) and a labelled grid in the building's own axes (any roof: steps between
   parts, dormers), polygonised, regularised (the grid's staircase simplified on the shared
   edges, boundaries where two planes meet moved onto their intersection line) and clipped
   to the footprint; the grid's partition as labelled stays a candidate behind it.
3. :func:`solid_from_partition`: the partition is noded (shared vertices snapped, T-junctions
   split, edges split where two neighbouring roof faces cross), each region is lifted onto its
   plane, step walls close height differences between neighbouring regions, outer walls go
   down to the base, and the ground face closes the shell. Every face is planar by
   construction, every edge is shared by exactly two faces.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from recon.footprints import _rotate, dominant_direction, mask_boxes
from recon.solids import GROUND, ROOF, WALL, Solid, SolidBuilder

__all__ = [
    "Plane",
    "RoofRegion",
    "detect_planes",
    "model_z",
    "partition_candidates",
    "partition_roof",
    "solid_from_partition",
]

#: planes whose normal is further than this from vertical are walls, not roofs
_MAX_ROOF_SLOPE_DEG = 70.0


@dataclass(frozen=True)
class Plane:
    """z = a x + b y + c (a non-vertical plane)."""

    a: float
    b: float
    c: float

    def z(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        return self.a * np.asarray(x) + self.b * np.asarray(y) + self.c

    @property
    def slope_deg(self) -> float:
        return math.degrees(math.atan(math.hypot(self.a, self.b)))

    def shifted(self, dx: float, dy: float, dz: float) -> Plane:
        """The same plane in coordinates offset by (dx, dy, dz): z' = z + dz, x' = x + dx."""
        return Plane(self.a, self.b, self.c + dz - self.a * dx - self.b * dy)


@dataclass
class RoofRegion:
    polygon: Polygon
    plane: Plane


def _normals(xyz: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(xyz))
    _, nb = cKDTree(xyz).query(xyz, k=k)
    p = xyz[nb] - xyz[nb].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", p, p)
    _, vec = np.linalg.eigh(cov)
    n = vec[:, :, 0]
    return n * np.where(n[:, 2:3] < 0, -1.0, 1.0)


def _fit(xyz: np.ndarray) -> np.ndarray | None:
    """Least-squares plane (unit normal n with n_z > 0, offset d: n.p + d = 0)."""
    if len(xyz) < 3:
        return None
    c = xyz.mean(axis=0)
    _, _, vt = np.linalg.svd(xyz - c, full_matrices=False)
    n = vt[2] if vt[2, 2] >= 0 else -vt[2]
    return np.append(n, -n @ c)


def detect_planes(xyz: np.ndarray, *, eps: float = 0.2, min_points: int = 15,
                  max_planes: int = 12, normal_deg: float = 20.0, k: int = 10,
                  hypotheses: int = 200, seed: int = 0) -> tuple[list[Plane], np.ndarray]:
    """Roof planes of the points and each point's plane (-1: none).

    ``eps`` is the inlier distance (roofer uses 0.2 m), ``min_points`` the smallest plane.
    """
    n_pts = len(xyz)
    labels = np.full(n_pts, -1, dtype=np.int64)
    planes: list[Plane] = []
    if n_pts < max(min_points, 3):
        return planes, labels
    rng = np.random.default_rng(seed)
    normals = _normals(xyz, k)
    cos_n = math.cos(math.radians(normal_deg))
    min_nz = math.cos(math.radians(_MAX_ROOF_SLOPE_DEG))
    free = normals[:, 2] >= min_nz
    eqs: list[np.ndarray] = []
    for _ in range(max_planes):
        idx = np.flatnonzero(free)
        if len(idx) < min_points:
            break
        pts, nrm = xyz[idx], normals[idx]
        tri = rng.integers(0, len(idx), size=(hypotheses, 3))
        p0, p1, p2 = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
        hn = np.cross(p1 - p0, p2 - p0)
        norm = np.linalg.norm(hn, axis=1)
        ok = norm > 1e-9
        hn, p0 = hn[ok] / norm[ok, None], p0[ok]
        hn *= np.where(hn[:, 2:3] < 0, -1.0, 1.0)
        steep = hn[:, 2] >= min_nz
        hn, p0 = hn[steep], p0[steep]
        if len(hn) == 0:
            break
        hd = -(hn * p0).sum(axis=1)
        dist = np.abs(pts @ hn.T + hd)  # (m, H)
        agree = np.abs(nrm @ hn.T) >= cos_n
        score = ((dist < eps) & agree).sum(axis=0)
        best = int(np.argmax(score))
        eq = np.append(hn[best], hd[best])
        for _refine in range(3):
            inl = (np.abs(pts @ eq[:3] + eq[3]) < eps) & (np.abs(nrm @ eq[:3]) >= cos_n)
            fitted = _fit(pts[inl])
            if fitted is None:
                break
            eq = fitted
        inl = (np.abs(pts @ eq[:3] + eq[3]) < eps) & (np.abs(nrm @ eq[:3]) >= cos_n)
        if inl.sum() < min_points or eq[2] < min_nz:
            break
        labels[idx[inl]] = len(eqs)
        free[idx[inl]] = False
        eqs.append(eq)
    if not eqs:
        return planes, labels
    # every point goes to the nearest agreeing plane, so the first planes do not keep points
    # that fit a later one better
    e = np.asarray(eqs)
    dist = np.abs(xyz @ e[:, :3].T + e[:, 3])
    agree = np.abs(normals @ e[:, :3].T) >= cos_n
    dist = np.where(agree | (labels[:, None] == np.arange(len(e))), dist, np.inf)
    best = np.argmin(dist, axis=1)
    labels = np.where(dist[np.arange(n_pts), best] < eps, best, -1)
    for j, eq in enumerate(e):
        sel = labels == j
        fitted = _fit(xyz[sel]) if sel.sum() >= 3 else None
        eq = fitted if fitted is not None and fitted[2] >= min_nz else eq
        planes.append(Plane(-eq[0] / eq[2], -eq[1] / eq[2], -eq[3] / eq[2]))
    return planes, labels


def model_z(regions: Sequence[RoofRegion], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Roof height of the partition at x, y (NaN outside every region)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    z = np.full(x.shape, np.nan)
    for r in regions:
        inside = shapely.contains_xy(r.polygon, x, y) & np.isnan(z)
        if inside.any():
            z[inside] = r.plane.z(x[inside], y[inside])
    if np.isnan(z).any():  # points on a boundary: take the nearest region
        miss = np.flatnonzero(np.isnan(z))
        pts = shapely.points(x[miss], y[miss])
        d = np.stack([shapely.distance(r.polygon, pts) for r in regions])
        near = np.argmin(d, axis=0)
        ok = d[near, np.arange(len(miss))] < 0.05
        for j, r in enumerate(regions):
            sel = ok & (near == j)
            z[miss[sel]] = r.plane.z(x[miss[sel]], y[miss[sel]])
    return z


def _halfplane(a: float, b: float, c: float, big: float = 1e5) -> Polygon | None:
    """The region a x + b y + c <= 0 as a (huge) polygon; None when empty."""
    norm = math.hypot(a, b)
    if norm < 1e-9:
        return shapely.box(-big, -big, big, big) if c <= 0 else None
    nx, ny = a / norm, b / norm
    px, py = -c / norm * nx, -c / norm * ny  # a point on the line
    tx, ty = -ny, nx
    return Polygon([(px + big * tx, py + big * ty), (px - big * tx, py - big * ty),
                    (px - big * tx - big * nx, py - big * ty - big * ny),
                    (px + big * tx - big * nx, py + big * ty - big * ny)])


def _polygons(geom: shapely.Geometry, min_area: float) -> list[Polygon]:
    return [p for p in shapely.get_parts(geom)
            if p.geom_type == "Polygon" and p.area >= min_area]


def _envelope(footprint: Polygon, planes: Sequence[Plane], lower: bool, min_area: float
              ) -> list[RoofRegion]:
    regions = []
    sign = 1.0 if lower else -1.0
    for i, pi in enumerate(planes):
        cell: shapely.Geometry = footprint
        for j, pj in enumerate(planes):
            if i == j:
                continue
            hp = _halfplane(sign * (pi.a - pj.a), sign * (pi.b - pj.b), sign * (pi.c - pj.c))
            if hp is None:
                cell = Polygon()
                break
            cell = cell.intersection(hp)
            if cell.is_empty:
                break
        for part in _polygons(cell, min_area):
            regions.append(RoofRegion(part, pi))
    return regions


def _no_pinches(lab: np.ndarray, passes: int = 20) -> None:
    """Break diagonal contacts in the label grid (a region touching itself or another only at
    a cell corner), which would make a vertex where the solid is not 2-manifold."""
    for _ in range(passes):
        a, b = lab[:-1, :-1], lab[:-1, 1:]
        c, d = lab[1:, :-1], lab[1:, 1:]
        m1 = (a == d) & (b != a) & (c != a)
        if m1.any():
            b[m1] = a[m1]
            continue
        m2 = (b == c) & (a != b) & (d != b)
        if not m2.any():
            return
        a[m2] = b[m2]


def _grid_partition(footprint: Polygon, xyz: np.ndarray, planes: Sequence[Plane],
                    labels: np.ndarray, cell: float, min_area: float, knn: int = 5,
                    simplify: float = 0.0) -> list[RoofRegion]:
    """The labelled grid's partition, regularised when ``simplify`` > 0 ([] if none)."""
    out = _grid_partitions(footprint, xyz, planes, labels, cell, min_area, knn, simplify)
    return out[0][0] if out else []


def _grid_partitions(footprint: Polygon, xyz: np.ndarray, planes: Sequence[Plane],
                     labels: np.ndarray, cell: float, min_area: float, knn: int = 5,
                     simplify: float = 0.0) -> list[tuple[list[RoofRegion], str]]:
    """The labelled grid's partition: regularised ("grid") and, when ``simplify`` > 0, also
    as labelled ("grid_raw"), for the caller to fall back on."""
    angle = dominant_direction(footprint)
    fp_uv = shapely.transform(footprint, lambda c: _rotate(c, -angle))
    u0, v0, u1, v1 = fp_uv.bounds
    u0, v0 = u0 - cell, v0 - cell
    nu = math.ceil((u1 - u0) / cell) + 2
    nv = math.ceil((v1 - v0) / cell) + 2
    np_ = len(planes)
    has = labels >= 0
    if not has.any():
        return []
    uv = _rotate(xyz[has, :2], -angle)
    # each cell takes the majority plane of the points nearest its centre: the boundary
    # between two planes then follows the points to about half a point spacing, whatever
    # the cell
    cu = u0 + (np.arange(nu) + 0.5) * cell
    cv = v0 + (np.arange(nv) + 0.5) * cell
    gu, gv = np.meshgrid(cu, cv)
    k = min(knn, int(has.sum()))
    _, nb = cKDTree(uv).query(np.column_stack([gu.ravel(), gv.ravel()]), k=k)
    nb = nb.reshape(len(nb), -1)
    near = labels[has][nb]
    counts = np.stack([(near == j).sum(axis=1) for j in range(np_)], axis=1)
    lab = np.argmax(counts, axis=1).reshape(nv, nu)
    min_cells = max(2, int(min_area / cell**2))
    for _pass in range(2):
        if (lab < 0).all():
            return []
        _, (ri, rj) = ndimage.distance_transform_edt(lab < 0, return_indices=True)
        lab = lab[ri, rj]
        changed = False
        for j in range(np_):
            comp, n = ndimage.label(lab == j)
            if n == 0:
                continue
            sizes = ndimage.sum_labels(np.ones_like(comp), comp, index=np.arange(1, n + 1))
            small = np.flatnonzero(sizes < min_cells) + 1
            if len(small):
                lab[np.isin(comp, small)] = -1
                changed = True
        if not changed:
            break
    if (lab < 0).any():
        if (lab < 0).all():
            return []
        _, (ri, rj) = ndimage.distance_transform_edt(lab < 0, return_indices=True)
        lab = lab[ri, rj]
    _no_pinches(lab)
    raw, face_label = _label_faces(lab, u0, v0, cell)
    out = []
    if simplify > 0:
        faces = _regularise(raw, simplify)
        c, sn = math.cos(angle), math.sin(angle)
        # the planes in the grid's axes (x = u cos - v sin, y = u sin + v cos)
        uv_planes = [(p.a * c + p.b * sn, -p.a * sn + p.b * c, p.c) for p in planes]
        snapped = _snap_to_ridges(faces, face_label, uv_planes, (u0, v0, u0 + nu * cell,
                                                                 v0 + nv * cell))
        if snapped is not None:
            faces = _regularise(snapped, simplify)
        out.append((faces, "grid"))
        out.append((raw, "grid_raw"))
    else:
        out.append((raw, "grid"))
    result = []
    for faces, method in out:
        regions: list[RoofRegion] = []
        for face, j in zip(faces, face_label, strict=True):
            back = shapely.transform(face, lambda c: _rotate(c, angle))
            clipped = shapely.intersection(back, footprint)
            # every piece is kept: a dropped sliver would leave a hole in the roof
            for part in _polygons(clipped, 1e-4):
                regions.append(RoofRegion(shapely.simplify(part, 0.001), planes[j]))
        result.append((regions, method))
    return result


def _label_faces(lab: np.ndarray, u0: float, v0: float, cell: float
                 ) -> tuple[list[Polygon], list[int]]:
    """The label grid as a polygonal coverage: one polygon per connected region of a label,
    neighbours sharing every vertex of their common edges (the linework of all regions
    noded together and polygonised), with each polygon's label."""
    outlines = []
    for j in np.unique(lab):
        merged = shapely.union_all(mask_boxes(lab == j, u0, v0, cell))
        outlines.extend(shapely.get_parts(shapely.boundary(merged)))
    faces = list(shapely.get_parts(shapely.polygonize(
        shapely.get_parts(shapely.line_merge(shapely.union_all(outlines))))))
    inner = shapely.get_coordinates(shapely.point_on_surface(faces))
    col = np.clip(((inner[:, 0] - u0) / cell).astype(np.int64), 0, lab.shape[1] - 1)
    row = np.clip(((inner[:, 1] - v0) / cell).astype(np.int64), 0, lab.shape[0] - 1)
    return faces, lab[row, col].tolist()


def _snap_to_ridges(faces: list[Polygon], face_label: list[int],
                    planes: Sequence[tuple[float, float, float]],
                    frame: tuple[float, float, float, float], *, dz: float = 0.5,
                    reach: float = 1.0) -> list[Polygon] | None:
    """The boundaries between roof regions that are ridges, hips or valleys moved onto the
    line where their two planes meet (a node of three or more onto their common point).

    The grid places a ridge where the nearest points' labels change, and near a ridge the
    points fit both planes to within the noise, so the labelled boundary wanders by a few
    decimetres either side of the true line: each wander is a roof edge, a sliver of step
    wall between two faces that nearly meet, and height error. A boundary vertex is moved
    when its two planes are within ``dz`` of each other there (a step between roof parts
    is higher and stays where the points put it) and the line is within ``reach``. A vertex
    on the grid's frame moves along it to where the line crosses it (the footprint cuts the
    line there, after), the frame's corners stay. None when the moved regions no longer
    form a valid coverage (the caller keeps them as they were).
    """
    where: dict[tuple[float, float], set[int]] = defaultdict(set)
    for face, j in zip(faces, face_label, strict=True):
        for ring in [face.exterior, *face.interiors]:
            for xy in ring.coords:
                where[xy].add(j)
    u0, v0, u1, v1 = frame
    eps = 1e-9
    moved: dict[tuple[float, float], tuple[float, float]] = {}
    on_frame: set[tuple[float, float]] = set()
    for (u, v), labs in where.items():
        on_u = min(abs(u - u0), abs(u - u1)) < eps  # on a side of the frame: u fixed
        on_v = min(abs(v - v0), abs(v - v1)) < eps
        if len(labs) < 2 or (on_u and on_v) or ((on_u or on_v) and len(labs) > 2):
            continue
        ls = sorted(labs)
        rows = [(planes[i][0] - planes[k][0], planes[i][1] - planes[k][1],
                 planes[i][2] - planes[k][2]) for n, i in enumerate(ls) for k in ls[n + 1:]]
        m = np.asarray(rows)
        if np.abs(m[:, 0] * u + m[:, 1] * v + m[:, 2]).max() > dz:
            continue
        g = np.hypot(m[:, 0], m[:, 1])
        if (g < 1e-6).any():
            continue
        if on_u or on_v:  # along the frame to where the line crosses it
            a, b, cc = rows[0]
            if on_u and abs(b) > 1e-6:
                nu_, nv_ = u, -(a * u + cc) / b
            elif on_v and abs(a) > 1e-6:
                nu_, nv_ = -(b * v + cc) / a, v
            else:
                continue
            if not (u0 < nu_ < u1 or on_u) or not (v0 < nv_ < v1 or on_v):
                continue
        elif len(rows) == 1:  # onto the line: the nearest point of it
            a, b, cc = rows[0]
            t = (a * u + b * v + cc) / (a * a + b * b)
            nu_, nv_ = u - t * a, v - t * b
        else:  # onto the planes' common point (least squares)
            sol, *_ = np.linalg.lstsq(m[:, :2] / g[:, None], -m[:, 2] / g, rcond=None)
            nu_, nv_ = float(sol[0]), float(sol[1])
            if np.abs(m[:, 0] * nu_ + m[:, 1] * nv_ + m[:, 2]).max() > 0.05:
                continue
        if math.hypot(nu_ - u, nv_ - v) <= reach:
            moved[(u, v)] = (nu_, nv_)
            if on_u or on_v:
                on_frame.add((u, v))
    area = sum(f.area for f in faces)
    # the moves along the frame are the first to go when the moved regions overlap
    for moves in (moved, {k: m for k, m in moved.items() if k not in on_frame}):
        if not moves:
            return None

        def move(ring: shapely.LinearRing, moves: dict = moves) -> list[tuple[float, float]]:
            return [moves.get(xy, xy) for xy in ring.coords]

        out = [Polygon(move(f.exterior), [move(h) for h in f.interiors]) for f in faces]
        if (all(p.is_valid and not p.is_empty for p in out)
                and abs(sum(p.area for p in out) - area) <= 1e-6 * area):  # no overlap, no gap
            return out
    return None


def _regularise(faces: list[Polygon], tolerance: float) -> list[Polygon]:
    """The staircase of the grid taken out of the boundaries between roof regions.

    A boundary that crosses the grid's axes (a hip, a valley, a step at an angle) comes out
    of the grid as a staircase of half-cell steps: hundreds of edges, each a wall or a roof
    edge, each a triangle to measure, check, tile and store. Visvalingam-Whyatt on the
    coverage (GEOS's coverage simplifier, through shapely) removes the corners whose
    triangle is smaller than ``tolerance`` squared, and it moves each shared edge once for
    both neighbours and keeps the nodes where three regions meet, so the regions still
    tile the grid's rectangle without gaps or overlaps and the solid over them closes. The
    outer boundary (the grid's rectangle, clipped to the footprint afterwards) is kept as it
    is. A simplification that breaks a region (possible when the tolerance is near a
    region's size) is not used.
    """
    out = shapely.coverage_simplify(np.asarray(faces, dtype=object), tolerance,
                                    simplify_boundary=False)
    if not all(shapely.is_valid(out)) or any(shapely.is_empty(out)):
        return faces
    return list(out)


def _rmse(regions: Sequence[RoofRegion], xyz: np.ndarray) -> float:
    if not regions or len(xyz) == 0:
        return float("inf")
    z = model_z(regions, xyz[:, 0], xyz[:, 1])
    ok = np.isfinite(z)
    if not ok.any():
        return float("inf")
    return float(np.sqrt(np.mean((xyz[ok, 2] - z[ok]) ** 2)))


def partition_candidates(footprint: Polygon, xyz: np.ndarray, planes: Sequence[Plane],
                         labels: np.ndarray, *, cell: float = 0.25, min_area: float = 1.0,
                         simplify: float = 0.0) -> list[tuple[list[RoofRegion], str, float]]:
    """Roof partitions of the footprint, best first: (regions, method, RMSE to the points).

    The envelope (straight plane intersections) comes first unless the grid labelling fits
    the points better by more than 2 cm or 5%: an exact ridge is worth a little misfit. The
    others follow, so a caller whose first solid fails can try the next.
    """
    if not planes:
        return []
    if len(planes) == 1:
        regs = [RoofRegion(footprint, planes[0])]
        return [(regs, "single", _rmse(regs, xyz))]
    cands: list[tuple[list[RoofRegion], str]] = []
    if len(planes) <= 8:
        cands.append((_envelope(footprint, planes, True, min_area), "lower_envelope"))
        cands.append((_envelope(footprint, planes, False, min_area), "upper_envelope"))
    cands.extend(_grid_partitions(footprint, xyz, planes, labels, cell, min_area,
                                  simplify=simplify))
    area = footprint.area
    # a partition must tile the footprint; one that does not is no candidate
    scored = [(r, m, _rmse(r, xyz)) for r, m in cands
              if r and abs(sum(x.polygon.area for x in r) - area) < 0.01 * area]
    grid = [c for c in scored if c[1].startswith("grid")]
    if len(grid) == 2 and grid[1][2] < grid[0][2] - 0.003:
        # the regularised outline moved a boundary the points disagree with (a step taken
        # for a ridge, a small part simplified away): the outline as labelled goes first
        grid.reverse()
    env = sorted([c for c in scored if not c[1].startswith("grid")], key=lambda c: c[2])
    if env and (not grid or env[0][2] <= grid[0][2] * 1.05 + 0.02):
        return env[:1] + grid + env[1:]
    return grid + env


def partition_roof(footprint: Polygon, xyz: np.ndarray, planes: Sequence[Plane],
                   labels: np.ndarray, *, cell: float = 0.25, min_area: float = 1.0,
                   simplify: float = 0.0) -> tuple[list[RoofRegion], str, float]:
    """The best roof partition of :func:`partition_candidates` (empty, "none" if none)."""
    cands = partition_candidates(footprint, xyz, planes, labels, cell=cell, min_area=min_area,
                                 simplify=simplify)
    return cands[0] if cands else ([], "none", float("inf"))


# --- the solid over a partition ---------------------------------------------------------


class PartitionError(ValueError):
    """The partition cannot be made into a closed solid (the caller falls back to LoD1.2)."""


def _ring_coords(ring: shapely.LinearRing) -> np.ndarray:
    return np.asarray(ring.coords)[:-1, :2]


def solid_from_partition(regions: Sequence[RoofRegion], base_z: float, *,
                         snap: float = 0.005, z_snap: float = 0.003, min_height: float = 0.2
                         ) -> Solid:
    """A closed, outward-oriented solid with roof, wall and ground surfaces over ``regions``.

    ``regions`` must tile one polygon (the footprint) without overlaps; ``base_z`` is the
    height of the ground face. Raises :class:`PartitionError` when a roof comes within
    ``min_height`` of the base or the regions do not form one footprint.
    """
    if not regions:
        raise PartitionError("no roof regions")
    base_z = float(base_z)  # a NumPy scalar would make the levels' comparisons NumPy booleans
    # 1. vertex table: snap vertices closer than `snap` to one
    rings: list[tuple[int, list[np.ndarray]]] = []  # (region, rings as coordinate arrays)
    allxy = []
    for ri, reg in enumerate(regions):
        poly = orient(reg.polygon, 1.0)
        rs = [_ring_coords(poly.exterior)] + [_ring_coords(h) for h in poly.interiors]
        rings.append((ri, rs))
        allxy.extend(rs)
    pts = np.concatenate(allxy)
    tree = cKDTree(pts)
    parent = np.arange(len(pts))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in tree.query_pairs(snap):
        parent[find(i)] = find(j)
    roots = np.array([find(i) for i in range(len(pts))])
    uniq, vid_of = np.unique(roots, return_inverse=True)
    vxy = [tuple(pts[r]) for r in uniq]
    region_rings: list[list[list[int]]] = []
    k = 0
    for _ri, rs in rings:
        out = []
        for r in rs:
            ids = vid_of[k:k + len(r)].tolist()
            k += len(r)
            out.append(ids)
        region_rings.append(out)

    def clean(ring: list[int]) -> list[int]:
        ring = [v for i, v in enumerate(ring) if v != ring[i - 1]]
        changed = True
        while changed and len(ring) >= 3:  # drop spikes a-b-a
            changed = False
            for i in range(len(ring)):
                if ring[i - 1] == ring[(i + 1) % len(ring)]:
                    del ring[i]
                    ring = [v for j, v in enumerate(ring) if v != ring[j - 1]]
                    changed = True
                    break
        return ring

    # 2. T-junctions: a vertex lying on another ring's edge is inserted into that edge
    xy = np.asarray(vxy)

    def split_edges(ring: list[int]) -> list[int]:
        out: list[int] = []
        for i, a in enumerate(ring):
            b = ring[(i + 1) % len(ring)]
            out.append(a)
            pa, pb = xy[a], xy[b]
            d = pb - pa
            ll = float(d @ d)
            if ll == 0:
                continue
            t = ((xy - pa) @ d) / ll
            perp = np.abs((xy[:, 0] - pa[0]) * d[1] - (xy[:, 1] - pa[1]) * d[0]) / math.sqrt(ll)
            on = np.flatnonzero((t > 1e-9) & (t < 1 - 1e-9) & (perp < snap))
            on = on[(on != a) & (on != b)]
            if len(on):
                out.extend(on[np.argsort(t[on])].tolist())
        return out

    region_rings = [[clean(split_edges(r)) for r in rs] for rs in region_rings]
    region_rings = [[r for r in rs if len(r) >= 3] for rs in region_rings]
    planes = [reg.plane for reg in regions]

    # 3. where two neighbouring faces cross along a shared edge, split the edge there
    for _pass in range(4):
        owner: dict[tuple[int, int], int] = {}
        for ri, rs in enumerate(region_rings):
            for r in rs:
                for i, a in enumerate(r):
                    owner[(a, r[(i + 1) % len(r)])] = ri
        inserts: dict[tuple[int, int], int] = {}
        for (a, b), ri in owner.items():
            si = owner.get((b, a))
            if si is None or si <= ri:
                continue
            za = planes[ri].z(*xy[a]) - planes[si].z(*xy[a])
            zb = planes[ri].z(*xy[b]) - planes[si].z(*xy[b])
            if za * zb < 0 and abs(za) > z_snap and abs(zb) > z_snap:
                t = za / (za - zb)
                p = xy[a] + t * (xy[b] - xy[a])
                xy = np.vstack([xy, p])
                inserts[(a, b)] = inserts[(b, a)] = len(xy) - 1
        if not inserts:
            break
        new_rings = []
        for rs in region_rings:
            nrs = []
            for r in rs:
                nr = []
                for i, a in enumerate(r):
                    nr.append(a)
                    m = inserts.get((a, r[(i + 1) % len(r)]))
                    if m is not None:
                        nr.append(m)
                nrs.append(nr)
            new_rings.append(nrs)
        region_rings = new_rings

    # 4. heights: each region's plane at its vertices; the levels met at every vertex, with
    # levels within `z_snap` of each other made one (else two faces that meet to a millimetre
    # would need a wall of no area between them)
    def raw_z(ri: int, v: int) -> float:
        return round(float(planes[ri].z(*xy[v])), 3)

    raw_levels: dict[int, set[float]] = defaultdict(set)
    owner = {}
    for ri, rs in enumerate(region_rings):
        for r in rs:
            for i, a in enumerate(r):
                owner[(a, r[(i + 1) % len(r)])] = ri
                z = raw_z(ri, a)
                if z < base_z + min_height:
                    raise PartitionError(
                        f"the roof comes down to {z - base_z:.2f} m above the base")
                raw_levels[a].add(z)
    base = round(base_z, 3)
    boundary = [(a, b) for (a, b) in owner if (b, a) not in owner]
    for a, b in boundary:
        raw_levels[a].add(base)
        raw_levels[b].add(base)
    canon: dict[int, dict[float, float]] = {}
    levels: dict[int, set[float]] = {}
    for v, zs in raw_levels.items():
        m: dict[float, float] = {}
        rep = None
        for z in sorted(zs):
            if rep is None or z - rep > z_snap:
                rep = z
            m[z] = rep
        canon[v] = m
        levels[v] = set(m.values())

    def rz(ri: int, v: int) -> float:
        return canon[v][raw_z(ri, v)]

    sb = SolidBuilder()

    def column(v: int, z_from: float, z_to: float) -> list[tuple[float, float, float]]:
        """The levels at v strictly between z_from and z_to, in that order."""
        lo, hi = min(z_from, z_to), max(z_from, z_to)
        mids = sorted((z for z in levels[v] if lo < z < hi), reverse=z_from > z_to)
        x, y = xy[v]
        return [(x, y, z) for z in mids]

    for ri, rs in enumerate(region_rings):
        sb.add([[(xy[v][0], xy[v][1], rz(ri, v)) for v in r] for r in rs], ROOF)
    for (a, b), ri in owner.items():
        si = owner.get((b, a))
        if si is not None and si < ri:
            continue  # each shared edge once
        za_r, zb_r = rz(ri, a), rz(ri, b)
        za_s, zb_s = (rz(si, a), rz(si, b)) if si is not None else (base, base)
        if za_r == za_s and zb_r == zb_s:
            continue
        (xa, ya), (xb, yb) = xy[a], xy[b]
        ring = [(xa, ya, za_s), (xb, yb, zb_s), *column(b, zb_s, zb_r), (xb, yb, zb_r),
                (xa, ya, za_r), *column(a, za_r, za_s)]
        sb.add([ring], WALL)
    # ground: the boundary edges chained into rings, walked the other way (facing down)
    nxt: dict[int, int] = {}
    for a, b in boundary:
        if a in nxt:
            raise PartitionError("the roof partition's outline touches itself at "
                                 f"({xy[a][0]:.3f}, {xy[a][1]:.3f})")
        nxt[a] = b
    seen: set[int] = set()
    outers, holes = [], []
    for start in nxt:
        if start in seen:
            continue
        ring = [start]
        seen.add(start)
        cur = nxt[start]
        while cur != start:
            if cur in seen or cur not in nxt:
                raise PartitionError("the roof regions do not close into a footprint")
            ring.append(cur)
            seen.add(cur)
            cur = nxt[cur]
        c = xy[ring]
        area = 0.5 * float(np.sum(c[:, 0] * np.roll(c[:, 1], -1) - np.roll(c[:, 0], -1) * c[:, 1]))
        (outers if area > 0 else holes).append(ring)
    if len(outers) != 1:
        raise PartitionError(f"the roof regions form {len(outers)} footprints, not one")
    sb.add([[(xy[v][0], xy[v][1], base) for v in reversed(r)] for r in outers + holes], GROUND)
    return sb.build()
