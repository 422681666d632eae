"""Boundary-represented solids with semantic surfaces, and a validity checker.

A :class:`Solid` is one closed shell: shared vertices (an (N, 3) array) and faces, each face a
list of rings (the first the outer ring, the others holes) of vertex indices, with one semantic
label per face (``RoofSurface``, ``WallSurface``, ``GroundSurface``). That is the shape CityJSON
stores (vertices + boundaries + semantics), so conversion is a re-indexing.

:func:`check_solid` is what stands between a reconstruction and the city model: a building
whose solid fails it is not published at that LoD. It checks, in the spirit of ISO 19107 /
val3dity (but without the self-intersection test, which the construction in
:mod:`recon.roofs` avoids by building faces over a noded planar partition):

- every ring has at least three distinct vertices and no zero-length edge;
- every face is planar within a tolerance;
- every edge is used exactly twice, once in each direction (closed, 2-manifold along edges,
  consistently oriented);
- the faces around every vertex form one fan (2-manifold at vertices);
- all faces form one connected shell;
- the signed volume is positive (outward orientation).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "GROUND",
    "ROOF",
    "WALL",
    "Solid",
    "SolidBuilder",
    "SolidCheck",
    "check_solid",
    "distance_to_surface",
    "face_area_vector",
    "triangles",
]

SurfaceKind = Literal["RoofSurface", "WallSurface", "GroundSurface"]
ROOF: SurfaceKind = "RoofSurface"
WALL: SurfaceKind = "WallSurface"
GROUND: SurfaceKind = "GroundSurface"

Ring = list[int]
Face = list[Ring]


@dataclass
class Solid:
    """One closed shell: vertices, faces (rings of vertex indices) and a label per face."""

    vertices: np.ndarray  # (N, 3) float64
    faces: list[Face]
    semantics: list[SurfaceKind]

    def __post_init__(self) -> None:
        if len(self.faces) != len(self.semantics):
            raise ValueError("one semantic label per face is needed")

    def volume(self) -> float:
        """Signed volume (positive when the faces point outward)."""
        return _signed_volume(self.vertices, self.faces)

    def area(self, kind: SurfaceKind | None = None) -> float:
        total = 0.0
        for face, sem in zip(self.faces, self.semantics, strict=True):
            if kind is None or sem == kind:
                total += float(np.linalg.norm(face_area_vector(self.vertices, face)))
        return total


class SolidBuilder:
    """Collects faces over merged vertices: coordinates equal to ``precision`` share an index."""

    def __init__(self, precision: float = 0.001) -> None:
        self._scale = 1.0 / precision
        self._index: dict[tuple[int, int, int], int] = {}
        self._xyz: list[tuple[float, float, float]] = []
        self.faces: list[Face] = []
        self.semantics: list[SurfaceKind] = []

    def vertex(self, x: float, y: float, z: float) -> int:
        key = (round(x * self._scale), round(y * self._scale), round(z * self._scale))
        idx = self._index.get(key)
        if idx is None:
            idx = len(self._xyz)
            self._index[key] = idx
            self._xyz.append((key[0] / self._scale, key[1] / self._scale, key[2] / self._scale))
        return idx

    def add(self, rings: Sequence[Sequence[tuple[float, float, float]]], kind: SurfaceKind) -> None:
        """Add a face from coordinate rings; repeated consecutive vertices are dropped."""
        face: Face = []
        for ring in rings:
            ids = [self.vertex(*p) for p in ring]
            clean = [v for i, v in enumerate(ids) if v != ids[i - 1]] if len(ids) > 1 else ids
            if len(clean) >= 3:
                face.append(clean)
            elif not face:  # a degenerate outer ring: no face at all
                return
        if face:
            self.faces.append(face)
            self.semantics.append(kind)

    def build(self) -> Solid:
        return Solid(np.asarray(self._xyz, dtype=np.float64).reshape(-1, 3), self.faces,
                     self.semantics)


@dataclass
class SolidCheck:
    """The verdict of :func:`check_solid`: ``valid`` and, if not, every problem found."""

    valid: bool
    problems: list[str] = field(default_factory=list)
    volume: float = 0.0


def face_area_vector(vertices: np.ndarray, face: Face) -> np.ndarray:
    """Newell's area vector of a face (holes, wound the other way, subtract)."""
    total = np.zeros(3)
    origin = vertices[face[0][0]]  # relative coordinates: map coordinates would eat the area
    for ring in face:
        p = vertices[ring] - origin
        q = np.roll(p, -1, axis=0)
        total += 0.5 * np.cross(p, q).sum(axis=0)
    return total


