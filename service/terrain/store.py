"""The DTMs kept with the surveys: made ready from a modelled survey, saved in its publishing
transaction, and read back as ground heights at any lon / lat, newest survey first.

Order: the survey acquired last wins where DTMs overlap (``acquired_at``; a survey without
one counts as older than any with one), then the higher dataset id (uploaded later).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from geoalchemy2.elements import WKTElement
from pyproj import CRS
from shapely.geometry import MultiPolygon
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from recon.terrain import Dtm
from service.terrain.tables import survey_terrain
from tiler.crs import cached_transformer
from tiler.terrain.grid import (
    ENCODING,
    NODATA,
    GridStack,
    HeightGrid,
    coverage,
    ellipsoidal_offset,
    pack_heights,
    unpack_heights,
)

t = survey_terrain.c
NEWEST_FIRST = (t.acquired_at.desc().nulls_last(), t.dataset_id.desc())
# decoded grids kept per process: a tile or a route check reads the same few grids again
# and again, and a 1 km2 survey at 0.5 m is 16 MB of heights to inflate
GRID_CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class PreparedDtm:
    """A survey's DTM as it will be stored (computed outside the publishing transaction)."""

    crs: str
    x0: float
    y0: float
    cell: float
    rows: int
    cols: int
    heights: bytes
    min_h: float | None
    max_h: float | None
    footprint_wkt: str
    covered_share: float

    def summary(self) -> dict[str, Any]:
        return {"crs": self.crs if len(self.crs) < 40 else "WKT", "cell_m": self.cell,
                "shape": [self.rows, self.cols], "covered_share": round(self.covered_share, 4),
                "bytes": len(self.heights), "heights": "WGS 84 ellipsoidal",
                "min_h": self.min_h, "max_h": self.max_h}


def _crs_text(crs: CRS) -> str:
    auth = crs.to_authority(min_confidence=100)
    return f"{auth[0]}:{auth[1]}" if auth else crs.to_wkt()


def prepare_dtm(dtm: Dtm, crs: CRS, to_wgs84: Callable[..., tuple[np.ndarray, ...]],
                points_xy: np.ndarray) -> PreparedDtm:
    """The DTM of a survey (heights in the survey's metric frame, made ellipsoidal here the
    way its tiles were: ``to_wgs84`` is the frame's), cut to where its points reach."""
    rows, cols = dtm.shape
    z = dtm.z.astype(np.float64) + ellipsoidal_offset(dtm.shape, dtm.x0, dtm.y0, dtm.cell,
                                                      to_wgs84)
    mask, outline = coverage(dtm.shape, dtm.x0, dtm.y0, dtm.cell, points_xy)
    z[~mask] = np.nan
    to_ll = cached_transformer(crs, "EPSG:4326")
    seg = shapely.segmentize(outline, max(dtm.cell * 20, 10.0))
    ll = shapely.transform(seg, lambda c: np.column_stack(to_ll.transform(c[:, 0], c[:, 1])))
    parts = [p for p in shapely.get_parts(ll) if p.area > 0]
    footprint = MultiPolygon(parts)
    valid = z[mask]
    return PreparedDtm(
        crs=_crs_text(crs), x0=dtm.x0, y0=dtm.y0, cell=dtm.cell, rows=rows, cols=cols,
        heights=pack_heights(z), min_h=float(valid.min()) if valid.size else None,
        max_h=float(valid.max()) if valid.size else None, footprint_wkt=footprint.wkt,
        covered_share=float(mask.mean()))


def save_dtm(conn: Connection, dataset_id: int, acquired_at: datetime | None,
             prepared: PreparedDtm) -> dict[str, Any]:
    """Keep ``prepared`` as the DTM of survey ``dataset_id`` (replacing an earlier one), in
    the caller's transaction; what the job report says of it."""
    if not prepared.footprint_wkt or prepared.min_h is None:
        conn.execute(survey_terrain.delete().where(t.dataset_id == dataset_id))
        return {**prepared.summary(), "stored": False,
                "reason": "no cell of the DTM lies where the survey has points"}
    values = {"dataset_id": dataset_id, "acquired_at": acquired_at, "crs": prepared.crs,
              "x0": prepared.x0, "y0": prepared.y0, "cell": prepared.cell,
              "rows": prepared.rows, "cols": prepared.cols, "nodata": NODATA,
              "encoding": ENCODING, "heights": prepared.heights, "min_h": prepared.min_h,
              "max_h": prepared.max_h,
              "footprint": WKTElement(prepared.footprint_wkt, srid=4326)}
    stmt = pg_insert(survey_terrain).values(values)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[t.dataset_id],
        set_={**{k: stmt.excluded[k] for k in values if k != "dataset_id"},
              "stored_at": func.now()}))
    return {**prepared.summary(), "stored": True}


# --- reading -------------------------------------------------------------------------


@dataclass(frozen=True)
class GridRow:
    dataset_id: int
    stored_at: datetime
    crs: str
    x0: float
    y0: float
    cell: float
    rows: int
    cols: int
    nodata: float
    encoding: str


