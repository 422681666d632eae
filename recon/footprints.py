"""Building footprints: read from a layer given with the job, or derived from building points.

Footprints come, in order of trust, from a layer given with the job (any OGR source: GeoJSON,
GeoPackage, SQLite, Shapefile... in any CRS, reprojected here to the survey's CRS), from the
current buildings of the city model (the service passes those in as polygons, see
:func:`footprints_from_polygons`), or from the building-class points themselves
(:func:`derive_footprints`: cluster, outline, regularise).

Every footprint is a :class:`Footprint` with an id, one valid shapely ``Polygon`` (holes
allowed), its source and the problems met on the way (a repaired ring, say). Footprints that
cannot be used are not raised as errors: they are listed in :attr:`FootprintSet.skipped` with
the reason, and the rest is used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from scipy import ndimage
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from recon.errors import ReconInputError

__all__ = [
    "Footprint",
    "FootprintLayerError",
    "FootprintSet",
    "SkippedFootprint",
    "derive_footprints",
    "dominant_direction",
    "footprints_from_polygons",
    "read_footprints",
    "refine_direction",
    "regularise_outline",
]

FootprintSource = Literal["given", "model", "derived"]

#: parts of a repaired polygon smaller than this (m2) are slivers of the repair, not building
_SLIVER_M2 = 0.5


class FootprintLayerError(ReconInputError):
    code = "footprint_layer"


@dataclass
class Footprint:
    """One building's footprint in the survey's CRS."""

    id: str
    polygon: Polygon
    source: FootprintSource
    problems: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class SkippedFootprint:
    id: str
    reason: str


@dataclass
class FootprintSet:
    """Usable footprints plus the ones skipped, each with its reason."""

    footprints: list[Footprint]
    skipped: list[SkippedFootprint] = field(default_factory=list)
    crs: str | None = None

    def __len__(self) -> int:
        return len(self.footprints)


def _repair(geom: shapely.Geometry | None, fid: str
            ) -> tuple[list[Polygon], list[str], str | None]:
    """Polygons of one input feature, the problems repaired, or the reason to skip it."""
    if geom is None or geom.is_empty:
        return [], [], "empty or missing geometry"
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return [], [], f"a {geom.geom_type}, not a polygon"
    problems: list[str] = []
    if geom.has_z:
        geom = shapely.force_2d(geom)
    if not geom.is_valid:
        why = shapely.is_valid_reason(geom)
        fixed = shapely.make_valid(geom)
        parts = [p for p in shapely.get_parts(fixed)
                 if p.geom_type == "Polygon" and p.area >= _SLIVER_M2]
        if len(parts) != 1:
            return [], [], (f"invalid polygon ({why}); the repair gives {len(parts)} polygons, "
                            "not one: fix the ring in the source layer")
        problems.append(f"invalid polygon ({why}) repaired")
        return [orient(parts[0])], problems, None
    parts = [p for p in shapely.get_parts(geom) if p.area >= _SLIVER_M2]
    if not parts:
        return [], [], "polygon of no area"
    if len(parts) > 1:
        problems.append(f"a multipolygon of {len(parts)} parts, used as separate footprints")
    return [orient(p) for p in parts], problems, None


def footprints_from_polygons(polygons: Iterable[shapely.Geometry | None],
                             ids: Iterable[Any] | None = None, *,
                             source: FootprintSource = "model",
                             attributes: Sequence[dict[str, Any]] | None = None
                             ) -> FootprintSet:
    """Footprints from polygons already in the survey's CRS (the city model's buildings).

    Invalid polygons are repaired with ``make_valid`` when that gives one polygon; otherwise
    they are skipped with the reason. A multipolygon gives one footprint per part
    (``id#k``).
    """
    polys = list(polygons)
    id_list = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(polys))]
    if len(id_list) != len(polys):
        raise ReconInputError(f"{len(polys)} polygons but {len(id_list)} ids")
    out: list[Footprint] = []
    skipped: list[SkippedFootprint] = []
    for k, (geom, fid) in enumerate(zip(polys, id_list, strict=True)):
        parts, problems, reason = _repair(geom, fid)
        if reason is not None:
            skipped.append(SkippedFootprint(fid, reason))
            continue
        attrs = dict(attributes[k]) if attributes is not None else {}
        for j, part in enumerate(parts):
            pid = fid if len(parts) == 1 else f"{fid}#{j + 1}"
            out.append(Footprint(pid, part, source, list(problems), attrs))
    return FootprintSet(out, skipped)


def read_footprints(path: str | Path, target_crs: str | CRS, *, layer: str | int | None = None,
                    id_field: str | None = None, source_crs: str | CRS | None = None,
                    bbox: tuple[float, float, float, float] | None = None) -> FootprintSet:
    """Read a footprint layer from any OGR source and reproject it to ``target_crs``.

    ``source_crs`` is needed only when the layer declares none. ``id_field`` names the
    attribute that identifies a building (default: the layer's feature id, else its row).
    ``bbox`` (in ``target_crs``) keeps only footprints that intersect it.
    """
    import pyogrio  # imported here: the rest of the library does not need GDAL
    import pyogrio.raw

    path = Path(path)
    if not path.exists():
        raise FootprintLayerError(f"footprint layer {path} does not exist")
    try:
        meta, fids, wkb, field_data = pyogrio.raw.read(path, layer=layer)
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, ...
        raise FootprintLayerError(
            f"cannot read footprint layer {path.name}: {exc}. Give a GeoJSON, GeoPackage, "
            "Shapefile or another source GDAL reads, and name the layer if there are several"
        ) from exc
    if wkb is None:
        raise FootprintLayerError(f"footprint layer {path.name} has no geometry column")
    try:
        target = CRS.from_user_input(target_crs)
        declared = meta.get("crs")
        src = CRS.from_user_input(source_crs) if source_crs is not None else (
            CRS.from_user_input(declared) if declared else None)
    except CRSError as exc:
        raise FootprintLayerError(f"unknown CRS for footprint layer {path.name}: {exc}") from exc
    if src is None:
        raise FootprintLayerError(
            f"footprint layer {path.name} declares no CRS: give its CRS (e.g. EPSG:28992)")
    geoms = shapely.from_wkb(wkb, on_invalid="warn")
    names = list(meta["fields"])
    if id_field is not None:
        if id_field not in names:
            raise FootprintLayerError(
                f"footprint layer {path.name} has no field {id_field!r}; it has {names}")
        ids = [str(v) for v in field_data[names.index(id_field)]]
    elif fids is not None:
        ids = [str(v) for v in fids]
    else:
        ids = [str(i) for i in range(len(geoms))]
    attrs = [{n: _plain(field_data[j][i]) for j, n in enumerate(names)}
             for i in range(len(geoms))]
    if not src.equals(target):
        tf = Transformer.from_crs(src, target, always_xy=True)
        geoms = np.array([None if g is None else shapely.transform(
            g, lambda c: np.column_stack(tf.transform(c[:, 0], c[:, 1]))) for g in geoms],
            dtype=object)
    if bbox is not None:
        box = shapely.box(*bbox)
        keep = [i for i, g in enumerate(geoms) if g is not None and g.intersects(box)]
        geoms = [geoms[i] for i in keep]
        ids = [ids[i] for i in keep]
        attrs = [attrs[i] for i in keep]
    fs = footprints_from_polygons(geoms, ids, source="given", attributes=attrs)
    fs.crs = target.to_string()
    return fs


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- derived footprints -------------------------------------------------------------------


def dominant_direction(polygon: Polygon) -> float:
    """The building's main axis in radians in [0, pi/2): edge directions weighted by length.

    Angles are taken modulo 90 degrees (walls meet mostly at right angles) and averaged on
    the circle of 4 * angle, so 1 and 89 degrees average to 0, not 45.
    """
    xy = np.asarray(polygon.exterior.coords)
    d = np.diff(xy, axis=0)
    length = np.hypot(d[:, 0], d[:, 1])
    ang = np.arctan2(d[:, 1], d[:, 0])
    c = (length * np.cos(4 * ang)).sum()
    s = (length * np.sin(4 * ang)).sum()
    a = (math.atan2(s, c) / 4) % (math.pi / 2)
    return 0.0 if a > math.pi / 2 - 1e-9 else float(a)


def refine_direction(hull: Polygon) -> float:
    """The building's axis: the direction of the hull's minimum rotated rectangle.

    A concave hull's edges zigzag along the walls, so their length-weighted mean direction
    (:func:`dominant_direction`) can be degrees off, which moves the far end of a long wall by
    decimetres; the minimum rectangle around the hull is exact for rectangles and L shapes.
    The hull's own direction is the fallback when the rectangle degenerates.
    """
    mrr = shapely.minimum_rotated_rectangle(hull)
    if isinstance(mrr, Polygon) and mrr.area > 0:
        return dominant_direction(mrr)
    return dominant_direction(hull)


def _rotate(xy: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.column_stack([xy[:, 0] * c - xy[:, 1] * s, xy[:, 0] * s + xy[:, 1] * c])


def mask_boxes(mask: np.ndarray, u0: float, v0: float, cell: float) -> list[Polygon]:
    """The True cells of a grid (row-major, v rows, cell size ``cell`` from ``u0, v0``) as one
    box per run of cells along a row: far fewer polygons to union than one per cell."""
    boxes = []
    for r in range(mask.shape[0]):
        row = mask[r]
        if not row.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.view(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            boxes.append(shapely.box(u0 + a * cell, v0 + r * cell, u0 + b * cell,
                                     v0 + (r + 1) * cell))
    return boxes


def _mask_polygon(mask: np.ndarray, u0: float, v0: float, cell: float) -> Polygon | None:
    """Union of the True cells (row-major, v rows) as a polygon; the largest part if several."""
    boxes = mask_boxes(mask, u0, v0, cell)
    if not boxes:
        return None
    merged = shapely.union_all(boxes)
    parts = [p for p in shapely.get_parts(merged) if p.geom_type == "Polygon"]
    if not parts:
        return None
    return max(parts, key=lambda p: p.area)


def regularise_outline(xy: np.ndarray, angle: float, *, cell: float = 0.5,
                       close_cells: int = 2) -> Polygon | None:
    """An outline of the points with every edge parallel or orthogonal to ``angle``.

    The points are rotated into the building's own axes and rasterised at ``cell``; the
    occupied cells, closed over gaps of ``close_cells`` and with holes filled, are the
    outline. Its edges are orthogonal by construction; they lie within half a cell of the
    outermost points, half a point spacing inside the true walls on average.
    """
    uv = _rotate(xy, -angle)
    u0, v0 = uv.min(axis=0) - (close_cells + 1) * cell
    iu = ((uv[:, 0] - u0) / cell).astype(np.int64)
    iv = ((uv[:, 1] - v0) / cell).astype(np.int64)
    shape = (int(iv.max()) + close_cells + 2, int(iu.max()) + close_cells + 2)
    mask = np.zeros(shape, dtype=bool)
    mask[iv, iu] = True
    st = np.ones((3, 3), dtype=bool)
    mask = ndimage.binary_closing(mask, st, iterations=close_cells)
    mask = ndimage.binary_fill_holes(mask)
    # removes one-cell spurs (a wall return or a gutter) without rounding square corners
    mask = ndimage.binary_opening(mask, st, iterations=1)
    poly = _mask_polygon(mask, u0, v0, cell)
    if poly is None:
        return None
    poly = shapely.simplify(poly, cell * 0.01)
    back = shapely.transform(poly, lambda c: _rotate(c, angle))
    return orient(back) if isinstance(back, Polygon) else None


def derive_footprints(xy: np.ndarray, *, cell: float = 1.0, min_area: float = 15.0,
                      min_points: int = 30, outline_cell: float = 0.5,
                      hull_ratio: float = 0.1, id_prefix: str = "derived-"
                      ) -> FootprintSet:
    """Footprints from building-class points: cluster, outline, regularise.

    - cluster: the points are binned at ``cell`` and the occupied cells (closed over
      one-cell gaps) split into 8-connected components (a grid form of DBSCAN with
      eps = one cell);
    - outline: a concave hull (``shapely.concave_hull``) of each cluster gives its wall
      directions, weighted by length, hence the dominant direction;
    - regularise: :func:`regularise_outline` in that direction.

    Clusters under ``min_area`` m2 or ``min_points`` points are skipped (sheds, cars, noise),
    each with the reason.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise ReconInputError("building points must be an (N, 2) or (N, 3) array")
    xy = xy[:, :2]
    xy = xy[np.isfinite(xy).all(axis=1)]
    out: list[Footprint] = []
    skipped: list[SkippedFootprint] = []
    if len(xy) == 0:
        return FootprintSet(out, skipped)
    x0, y0 = xy.min(axis=0) - 2 * cell
    ix = ((xy[:, 0] - x0) / cell).astype(np.int64)
    iy = ((xy[:, 1] - y0) / cell).astype(np.int64)
    grid = np.zeros((int(iy.max()) + 3, int(ix.max()) + 3), dtype=bool)
    grid[iy, ix] = True
    grid = ndimage.binary_closing(grid, np.ones((3, 3), dtype=bool))
    labels, n = ndimage.label(grid, structure=np.ones((3, 3), dtype=int))
    lab = labels[iy, ix]
    order = np.argsort(lab, kind="stable")
    bounds = np.searchsorted(lab[order], np.arange(1, n + 2))
    for k in range(n):
        idx = order[bounds[k]:bounds[k + 1]]
        fid = f"{id_prefix}{len(out) + len(skipped) + 1}"
        if len(idx) < min_points:
            skipped.append(SkippedFootprint(fid, f"a cluster of {len(idx)} points, fewer than "
                                                  f"{min_points}"))
            continue
        pts = xy[idx]
        hull = shapely.concave_hull(shapely.multipoints(pts), ratio=hull_ratio)
        if not isinstance(hull, Polygon) or hull.area < min_area:
            skipped.append(SkippedFootprint(fid, f"a cluster of {hull.area:.1f} m2, under "
                                                  f"{min_area} m2"))
            continue
        angle = refine_direction(hull)
        poly = regularise_outline(pts, angle, cell=outline_cell)
        if poly is None or not poly.is_valid or poly.area < min_area:
            skipped.append(SkippedFootprint(fid, "no valid outline after regularisation"))
            continue
        out.append(Footprint(fid, poly, "derived", [],
                             {"points": len(idx), "hull_area": round(hull.area, 2)}))
    return FootprintSet(out, skipped)


def as_polygon(geom: shapely.Geometry) -> Polygon:
    """The largest polygon of ``geom`` (for callers holding multipolygons or collections)."""
    if isinstance(geom, Polygon):
        return geom
    return max((p for p in shapely.get_parts(geom) if isinstance(p, Polygon)),
               key=lambda p: p.area)