def _signed_volume(vertices: np.ndarray, faces: Sequence[Face]) -> float:
    # divergence theorem on planar faces: V = 1/3 sum (p_f . A_f), any p_f on face f; taken
    # relative to the centroid so large map coordinates do not eat the precision
    if not faces:
        return 0.0
    origin = vertices.mean(axis=0)
    v = vertices - origin
    vol = 0.0
    for face in faces:
        vol += float(v[face[0][0]] @ face_area_vector(v, face))
    return vol / 3.0


def _plane_deviation(vertices: np.ndarray, face: Face) -> float:
    pts = vertices[[i for ring in face for i in ring]]
    n = face_area_vector(vertices, face)
    norm = np.linalg.norm(n)
    if norm == 0.0:
        return float("inf")
    n = n / norm
    d = (pts - pts.mean(axis=0)) @ n
    return float(np.abs(d).max())


def check_solid(solid: Solid, *, planarity_m: float = 0.01, min_edge_m: float = 0.0005
                ) -> SolidCheck:
    """Check that ``solid`` is one closed, 2-manifold, outward-oriented shell of planar faces."""
    problems: list[str] = []
    v = solid.vertices
    if len(solid.faces) < 4:
        problems.append(f"only {len(solid.faces)} faces: a closed shell needs at least 4")
    if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
        return SolidCheck(False, [*problems, "vertices are not finite (N, 3) coordinates"])

    directed: dict[tuple[int, int], int] = defaultdict(int)
    edge_faces: dict[tuple[int, int], list[int]] = defaultdict(list)
    # per vertex: (incoming neighbour, outgoing neighbour) of every corner, for the fan test
    corners: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for fi, face in enumerate(solid.faces):
        if not face:
            problems.append(f"face {fi} has no ring")
            continue
        for ri, ring in enumerate(face):
            if len(ring) < 3 or len(set(ring)) != len(ring):
                problems.append(f"face {fi} ring {ri}: fewer than 3 vertices or a repeated vertex")
                continue
            if max(ring) >= len(v) or min(ring) < 0:
                problems.append(f"face {fi} ring {ri}: vertex index out of range")
                continue
            n = len(ring)
            for k in range(n):
                a, b = ring[k], ring[(k + 1) % n]
                if np.linalg.norm(v[a] - v[b]) < min_edge_m:
                    problems.append(f"face {fi}: an edge shorter than {min_edge_m} m")
                directed[(a, b)] += 1
                edge_faces[(min(a, b), max(a, b))].append(fi)
                corners[b].append((a, ring[(k + 2) % n]))
        dev = _plane_deviation(v, face)
        if dev > planarity_m:
            problems.append(f"face {fi} ({solid.semantics[fi]}) is not planar: "
                            f"{dev:.3f} m off its plane")
    if problems:
        return SolidCheck(False, problems)

    open_edges = overused = misoriented = 0
    for (a, b), count in directed.items():
        back = directed.get((b, a), 0)
        if count > 1:
            overused += 1
        elif back == 0:
            open_edges += 1
        elif back != count:
            misoriented += 1
    if open_edges:
        problems.append(f"{open_edges} edges used by one face only: the shell is not closed")
    if overused:
        problems.append(f"{overused} edges used twice in the same direction or by more than "
                        "two faces: not 2-manifold or not consistently oriented")
    if misoriented:
        problems.append(f"{misoriented} edges used unevenly in the two directions")

    if not problems:
        # around a manifold vertex, corners chain into one cycle: the outgoing neighbour of
        # one corner is the incoming neighbour of the next
        for vid, cs in corners.items():
            by_inc: dict[int, int] = {}
            for inc, out in cs:
                if inc in by_inc:
                    break
                by_inc[inc] = out
            else:
                start = cs[0][1]
                steps, cur = 0, start
                while steps < len(cs):
                    cur = by_inc.get(cur)
                    steps += 1
                    if cur is None or cur == start:
                        break
                if cur == start and steps == len(cs):
                    continue
            problems.append(f"vertex {vid} is not 2-manifold: its faces form several fans")
            break

    # one connected shell
    parent = list(range(len(solid.faces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for fs in edge_faces.values():
        for f in fs[1:]:
            parent[find(f)] = find(fs[0])
    shells = len({find(i) for i in range(len(solid.faces))})
    if shells > 1:
        problems.append(f"the faces form {shells} separate shells")

    vol = _signed_volume(v, solid.faces)
    if vol <= 0:
        problems.append(f"signed volume {vol:.3f} m3 is not positive: faces point inward")
    return SolidCheck(not problems, problems, vol)


def triangles(solid: Solid) -> np.ndarray:
    """The solid's faces as triangles, a (T, 3, 3) array (ear clipping, holes kept)."""
    import mapbox_earcut

    out = []
    v = solid.vertices
    for face in solid.faces:
        n = face_area_vector(v, face)
        drop = int(np.argmax(np.abs(n)))
        keep = [i for i in range(3) if i != drop]
        ids = [i for ring in face for i in ring]
        xy = v[ids][:, keep]
        ends = np.cumsum([len(r) for r in face]).astype(np.uint32)
        tri = mapbox_earcut.triangulate_float64(xy - xy.mean(axis=0), ends)
        if len(tri):
            out.append(v[np.asarray(ids)[tri.reshape(-1, 3)]])
    return np.concatenate(out) if out else np.empty((0, 3, 3))


def distance_to_surface(solid: Solid, points: np.ndarray, *, pairs: int = 200_000,
                        patch_m: float = 2.0, sample_m: float = 0.5) -> np.ndarray:
    """Euclidean distance of every point to the solid's boundary (its nearest face).

    This is how 3DBAG reports a building's fit: a point on a wall or a dormer side is
    measured to that wall, not vertically to the roof above it.

    Exact, and pruned twice: each point's distance to the triangle of its nearest sample
    (the triangles sampled every ``sample_m``, a k-d tree over the samples) bounds its
    distance from above; the points go in compact patches (``patch_m`` cells), and a patch
    measures only the triangles whose box lies within its largest bound, then, point by
    point, those whose box is nearer than the point's bound. Testing every triangle's box
    against every point took half of a building's reconstruction on roofs of many faces.
    """
    tri = triangles(solid)
    pts = np.asarray(points, dtype=np.float64)
    if len(tri) == 0 or len(pts) == 0:
        return np.full(len(pts), np.inf)
    origin = tri.reshape(-1, 3).mean(axis=0)
    t = tri - origin
    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    lo, hi = t.min(axis=1), t.max(axis=1)
    samples, owner = _triangle_samples(t, sample_m)
    p_all = pts - origin
    _, nearest = cKDTree(samples).query(p_all)
    ub_all = _pair_d2(p_all, *(t[owner[nearest], k] for k in range(3)))
    cell = np.floor(p_all[:, :2] / patch_m).astype(np.int64)
    order = np.lexsort((cell[:, 0], cell[:, 1]))
    out = np.empty(len(pts))
    # a patch of points against every triangle: about ``pairs`` pairs (a solid of a few
    # faces takes all its points at once)
    chunk = int(np.clip(pairs // len(tri), 128, 16384))
    for s in range(0, len(pts), chunk):
        rows = order[s:s + chunk]
        p = p_all[rows]
        ub = ub_all[rows]
        r = float(np.sqrt(ub.max()))
        pmin, pmax = p.min(axis=0) - r, p.max(axis=0) + r
        cand = np.flatnonzero(((lo <= pmax) & (hi >= pmin)).all(axis=1))
        gap = np.maximum(lo[cand][None] - p[:, None, :], p[:, None, :] - hi[cand][None])
        np.maximum(gap, 0.0, out=gap)
        gap *= gap
        pi, ci = np.nonzero(gap.sum(axis=2) <= ub[:, None] * (1 + 1e-9) + 1e-9)
        ti = cand[ci]
        d2 = _pair_d2(p[pi], a[ti], b[ti], c[ti])
        best = ub.copy()
        np.minimum.at(best, pi, d2)
        out[rows] = np.sqrt(best)
    return out


def _triangle_samples(t: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on each triangle of ``t`` (T, 3, 3) on a barycentric grid about ``step`` apart
    (the corners at least), and the index of the triangle of each."""
    edges = np.linalg.norm(t - np.roll(t, 1, axis=1), axis=2).max(axis=1)
    ks = np.clip(np.ceil(edges / step), 1, 64).astype(np.int64)
    out, owner = [], []
    for k in np.unique(ks):
        ids = np.flatnonzero(ks == k)
        i, j = np.nonzero(np.add.outer(np.arange(k + 1), np.arange(k + 1)) <= k)
        u, v = i / k, j / k
        tt = t[ids]
        pts = (tt[:, None, 0] + u[None, :, None] * (tt[:, None, 1] - tt[:, None, 0])
               + v[None, :, None] * (tt[:, None, 2] - tt[:, None, 0]))
        out.append(pts.reshape(-1, 3))
        owner.append(np.repeat(ids, len(u)))
    return np.concatenate(out), np.concatenate(owner)


def _pair_d2(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared distance of each point p[i] to the triangle a[i], b[i], c[i]."""
    return _point_triangle_d2(p[:, None, :], a, b, c, paired=True)[:, 0]


def _point_triangle_d2(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, *,
                       paired: bool = False) -> np.ndarray:
    """Squared distance of points p (N, 1, 3) to triangles a, b, c (T, 3): (N, T); with
    ``paired``, point i to triangle i only (T == N): (N, 1)."""
    if paired:
        a, b, c = a[:, None, :], b[:, None, :], c[:, None, :]
    else:
        a, b, c = a[None], b[None], c[None]
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = (n * n).sum(axis=-1)
    ok = nn > 1e-18
    nn_safe = np.where(ok, nn, 1.0)
    ap = p - a
    d_plane = (ap * n).sum(axis=-1)
    proj = ap - (d_plane / nn_safe)[..., None] * n
    c1 = (np.cross(ab, proj) * n).sum(axis=-1)
    c2 = (np.cross(c - b, proj - ab) * n).sum(axis=-1)
    c3 = (np.cross(a - c, proj - ac) * n).sum(axis=-1)
    inside = (c1 >= 0) & (c2 >= 0) & (c3 >= 0) & ok
    # inside the prism over the triangle: the distance to its plane; otherwise to an edge
    d2 = np.where(inside, d_plane**2 / nn_safe, np.inf)
    for e0, e1 in ((a, b), (b, c), (c, a)):
        ed = e1 - e0
        ll = (ed * ed).sum(axis=-1)
        t = np.clip(((p - e0) * ed).sum(axis=-1) / np.where(ll > 0, ll, 1.0), 0.0, 1.0)
        q = e0 + t[..., None] * ed
        d2 = np.minimum(d2, ((p - q) ** 2).sum(axis=-1))
    return d2
