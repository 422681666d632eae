"""The one way an ingest publishes: its dataset's state, the switch of its tileset to the new
version and the job's success, in the transaction that wrote its rows.

Nothing of an ingest shows until that transaction commits, and then all of it does: a
reader never sees a 'ready' dataset beside the old tiles, new rows with the old tiles or the
reverse, nor a succeeded job whose data is not there. A crash before the commit leaves the
previous version current and the dataset not ready; an attempt the reaper took for dead
cannot commit it (:meth:`JobContext.hold`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, Connection, func, update

from service.core.tables import datasets
from service.jobs.context import JobContext
from service.tilesets.store import TilesetVersion, publish_in, store_version


@dataclass(frozen=True)
class DatasetOutcome:
    """What an ingest learnt about its dataset, stored with status 'ready'."""

    stats: dict[str, Any]
    crs: str | None
    height_note: str | None
    # lon/lat (multi)polygon; an SQL expression is evaluated inside the UPDATE (e.g. the
    # union of the rows just written, with no round trip)
    footprint: BaseGeometry | ColumnElement[Any] | None
    bounds3d: dict[str, list[float]] | None  # {"min": [lon, lat, h], "max": [...]}
    acquired_at: datetime | None = None


def publish(ctx: JobContext, conn: Connection, *, dataset: DatasetOutcome,
            version: TilesetVersion | None, tileset_stats: dict[str, Any] | None,
            report: dict[str, Any],
            also: Sequence[tuple[TilesetVersion, dict[str, Any]]] = ()) -> None:
    """Publish the ingest of ``ctx`` in ``conn``'s transaction, the one its rows were written
    in: the dataset becomes 'ready' with ``dataset``, ``version`` (if any: a city without
    geometry has nothing to draw) becomes the current version of its tileset with
    ``tileset_stats``, and the job succeeds with ``report``. ``also`` are versions of other
    tilesets the job made, each with its stats, that become current with it (a modelled
    survey: the city model's tiles and the survey's own points with their new classes).
    All of it commits with the caller's transaction, and only if this attempt still owns
    the job.

    The job's row is locked first unless the handler did so earlier in this transaction
    (to lock it before writing its rows). Raises :class:`AttemptLost` or
    :class:`VersionAbandoned`; the caller's transaction then rolls back, rows included.

    The version's files go to the tile store first (an upload to S3), before the job's row
    is locked, so the worker's heartbeat goes on meanwhile; a store that refuses them
    raises ServiceUnavailable and nothing is switched."""
    if ctx.dataset_id is None:
        raise ValueError(f"job {ctx.job_id} ({ctx.kind}) has no dataset to publish")
    if (version is None) != (tileset_stats is None):
        raise ValueError("a tileset version is published with its stats, and only then")
    for tv in ([version] if version is not None else []) + [other for other, _ in also]:
        store_version(tv, progress=lambda done, total: ctx.progress(
            "storing tiles", done, total))
    ctx.hold(conn)
    conn.execute(update(datasets).where(datasets.c.id == ctx.dataset_id).values(
        status="ready", crs=dataset.crs, height_note=dataset.height_note,
        stats=dataset.stats, footprint=_footprint(dataset.footprint),
        bounds3d=dataset.bounds3d, acquired_at=dataset.acquired_at, updated_at=func.now()))
    if version is not None and tileset_stats is not None:
        publish_in(conn, version, tileset_stats)
    for other, stats in also:
        publish_in(conn, other, stats)
    ctx.succeed_in(conn, report)


def _footprint(value: BaseGeometry | ColumnElement[Any] | None) -> Any:
    if isinstance(value, BaseGeometry):  # the column holds multipolygons
        multi = value if isinstance(value, MultiPolygon) else MultiPolygon([value])
        return from_shape(multi, srid=4326)
    return value