_META = (t.dataset_id, t.stored_at, t.crs, t.x0, t.y0, t.cell, t.rows, t.cols, t.nodata,
         t.encoding)


def _box(west: float, south: float, east: float, north: float) -> Any:
    return func.ST_MakeEnvelope(west, south, east, north, 4326)


def overlapping(west: float, south: float, east: float, north: float) -> Any:
    """The DTMs whose footprint meets a lon / lat box, newest first (no heights)."""
    return (select(*_META).where(func.ST_Intersects(t.footprint,
                                                    _box(west, south, east, north)))
            .order_by(*NEWEST_FIRST))


def overlapping_geom(wkb: bytes) -> Any:
    return (select(*_META)
            .where(func.ST_Intersects(t.footprint, func.ST_GeomFromWKB(wkb, 4326)))
            .order_by(*NEWEST_FIRST))


# every DTM's data box and cell (for layer.json), and what identifies their contents
LAYER = select(t.dataset_id, t.stored_at, t.cell, func.ST_XMin(t.footprint).label("w"),
               func.ST_YMin(t.footprint).label("s"), func.ST_XMax(t.footprint).label("e"),
               func.ST_YMax(t.footprint).label("n")).order_by(*NEWEST_FIRST)


def version_of(rows: list[Any]) -> str:
    """A short tag of a set of DTM rows in their order: it changes when one is added,
    replaced or removed."""
    text = ";".join(f"{r.dataset_id}@{r.stored_at.isoformat()}" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _GridCache:
    """Decoded grids by (dataset id, stored at), least recently used out first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.items: OrderedDict[tuple[int, datetime], HeightGrid] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[int, datetime]) -> HeightGrid | None:
        with self.lock:
            grid = self.items.get(key)
            if grid is not None:
                self.items.move_to_end(key)
            return grid

    def put(self, key: tuple[int, datetime], grid: HeightGrid) -> None:
        with self.lock:
            if key in self.items:
                return
            self.items[key] = grid
            self.used += grid.z.nbytes
            while self.used > self.limit and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.used -= old.z.nbytes


GRIDS = _GridCache(GRID_CACHE_BYTES)


def _decode(row: GridRow, blob: bytes) -> HeightGrid:
    if row.encoding != ENCODING:
        raise ValueError(f"DTM of dataset {row.dataset_id} is packed as {row.encoding!r}, "
                         f"which this version does not read")
    z = unpack_heights(blob, row.rows, row.cols, row.nodata)
    return HeightGrid(row.crs, row.x0, row.y0, row.cell, z)


async def load_stack(conn: AsyncConnection, rows: list[Any]) -> GridStack:
    """The grids of ``rows`` (from :func:`overlapping`), decoded once per process."""
    metas = [GridRow(**{k: r._mapping[k] for k in GridRow.__dataclass_fields__}) for r in rows]
    missing = [m for m in metas if GRIDS.get((m.dataset_id, m.stored_at)) is None]
    if missing:
        blobs = (await conn.execute(
            select(t.dataset_id, t.stored_at, t.heights)
            .where(t.dataset_id.in_([m.dataset_id for m in missing])))).all()
        got = {(b.dataset_id, b.stored_at): bytes(b.heights) for b in blobs}
        for m in missing:
            blob = got.get((m.dataset_id, m.stored_at))
            if blob is not None:  # replaced since: the caller's rows are already stale
                grid = await run_in_threadpool(_decode, m, blob)
                GRIDS.put((m.dataset_id, m.stored_at), grid)
    found = [(m.dataset_id, GRIDS.get((m.dataset_id, m.stored_at))) for m in metas]
    return GridStack([g for _, g in found if g is not None],
                     ids=[i for i, g in found if g is not None])


async def ground_stack(conn: AsyncConnection, area_lonlat: shapely.Geometry) -> GridStack:
    """Every DTM that meets an area (lon / lat), newest first."""
    rows = (await conn.execute(overlapping_geom(shapely.to_wkb(area_lonlat)))).all()
    return await load_stack(conn, rows)


async def sample_heights(conn: AsyncConnection, lon: np.ndarray, lat: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Ground heights (WGS 84 ellipsoidal m) at lon / lat points from the stored DTMs,
    newest survey first, NaN where none has data; and the dataset id each came from
    (-1 for none)."""
    lon, lat = np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))
    if not lon.size:
        return np.empty(0), np.empty(0, np.int64)
    rows = (await conn.execute(overlapping(float(lon.min()), float(lat.min()),
                                           float(lon.max()), float(lat.max())))).all()
    stack = await load_stack(conn, rows)
    h, which = stack.sample(lon, lat)
    ids = np.array([*stack.ids, -1], np.int64)
    return h, ids[which]


__all__ = ["GRIDS", "LAYER", "PreparedDtm", "ground_stack", "load_stack",
           "overlapping", "prepare_dtm", "sample_heights", "save_dtm", "version_of"]
