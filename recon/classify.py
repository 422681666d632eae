"""Classification of a survey's points: ground, building, vegetation, noise (ASPRS classes).

The steps, each a function the service can call on its own:

1. :func:`existing_classification` decides whether the file's own classes can be kept.
2. :func:`ground_filter` separates ground from everything else. It is a simple
   morphological filter (SMRF, Pingel et al. 2013) on a grid of cell minima: progressive
   openings with growing square windows flag cells that stand above their surroundings by
   more than the terrain's slope allows, the flagged cells are filled by TIN interpolation
   and every point near that surface is ground. Everything but the final point test works
   on a raster of about one cell per square metre, which is why it is faster than CSF's
   cloth simulation; its accuracy against CSF (:func:`csf_ground`, the PyPI
   ``cloth-simulation-filter``) is measured by ``benchmarks/classify_vs_csf.py`` and the
   figures are in ``benchmarks/RESULTS.md``.
3. :func:`recon.terrain.build_dtm` makes the DTM from the ground points; every point gets
   its height above ground.
4. :func:`classify_objects` tells buildings from vegetation by local geometry: a principal
   component analysis of each point's nearest neighbours (``scipy.spatial.cKDTree``) gives
   its surface variation; points of smooth surfaces are linked into segments, large
   segments are roofs (and the walls next to them), pulses that went on to later returns
   are vegetation, the rest is decided by its neighbours.

:func:`classify_points` runs them all and returns a :class:`Classification`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from recon.errors import EmptySurveyError, InvalidPointsError, NoGroundError
from recon.terrain import Dtm, build_dtm, fill_gaps

__all__ = [
    "Classification",
    "ClassificationDecision",
    "ObjectParams",
    "class_f1",
    "classify_objects",
    "classify_points",
    "csf_ground",
    "existing_classification",
    "ground_filter",
    "ground_total_error",
]

UNCLASSIFIED, GROUND, LOW_VEG, MEDIUM_VEG, HIGH_VEG, BUILDING, NOISE = 1, 2, 3, 4, 5, 6, 7
#: classes that say what an object is (vegetation, building, water, bridge...)
_OBJECT_CLASSES = frozenset({3, 4, 5, 6, 9, 10, 11, 13, 14, 15, 16, 17, 19, 20})
MIN_DENSITY = 2.0  # points per m2 below which the survey is called sparse


@dataclass(frozen=True)
class ClassificationDecision:
    """Whether a file's own classification was kept, and why."""

    kept: bool
    reason: str
    counts: dict[int, int]


def existing_classification(classification: np.ndarray | None) -> ClassificationDecision:
    """Decide whether a file's classes are meaningful enough to keep.

    The rule: the file is classified when (a) ground (class 2) holds between 5 % and 95 % of
    the points (less is not a ground classification of an aerial survey, more leaves no room
    for anything on it) and (b) at least one class naming an object (vegetation 3-5,
    building 6, water 9, bridge 17...) holds at least 0.5 % of the points. Unclassified
    points (0, 1) may be many: national surveys such as AHN leave everything that is neither
    ground nor building nor water in class 1. Noise (7, 18) does not count either way.
    """
    if classification is None or len(classification) == 0:
        return ClassificationDecision(False, "the file has no classification", {})
    values, counts = np.unique(np.asarray(classification), return_counts=True)
    tally = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
    n = int(counts.sum())
    ground = tally.get(GROUND, 0) / n
    objects = {k: v for k, v in tally.items() if k in _OBJECT_CLASSES and v >= 0.005 * n}
    if set(tally) <= {0, 1}:
        return ClassificationDecision(False, "every point is unclassified (class 0/1)", tally)
    if len(tally) == 1:
        return ClassificationDecision(
            False, f"every point has the same class ({values[0]}): not a classification", tally
        )
    if not 0.05 <= ground <= 0.95:
        return ClassificationDecision(
            False, f"ground is {ground:.1%} of the points (a kept classification needs 5-95 %)",
            tally,
        )
    if not objects:
        return ClassificationDecision(
            False, "ground, but no building, vegetation or other object class with 0.5 % of "
            "the points", tally,
        )
    names = ", ".join(f"class {k} {v / n:.1%}" for k, v in sorted(objects.items()))
    return ClassificationDecision(
        True, f"kept the file's classification: ground {ground:.1%}, {names}", tally
    )


