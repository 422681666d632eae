"""Ingest of CIM files (CityJSON, CityJSONSeq, CityGML): objects into ``city_objects`` with
history, then a new version of the one city tileset built from the stored rows.

The load and the tile build share one transaction: if the file turns out to be unreadable
halfway, has no CRS, or tiling fails, nothing is stored and no version is published. Objects
with invalid geometry do not stop the load: they are listed in the job report with their id
and reason, and so is every object some of whose geometry is neither stored nor tiled
(points, curves, implicit geometry), with its type. City ingests are serialised by an
advisory lock, so two concurrent jobs never publish tilesets that each miss the other's
objects.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, exists, func, select, text

from readers.cim import CityFileError, ParseReport, iter_city_objects
from service.cim.store import LoadResult, load_objects
from service.cim.tables import CITY_TILESET, city_objects
from service.cim.tiles import build_city_tileset
from service.jobs.context import JobContext, JobFailed, load_dataset
from service.jobs.publish import DatasetOutcome, publish
from service.tilesets.storage import tile_store
from service.tilesets.store import TilesetVersion, begin_version, fail_version

MAX_TRIANGLES_PER_TILE = 100_000
MAX_REPORTED_PROBLEMS = 1000  # the report stays readable; the count says how many there were
LOCK_KEY = "twinbase:city_objects"


def ingest_city(ctx: JobContext) -> dict[str, Any]:
    row = load_dataset(ctx)
    options = {**(row.options or {}), **ctx.params}
    report = ParseReport()
    started = time.monotonic()
    tv: TilesetVersion | None = None
    try:
        with ctx.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(LOCK_KEY))))
            ctx.progress("reading", 0, None)
            objects = iter_city_objects(
                Path(row.source_path), options.get("crs"), report=report,
                vertical=options.get("vertical"),
                progress=lambda n: ctx.progress("reading", n, None))
            loaded = load_objects(conn, objects, row.id, report.problems)
            ctx.report.update(_parse_report(report, loaded))
            if loaded.inserted == 0:
                raise JobFailed(_nothing_loaded(report))
            loaded_s = round(time.monotonic() - started, 3)
            summary = _dataset_summary(conn, row.id)
            tile_stats = None
            if city_has_geometry(conn):  # else there is nothing to draw (yet)
                tv = begin_version(ctx.bookkeeping, tile_store(ctx.settings), CITY_TILESET, "mesh",
                                   dataset_id=row.id, job_id=ctx.job_id)
                tile_stats = build_tiles(ctx, conn, tv)
            stats = {"format": report.format, "version": report.version,
                     "objects": loaded.inserted, "with_geometry": loaded.with_geometry,
                     "superseded": loaded.superseded, "unchanged": loaded.unchanged,
                     "problems": len(report.problems),
                     "skipped_geometry": len(report.skipped_geometry),
                     "by_type": summary["by_type"], "lods": summary["lods"],
                     "tileset": tile_stats and tile_stats["tileset"],
                     "tileset_version": tv and tv.version}
            ctx.progress("publishing", 1, 1)
            # the objects, the dataset, the switch of the city tileset and the job's
            # success commit together, and only while this attempt owns the job
            publish(ctx, conn, dataset=DatasetOutcome(
                stats=stats, crs=report.crs, height_note=report.height_note,
                footprint=summary["footprint"], bounds3d=summary["bounds3d"]),
                version=tv, tileset_stats=tile_stats,
                report={"tiles": tile_stats, "load_s": loaded_s,
                        "total_s": round(time.monotonic() - started, 3)})
    except CityFileError as exc:
        _fail(ctx, tv)
        raise JobFailed(str(exc)) from exc
    except BaseException:
        _fail(ctx, tv)
        raise
    return ctx.report


def city_has_geometry(conn: Connection) -> bool:
    c = city_objects.c
    return bool(conn.execute(select(exists().where(c.valid_to.is_(None),
                                                   c.geom.is_not(None)))).scalar())


def build_tiles(ctx: JobContext, conn: Connection, tv: TilesetVersion) -> dict[str, Any]:
    """A new version of the city tileset from the rows ``conn`` sees (this load included)."""
    tiles = build_city_tileset(
        conn, tv.path, tile_store(ctx.settings), max_triangles_per_tile=MAX_TRIANGLES_PER_TILE,
        progress=lambda stage, done, total: ctx.progress(f"tiling: {stage}", done, total))
    return {
        "tileset": f"/tiles/{CITY_TILESET}/tileset.json", "version": tv.version,
        "objects": tiles.features, "tiles": tiles.tiles, "bytes": tiles.bytes,
        "triangles": tiles.triangles, "vertices": tiles.vertices,
        "tiles_rewritten": len(tiles.diff.rewritten),
        "tiles_unchanged": len(tiles.diff.unchanged),
        "tiles_removed": len(tiles.diff.removed),
    }


def _fail(ctx: JobContext, tv: TilesetVersion | None) -> None:
    if tv is not None:
        fail_version(ctx.engine, tv)


def _parse_report(report: ParseReport, loaded: LoadResult) -> dict[str, Any]:
    problems = [{"object_id": p.object_id, "reason": p.reason}
                for p in report.problems[:MAX_REPORTED_PROBLEMS]]
    skipped = [{"object_id": s.object_id, "type": s.object_type, "reason": s.reason}
               for s in report.skipped_geometry[:MAX_REPORTED_PROBLEMS]]
    return {
        "format": report.format, "format_version": report.version, "crs": report.crs,
        "crs_source": report.crs_source, "height_note": report.height_note,
        "objects": loaded.inserted, "with_geometry": loaded.with_geometry,
        "superseded": loaded.superseded, "unchanged": loaded.unchanged,
        "problem_count": len(report.problems),
        "problems": problems,
        # objects loaded without some of their geometry (points, curves, implicit geometry)
        "skipped_geometry_count": len(report.skipped_geometry),
        "skipped_geometry": skipped,
    }


def _nothing_loaded(report: ParseReport) -> str:
    if not report.problems:
        return f"the {report.format or 'city'} file holds no city objects"
    first = "; ".join(f"{p.object_id}: {p.reason}" for p in report.problems[:3])
    return (f"none of the city objects in the file is valid ({len(report.problems)} problems, "
            f"first: {first})")


def _dataset_summary(conn: Connection, dataset_id: int) -> dict[str, Any]:
    """Types, LoDs, footprint and 3D bounds of what this dataset loaded (from the rows)."""
    c = city_objects.c
    mine = (c.dataset_id == dataset_id, c.valid_to.is_(None))
    by_type = dict(conn.execute(select(c.type, func.count()).where(*mine)
                                .group_by(c.type).order_by(c.type)).all())
    lods = dict(conn.execute(select(func.coalesce(c.lod, "none"), func.count()).where(*mine)
                             .group_by(c.lod).order_by(c.lod)).all())
    # Union of the footprints (one GEOS call for all), evaluated inside the UPDATE.
    footprint = select(func.ST_Multi(func.ST_CollectionExtract(
        func.ST_UnaryUnion(func.ST_Collect(c.footprint)), 3))).where(*mine).scalar_subquery()
    ext = conn.execute(text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_ZMin(e), ST_XMax(e), ST_YMax(e), ST_ZMax(e) "
        "FROM (SELECT ST_3DExtent(geom) AS e FROM city_objects "
        "      WHERE dataset_id = :d AND valid_to IS NULL) s"), {"d": dataset_id}).first()
    bounds = None
    if ext is not None and ext[0] is not None:
        bounds = {"min": [round(v, 9) for v in ext[:3]], "max": [round(v, 9) for v in ext[3:]]}
    return {"by_type": by_type, "lods": lods, "bounds3d": bounds, "footprint": footprint}
