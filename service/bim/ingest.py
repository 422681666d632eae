"""Ingest of BIM models (IFC2X3, IFC4, IFC4X3; .ifc, or zipped as .ifczip): elements placed on
the globe, as 3D Tiles with one pickable feature per element and as ``bim_elements`` rows.

Job params (or upload options): ``anchor`` (lon, lat, height, rotation; always wins over what
the file says), ``crs`` (the projected CRS of an IfcMapConversion that names none),
``vertical`` (``orthometric``, the default for IFC heights, or ``ellipsoidal``),
``max_triangles_per_tile``, ``geometry_processes`` and ``geometry_library``
(``hybrid-cgal-simple-opencascade``, the default, or ``opencascade``, IfcConvert's kernel).

Elements whose geometry fails are listed in the job report with their GlobalId and reason;
the rest loads. A file that cannot be used fails the job with the reason, and nothing that
was there before (rows, current tileset) is touched.
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ifcopenshell.geom
import ifcopenshell.util.element
import ifcopenshell.util.unit  # noqa: F401  (loaded before a worker freezes its heap)
from shapely import union_all
from shapely.errors import GEOSException
from shapely.geometry import MultiPolygon, Polygon

from readers.ifc.archive import unpacked_ifc
from readers.ifc.errors import IfcInputError
from readers.ifc.geometry import DEFAULT_GEOMETRY_LIBRARY, GEOMETRY_LIBRARIES, shared_pool
from readers.ifc.georef import parse_anchor
from readers.ifc.model import read_bim
from service.bim.mesh import mesh_features, palette
from service.bim.store import replace_elements
from service.jobs.context import JobContext, JobFailed, load_dataset
from service.jobs.publish import DatasetOutcome, publish
from service.tilesets.storage import tile_store
from service.tilesets.store import begin_version, fail_version
from tiler.mesh import tile_features

log = logging.getLogger(__name__)

DEFAULT_MAX_TRIANGLES = 50_000
MAX_REPORTED_FAILURES = 500


def _int_param(options: dict[str, Any], key: str, default: int | None, lo: int, hi: int
               ) -> int | None:
    value = options.get(key)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise JobFailed(f"{key} must be an integer, not {value!r}") from exc
    if not lo <= number <= hi:
        raise JobFailed(f"{key} must be between {lo} and {hi}")
    return number


def _dataset_footprint(elements) -> MultiPolygon:
    parts = [e.footprint for e in elements if not e.footprint.is_empty]
    try:
        merged = union_all(parts)
        if isinstance(merged, MultiPolygon):
            # Element outlines that touch in metres may miss by a hair in degrees; snapped to
            # ~0.1 mm they close. Only then: the snapping union is several times slower
            # (benchmarks/RESULTS.md), and most buildings come out as one polygon without it.
            merged = union_all(parts, grid_size=1e-9)
    except GEOSException:
        merged = union_all(parts).convex_hull
    if not isinstance(merged, MultiPolygon | Polygon):
        merged = merged.convex_hull
    return merged if isinstance(merged, MultiPolygon) else MultiPolygon([merged])


def warm_up() -> None:
    """Start the IFC geometry processes ahead, so the first model does not wait for them."""
    try:
        shared_pool().warm()
    except Exception:  # the first IFC job starts the processes itself then
        log.warning("could not start the IFC geometry processes ahead", exc_info=True)


def ingest_ifc(ctx: JobContext) -> dict[str, Any]:
    started = time.monotonic()
    row = load_dataset(ctx)
    options = {**(row.options or {}), **ctx.params}
    max_tri = _int_param(options, "max_triangles_per_tile", DEFAULT_MAX_TRIANGLES,
                         1000, 5_000_000)
    processes = _int_param(options, "geometry_processes", None, 1, 64)
    library = options.get("geometry_library") or DEFAULT_GEOMETRY_LIBRARY
    if library not in GEOMETRY_LIBRARIES:
        raise JobFailed(f"geometry_library must be one of {', '.join(GEOMETRY_LIBRARIES)}, "
                        f"not {library!r}")
    ctx.progress("reading", 0, None)
    # The tileset version row is written while the model is read: one database round trip
    # less on the way of a small model, where such round trips are most of the time.
    with ThreadPoolExecutor(1, thread_name_prefix=f"job-{ctx.job_id}-version") as side:
        version = side.submit(begin_version, ctx.bookkeeping, tile_store(ctx.settings),
                              f"bim-{row.id}", "bim", dataset_id=row.id, job_id=ctx.job_id)
        try:
            with unpacked_ifc(Path(row.source_path),  # .ifczip too
                              ctx.settings.data_dir / "unpacked") as source:
                bim = read_bim(source, pool=shared_pool(processes),
                               anchor=parse_anchor(options.get("anchor")),
                               crs=options.get("crs"), vertical=options.get("vertical"),
                               progress=ctx.progress, geometry_library=library)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the version's own failure is not the news
                fail_version(ctx.engine, version.result())
            if isinstance(exc, IfcInputError):
                raise JobFailed(str(exc)) from exc
            raise
    tv = version.result()
    read_s = time.monotonic() - started

    try:
        result = tile_features(mesh_features(bim.elements, bim.colours, bim.spaces), tv.path,
                               max_triangles_per_tile=max_tri or DEFAULT_MAX_TRIANGLES,
                               palette=palette(bim.colours),
                               progress=lambda _, done, total: ctx.progress("tiles", done, total))
        tiled_at = time.monotonic()
        tiled = set(ids for t in result.manifest["tiles"].values() for ids in t["features"])
        elements = [e for e in bim.elements if e.info.global_id in tiled]
        failures = bim.failures + [
            {"global_id": e.info.global_id, "ifc_class": e.info.ifc_class,
             "name": e.info.name, "reason": "geometry has no surface area"}
            for e in bim.elements if e.info.global_id not in tiled]
        draw_calls = sum(t["draw_calls"] for t in result.manifest["tiles"].values())
        stats = {
            "schema": bim.schema, "elements": len(elements), "products_with_body":
            bim.products, "failed": len(failures), "triangles": result.triangles,
            "tiles": result.tiles, "bytes": result.bytes, "draw_calls": draw_calls,
            "project_unit_m": bim.unit_scale, "geometry_library": library,
            "georeference": bim.placement.report(),
            "tileset": f"/tiles/{tv.name}/tileset.json",
            "spaces": len(bim.spaces),
            # element-room pairs of IfcRelSpaceBoundary: zero means /bim/elements?space=
            # with space_relation=boundary has nothing to find in this model
            "space_boundaries": sum(len(e.bounded_space_global_ids) for e in elements),
        }
        ctx.progress("database", 0, len(elements))
        # rows, dataset, the switch of the current tileset and the job's outcome in one
        # transaction: a reader never sees the new elements with the old tiles, or the
        # reverse, nor a finished job whose data is not there
        with ctx.engine.begin() as conn:
            ctx.hold(conn)  # first: the reaper locks the job's row before the versions
            in_buildings = replace_elements(conn, row.id, elements, spaces=bim.spaces)
            stats["in_cim_buildings"] = in_buildings
            publish(ctx, conn, dataset=DatasetOutcome(
                stats=stats, crs=bim.placement.crs, height_note=bim.placement.height_note,
                footprint=_dataset_footprint(elements), bounds3d=bim.bounds()),
                version=tv, tileset_stats=stats, report={
                "elements": len(elements), "failed": failures[:MAX_REPORTED_FAILURES],
                "spaces": len(bim.spaces), "space_boundaries": stats["space_boundaries"],
                "spaces_failed": bim.spaces_failed[:MAX_REPORTED_FAILURES],
                "failed_count": len(failures), "triangles": result.triangles,
                "tiles": result.tiles, "draw_calls": draw_calls, "geometry_library": library,
                "tileset": tv.name, "version": tv.version,
                "georeference": stats["georeference"], "in_cim_buildings": in_buildings,
                "read_s": round(read_s, 3), "tiles_s": round(tiled_at - started - read_s, 3),
                # the commit itself is not in these two
                "database_s": round(time.monotonic() - tiled_at, 3),
                "total_s": round(time.monotonic() - started, 3),
            })
    except BaseException:
        fail_version(ctx.engine, tv)
        raise
    return ctx.report