@dataclass
class Classification:
    """The result: ASPRS class and height above ground of every point, and the DTM."""

    classes: np.ndarray  # (N,) uint8
    hag: np.ndarray  # (N,) float32, metres above the DTM (NaN for invalid points)
    dtm: Dtm
    decision: ClassificationDecision
    density: float  # points per m2 over the covered cells
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


#: points per piece of the per-point passes over a survey (16 MB a float array)
_PIECE = 1 << 21


def _grid_index(
    x: np.ndarray, y: np.ndarray, cell: float
) -> tuple[np.ndarray, int, int, float, float]:
    x0 = float(np.floor(x.min() / cell) * cell)
    y0 = float(np.floor(y.min() / cell) * cell)
    cols = int((x.max() - x0) // cell) + 1
    rows = int((y.max() - y0) // cell) + 1
    # in pieces, into the smallest integer type that holds every cell: made at once, the
    # temporaries of the index were five arrays of 8 bytes a point, the peak of a survey's
    # ground filtering
    flat = np.empty(len(x), dtype=np.int32 if rows * cols < 2**31 else np.int64)
    for s in range(0, len(x), _PIECE):
        j = ((x[s:s + _PIECE] - x0) / cell).astype(np.int64)
        i = ((y[s:s + _PIECE] - y0) / cell).astype(np.int64)
        flat[s:s + _PIECE] = i * cols + j
    return flat, rows, cols, x0, y0


def _validate(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points as float64 (N, 3) and the mask of finite ones; typed errors otherwise."""
    try:
        pts = np.asarray(xyz, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidPointsError(f"the coordinates are not numbers: {exc}") from exc
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InvalidPointsError(f"expected an (N, 3) array of x, y, z, got shape {pts.shape}")
    if pts.shape[0] == 0:
        raise EmptySurveyError("the survey has no points")
    finite = np.isfinite(pts).all(axis=1)
    if finite.sum() < 3:
        raise InvalidPointsError(
            f"only {int(finite.sum())} of {pts.shape[0]} points have finite coordinates"
        )
    return pts, finite


def ground_filter(
    xyz: np.ndarray,
    *,
    cell: float = 1.0,
    slope: float = 0.15,
    max_window_m: float = 40.0,
    threshold: float = 0.3,
    scalar: float = 1.0,
    low_noise_m: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground points by a simple morphological filter (SMRF); returns (ground, low_noise).

    ``slope`` is the steepest terrain (rise over run) the filter keeps as ground,
    ``max_window_m`` the widest object it removes (wider roofs than that stay ground: raise
    it for large halls), ``threshold`` plus ``scalar`` times the local terrain slope the
    height above the filtered surface within which a point is ground. Points more than
    ``low_noise_m`` below their neighbourhood's lowest points are low noise (multipath).
    All points must be finite.
    """
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    flat, rows, cols, x0, y0 = _grid_index(x, y, cell)
    zmin = np.full(rows * cols, np.inf)
    np.minimum.at(zmin, flat, z)
    zmin = zmin.reshape(rows, cols)
    have = np.isfinite(zmin)
    # low outliers (multipath) pull the minimum surface down: a cell far below all of its
    # neighbours is a pit no terrain has (a courtyard has ground cells around it)
    filled = fill_nearest(zmin, have)
    ring = np.ones((3, 3), dtype=bool)
    ring[1, 1] = False
    around = ndimage.minimum_filter(filled, footprint=ring, mode="nearest")
    low_cell = have & (zmin < around - low_noise_m)
    if low_cell.any():
        low_pt = low_cell.ravel()[flat] & (z < around.ravel()[flat] - low_noise_m)
        zmin = np.full(rows * cols, np.inf)
        np.minimum.at(zmin, flat[~low_pt], z[~low_pt])
        zmin = zmin.reshape(rows, cols)
        have = np.isfinite(zmin)
        filled = fill_nearest(zmin, have)
    else:
        low_pt = np.zeros(z.size, dtype=bool)
    surface = filled
    objects = ~have
    for r in range(1, max(1, round(max_window_m / 2 / cell)) + 1):
        opened = ndimage.grey_opening(surface, size=(2 * r + 1, 2 * r + 1), mode="nearest")
        objects |= (surface - opened) > slope * r * cell
        surface = opened
    if objects.all():
        raise NoGroundError("no ground found: the filter flagged every cell as an object")
    dem = fill_gaps(np.where(objects, np.nan, filled), ~objects)
    gy, gx = np.gradient(dem, cell)
    tol = (threshold + scalar * np.hypot(gx, gy) * cell).ravel()
    ground = np.empty(z.size, dtype=bool)
    low = np.empty(z.size, dtype=bool)
    for s in range(0, z.size, _PIECE):  # in pieces: two float arrays a point less at the peak
        sl = slice(s, s + _PIECE)
        dz = z[sl] - _bilinear(dem, x[sl], y[sl], x0, y0, cell)
        ground[sl] = (dz <= tol[flat[sl]]) & (dz >= -low_noise_m) & ~low_pt[sl]
        low[sl] = low_pt[sl] | (dz < -low_noise_m)
    return ground, low


def fill_nearest(grid: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Empty cells take the value of the nearest filled cell."""
    if have.all():
        return grid
    idx = ndimage.distance_transform_edt(~have, return_distances=False, return_indices=True)
    return grid[tuple(idx)]


def _bilinear(
    grid: np.ndarray, x: np.ndarray, y: np.ndarray, x0: float, y0: float, cell: float
) -> np.ndarray:
    return Dtm(grid, x0, y0, cell, np.zeros(grid.shape, bool)).height(x, y)


def csf_ground(
    xyz: np.ndarray,
    *,
    cloth_resolution: float = 1.0,
    rigidness: int = 2,
    class_threshold: float = 0.5,
    slope_smooth: bool = True,
    iterations: int = 500,
) -> np.ndarray:
    """Ground points by CSF (cloth simulation, Zhang et al. 2016, PyPI cloth-simulation-filter).

    The peer the own filter is measured against, and a fallback a caller may choose.
    """
    import CSF

    csf = CSF.CSF()
    csf.params.bSloopSmooth = slope_smooth
    csf.params.cloth_resolution = cloth_resolution
    csf.params.rigidness = rigidness
    csf.params.class_threshold = class_threshold
    csf.params.interations = iterations
    csf.setPointCloud(np.ascontiguousarray(xyz, dtype=np.float64))
    ground_idx, off_idx = CSF.VecInt(), CSF.VecInt()
    csf.do_filtering(ground_idx, off_idx, exportCloth=False)
    mask = np.zeros(xyz.shape[0], dtype=bool)
    mask[np.asarray(ground_idx, dtype=np.int64)] = True
    return mask


@dataclass(frozen=True)
class ObjectParams:
    """Thresholds of the building / vegetation separation (metres, points, ratios)."""

    min_height: float = 2.0  # above ground: lower things are not buildings
    k: int = 10  # neighbours of the local PCA
    flat_variation: float = 0.045  # surface variation l3 / (l1 + l2 + l3) of a smooth surface
    min_roof_m2: float = 5.0  # smallest roof segment
    vote: float = 0.3  # share of building neighbours that makes a point building
    vote_rounds: int = 5  # rounds of the vote: each reaches one neighbourhood further
    wall_cell: float = 0.5  # grid on which points under a roof's edge join it (walls)


def classify_objects(
    xyz: np.ndarray,
    hag: np.ndarray,
    candidates: np.ndarray,
    density: float,
    return_number: np.ndarray | None = None,
    number_of_returns: np.ndarray | None = None,
    params: ObjectParams = ObjectParams(),
) -> np.ndarray:
    """Building (True) or not, for the ``candidates`` points (non-ground, above ``min_height``).

    Returns a boolean mask over all points (False outside ``candidates``).
    """
    out = np.zeros(xyz.shape[0], dtype=bool)
    idx = np.flatnonzero(candidates)
    if idx.size <= params.k:
        return out
    pts = xyz[idx]
    k = params.k
    # unbalanced and uncompacted: quicker to build, the same neighbours
    tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)
    # queried in pieces kept as 32-bit: at 10 neighbours of millions of points the 64-bit
    # arrays the tree returns were the peak of the whole classification
    spacing = 1.0 / np.sqrt(max(density, 1e-6))
    link = max(1.0, 3.0 * spacing)
    nn = np.empty((idx.size, k), dtype=np.int32)
    # only whether a neighbour is near enough to link is kept (a byte, not a float32 distance:
    # the distances were among the largest arrays of the pass); compared as float32 as before
    near = np.empty((idx.size, k), dtype=bool)
    piece = 500_000
    for s in range(0, idx.size, piece):
        d, j = tree.query(pts[s : s + piece], k=k, workers=-1)
        nn[s : s + piece] = j
        near[s : s + piece] = d.astype(np.float32) < link
    del tree, d, j
    variation = np.empty(idx.size)
    chunk = 400_000
    for s in range(0, idx.size, chunk):
        nb = pts[nn[s : s + chunk]]
        nb -= nb.mean(axis=1, keepdims=True)
        variation[s : s + chunk] = _surface_variation(nb)
    del pts, nb  # the connected components below are the peak: hold only what they need
    smooth = variation < params.flat_variation
    del variation
    # later returns of a pulse came through something: foliage, not a roof
    if return_number is not None and number_of_returns is not None:
        through = return_number[idx] < number_of_returns[idx]
        smooth &= ~through
    else:
        through = np.zeros(idx.size, dtype=bool)
    # the neighbour lists are the rows of the graph already: kept edges go straight into a
    # CSR matrix (a COO matrix of row and column arrays, converted, was the peak of memory)
    cols = nn.ravel()
    keep = np.repeat(smooth, k) & smooth[cols] & near.ravel()
    del near
    indptr = np.zeros(idx.size + 1, dtype=np.int64)
    np.cumsum(keep.reshape(-1, k).sum(axis=1), out=indptr[1:])
    cols = cols[keep]
    del keep
    graph = sparse.csr_matrix(
        (np.ones(cols.size, dtype=np.int8), cols, indptr), shape=(idx.size, idx.size),
    )
    _, labels = csgraph.connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    min_points = max(10, int(params.min_roof_m2 * density * 0.5))
    roof = smooth & (sizes[labels] >= min_points)
    # rough points next to roofs (edges, dormers, chimneys) follow their neighbours' vote;
    # a low bar repeated a few times grows buildings over their rough parts, while a crown
    # (whose smooth patches are too small to seed) never gets a majority of seeds around it
    building = roof
    for _ in range(params.vote_rounds):
        building = building | (building[nn].mean(axis=1) >= params.vote)
    out[idx[building]] = True
    return out


def _walls(
    xyz: np.ndarray, building: np.ndarray, other: np.ndarray, cell: float
) -> np.ndarray:
    """``other`` points right under a roof's edge (walls, sparse and below the roof).

    A nadir survey sees walls only as a few points hanging below the roof outline: too sparse
    for a neighbourhood's geometry, but in plan view they lie in the roof's cells or one cell
    beside them, lower than the roof there.
    """
    if not building.any() or not other.any():
        return np.zeros(xyz.shape[0], dtype=bool)
    flat, rows, cols, _, _ = _grid_index(xyz[:, 0], xyz[:, 1], cell)
    top = np.full(rows * cols, -np.inf)
    np.maximum.at(top, flat[building], xyz[building, 2])
    top = ndimage.maximum_filter(top.reshape(rows, cols), size=3, mode="constant",
                                 cval=-np.inf).ravel()
    return other & (xyz[:, 2] < top[flat] - 0.2)


def _surface_variation(nb: np.ndarray) -> np.ndarray:
    """l3 / (l1 + l2 + l3) of each neighbourhood's covariance (``nb`` centred, (n, k, 3)).

    The smallest eigenvalue of a symmetric 3x3 matrix in closed form (the trigonometric
    solution of its characteristic cubic): numpy's batched ``eigvalsh`` costs several times
    more on millions of neighbourhoods.
    """
    x, y, z = nb[..., 0], nb[..., 1], nb[..., 2]
    a = np.einsum("nk,nk->n", x, x)
    b = np.einsum("nk,nk->n", y, y)
    c = np.einsum("nk,nk->n", z, z)
    d = np.einsum("nk,nk->n", x, y)
    e = np.einsum("nk,nk->n", x, z)
    f = np.einsum("nk,nk->n", y, z)
    trace = a + b + c
    q = trace / 3
    p1 = d * d + e * e + f * f
    p2 = (a - q) ** 2 + (b - q) ** 2 + (c - q) ** 2 + 2 * p1
    p = np.sqrt(p2 / 6)
    safe = np.where(p > 0, p, 1.0)
    ba, bb, bc = (a - q) / safe, (b - q) / safe, (c - q) / safe
    bd, be, bf = d / safe, e / safe, f / safe
    det = ba * (bb * bc - bf * bf) - bd * (bd * bc - bf * be) + be * (bd * bf - bb * be)
    phi = np.arccos(np.clip(det / 2, -1.0, 1.0)) / 3
    smallest = np.where(p > 0, q + 2 * p * np.cos(phi + 2 * np.pi / 3), q)
    return np.maximum(smallest, 0.0) / np.maximum(trace, 1e-12)


def classify_points(
    xyz: np.ndarray,
    return_number: np.ndarray | None = None,
    number_of_returns: np.ndarray | None = None,
    classification: np.ndarray | None = None,
    *,
    crs: str | None = None,
    dtm_cell: float = 0.5,
    ground: str = "smrf",
    params: ObjectParams = ObjectParams(),
    keep_existing: bool = True,
) -> Classification:
    """Classify a survey's points (or keep the file's classes) and make its DTM.

    ``ground`` chooses the ground filter: ``"smrf"`` (:func:`ground_filter`) or ``"csf"``
    (:func:`csf_ground`). Points with non-finite coordinates become noise (class 7), as do
    low outliers. Raises :class:`~recon.errors.ReconInputError` subclasses on unusable input.
    """
    t0 = time.perf_counter()
    pts, finite = _validate(xyz)
    n = pts.shape[0]
    for name, arr in (("return_number", return_number),
                      ("number_of_returns", number_of_returns),
                      ("classification", classification)):
        if arr is not None and len(arr) != n:
            raise InvalidPointsError(f"{name} has {len(arr)} values for {n} points")
    warnings: list[str] = []
    if not finite.all():
        warnings.append(f"{int((~finite).sum())} points with non-finite coordinates: noise")
    good = pts if finite.all() else pts[finite]
    # area covered counted in 5 m cells: 1 m cells would miss the gaps between the points of
    # a sparse survey and overstate its density
    flat = _grid_index(good[:, 0], good[:, 1], 5.0)[0]
    covered = np.unique(flat).size * 25.0
    del flat  # the classification's peak comes later: nothing of it is held there
    density = good.shape[0] / max(covered, 1.0)
    if density < MIN_DENSITY:
        warnings.append(
            f"sparse survey: {density:.2f} points/m2 (under {MIN_DENSITY:g}): classes and "
            "terrain are coarse, roofs can be reconstructed at LoD1.2 only"
        )
    seconds: dict[str, float] = {}
    decision = (
        existing_classification(classification) if keep_existing
        else ClassificationDecision(False, "asked to classify anew", {})
    )
    classes = np.full(n, UNCLASSIFIED, dtype=np.uint8)
    classes[~finite] = NOISE
    # a coarser grid keeps several points per cell in sparse surveys
    cell = float(np.clip(np.sqrt(4.0 / max(density, 1e-6)), 1.0, 5.0))
    if decision.kept:
        assert classification is not None
        classes = np.asarray(classification, dtype=np.uint8).copy()
        classes[~finite] = NOISE
        is_ground = classes[finite] == GROUND
    else:
        t = time.perf_counter()
        if ground == "csf":
            is_ground = csf_ground(good, cloth_resolution=max(cell, 0.5))
            low = np.zeros(good.shape[0], dtype=bool)
        elif ground == "smrf":
            is_ground, low = ground_filter(good, cell=cell)
        else:
            raise ValueError(f"unknown ground filter {ground!r}: 'smrf' or 'csf'")
        seconds["ground"] = time.perf_counter() - t
    t = time.perf_counter()
    dtm = build_dtm(good[is_ground], cell=max(dtm_cell, cell if density < MIN_DENSITY else 0),
                    bounds=(good[:, 0].min(), good[:, 1].min(), good[:, 0].max(),
                            good[:, 1].max()), crs=crs)
    hag = np.full(n, np.nan, dtype=np.float32)
    # float32 (micrometres at these heights) and no float64 copy held through the objects'
    # pass, where the classification peaks
    hag[finite] = good[:, 2] - dtm.height(good[:, 0], good[:, 1])
    hag_good = hag if finite.all() else hag[finite]
    seconds["dtm"] = time.perf_counter() - t
    if decision.kept:
        seconds["total"] = time.perf_counter() - t0
        return Classification(classes, hag, dtm, decision, density, warnings, seconds)
    t = time.perf_counter()
    rn = None if return_number is None else np.asarray(return_number)[finite]
    nr = None if number_of_returns is None else np.asarray(number_of_returns)[finite]
    cand = ~is_ground & ~low & (hag_good > params.min_height)
    building = classify_objects(good, hag_good, cand, density, rn, nr, params)
    # a pulse that went on past a point under a roof's edge passed through foliage, not a wall
    passed = np.zeros(good.shape[0], bool) if rn is None or nr is None else rn < nr
    building |= _walls(good, building, ~is_ground & ~low & ~building & ~passed, params.wall_cell)
    sub = np.full(good.shape[0], UNCLASSIFIED, dtype=np.uint8)
    sub[is_ground] = GROUND
    sub[cand] = HIGH_VEG
    sub[building] = BUILDING
    lowobj = ~is_ground & ~low & ~cand
    # low non-ground points: vegetation if the pulse went through them, else "other"
    if nr is not None and rn is not None:
        leafy = lowobj & (nr > 1)
        sub[leafy & (hag_good >= 0.5)] = MEDIUM_VEG
        sub[leafy & (hag_good < 0.5)] = LOW_VEG
    sub[low] = NOISE
    classes[finite] = sub
    seconds["objects"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return Classification(classes, hag, dtm, decision, density, warnings, seconds)


def ground_total_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """ISPRS total error: the share of points on the wrong side of ground / non-ground."""
    return float(np.mean((np.asarray(predicted) == GROUND) != (np.asarray(truth) == GROUND)))


def class_f1(predicted: np.ndarray, truth: np.ndarray, cls: int = BUILDING) -> float:
    """Point-wise F1 score of one class (building by default) against a reference."""
    p, t = np.asarray(predicted) == cls, np.asarray(truth) == cls
    tp = int((p & t).sum())
    return 2 * tp / max(int(p.sum() + t.sum()), 1)
