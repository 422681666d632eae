"""Tileset versions: written aside, then switched to current in one transaction.

Each version lives under ``<name>/v<version>/`` in the tile store (the local tiles folder, or
an S3 bucket: :mod:`service.tilesets.storage`) and its content files are never rewritten, so
they can be cached forever. Only which version is *current* changes, by a single UPDATE pair
under a unique partial index, so a dashboard never sees half a tileset; the version's files
are all in the store before that switch (:func:`store_version`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Select,
    and_,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from service.core.errors import ServiceUnavailable
from service.core.tables import jobs, tilesets
from service.tilesets.aggregate import AGGREGATE_NAME
from service.tilesets.storage import LocalTileStore, Progress, TileStore

log = logging.getLogger(__name__)
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
VERSION_ATTEMPTS = 5
UNFINISHED = ("building", "preview")
# in a failed version's stats: its objects are gone from the object store
OBJECTS_REMOVED = "objects_removed"


class VersionAbandoned(Exception):
    """The version was given up (its job's attempt was taken for dead and its files
    removed): it can no longer be shown or published."""


def slug_name(prefix: str, label: str) -> str:
    """A tileset name from a human label: ``survey`` + ``Block 7 east.laz`` ->
    ``survey-block-7-east``. Labels with other characters (e.g. Chinese names) get a stable
    hash of the whole label appended, so distinct labels never share a tileset."""
    stem = re.sub(r"\.(copc\.laz|laz|las|city\.jsonl|city\.json|json|gml|xml|ifc)$", "",
                  label.strip(), flags=re.I)
    ascii_part = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    if not stem.isascii():
        ascii_part = (ascii_part[:40] + "-" if ascii_part else "") + hashlib.sha1(
            stem.encode()).hexdigest()[:10]
    return f"{prefix}-{ascii_part}"[:128].rstrip("-")


@dataclass
class TilesetVersion:
    id: int
    name: str
    version: int
    path: Path  # where the tiler writes it: the version itself, or a scratch folder
    store: TileStore | None = None
    # files already in the store (relative path -> size, mtime_ns): a preview's, then all
    sent: dict[str, tuple[int, int]] = field(default_factory=dict)
    stored: bool = False

    @property
    def prefix(self) -> str:
        return f"{self.name}/v{self.version}"

    @property
    def tile_store(self) -> TileStore:
        return self.store or LocalTileStore(self.path.parent.parent)


def as_store(where: TileStore | Path) -> TileStore:
    """A store, from a store or a local tiles folder (as callers from before the S3 store
    pass)."""
    return where if isinstance(where, TileStore) else LocalTileStore(where)


def begin_version(engine: Engine, where: TileStore | Path, name: str, kind: str, *,
                  dataset_id: int | None, job_id: int | None) -> TilesetVersion:
    """Number a new version of ``name`` and make its (empty) directory in the store's
    working folder. A lost 'building' row is harmless (the directory is cleared on the next
    try), so a job passes its bookkeeping engine, whose commits do not wait for the disk."""
    tile_store = as_store(where)
    if not NAME.match(name):
        raise ValueError(f"bad tileset name {name!r}")
    if name == AGGREGATE_NAME:  # /tiles/city/tileset.json is the city tileset of them all
        raise ValueError(f"the tileset name {name!r} is reserved")
    for attempt in range(VERSION_ATTEMPTS):
        try:
            with engine.begin() as conn:
                row = conn.execute(_next_version(name, kind, dataset_id, job_id)).one()
            break
        except IntegrityError:  # another build of this name took the number first
            if attempt == VERSION_ATTEMPTS - 1:
                raise
    path = tile_store.work_dir / row.path
    if path.exists():  # left over by a crash before its row was written
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return TilesetVersion(row.id, name, row.version, path, tile_store)


def store_version(tv: TilesetVersion, *, final: bool = True,
                  progress: Progress | None = None) -> None:
    """Put the version's files in the store under ``<name>/v<n>/`` (in parallel for S3),
    before the database shows them: a preview's files so far (``final=False``), or all of
    them, after which the scratch folder goes. Raises ServiceUnavailable when the store
    refuses; nothing is switched then, and the caller fails the version."""
    if tv.stored:
        return
    tv.tile_store.put_dir(tv.path, tv.prefix, sent=tv.sent, progress=progress)
    if final:
        tv.tile_store.discard_scratch(tv.path)
        tv.stored = True


def _next_version(name: str, kind: str, dataset_id: int | None, job_id: int | None):
    """One statement (one round trip): the next number of ``name`` as a 'building' row;
    the unique (name, version) refuses a number taken meanwhile."""
    version = func.coalesce(func.max(tilesets.c.version), 0) + 1
    numbered = select(
        literal(name), version, literal(kind), literal(dataset_id, BigInteger),
        literal(job_id, BigInteger), literal("building"),
        func.concat(literal(name), "/v", version),
    ).where(tilesets.c.name == name)
    return (insert(tilesets)
            .from_select(["name", "version", "kind", "dataset_id", "job_id", "status", "path"],
                         numbered)
            .returning(tilesets.c.id, tilesets.c.version, tilesets.c.path))


def mark_preview(engine: Engine, tv: TilesetVersion, stats: dict[str, Any]) -> bool:
    """Coarse levels are on disk: make them visible. The preview becomes current only when
    no complete version exists, so a re-run never hides a good tileset behind a partial one.
    Returns whether it became current."""
    store_version(tv, final=False)
    with engine.begin() as conn:
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(tv.name))))
        has_current = conn.execute(select(tilesets.c.id).where(
            tilesets.c.name == tv.name, tilesets.c.is_current)).first() is not None
        changed = conn.execute(update(tilesets).where(
            tilesets.c.id == tv.id, tilesets.c.status == "building").values(
            status="preview", is_current=not has_current, stats=stats,
            published_at=func.now()).returning(tilesets.c.id)).first()
        if changed is None:
            raise VersionAbandoned(f"{tv.name} v{tv.version} was abandoned")
    return not has_current


def publish_in(conn: Connection, tv: TilesetVersion, stats: dict[str, Any]) -> None:
    """The version is complete: make it the current one, in the caller's transaction, so
    the rows it wrote and the tiles that show them become visible together. An ingest
    calls it through :func:`service.jobs.publish.publish`, with its dataset and job."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(tv.name))))
    conn.execute(update(tilesets).where(tilesets.c.name == tv.name, tilesets.c.is_current,
                                        tilesets.c.id != tv.id).values(is_current=False))
    changed = conn.execute(update(tilesets).where(
        tilesets.c.id == tv.id, tilesets.c.status.in_(UNFINISHED)).values(
        status="published", is_current=True, stats=stats, published_at=func.now())
        .returning(tilesets.c.id)).first()
    if changed is None:  # the caller's transaction is rolled back: nothing was switched
        raise VersionAbandoned(f"{tv.name} v{tv.version} was abandoned")


def fail_version(engine: Engine, tv: TilesetVersion) -> None:
    """The build failed: hide its preview and delete its files (scratch and store)."""
    with engine.begin() as conn:
        conn.execute(update(tilesets).where(tilesets.c.id == tv.id).values(
            status="failed", is_current=False))
    shutil.rmtree(tv.path, ignore_errors=True)
    remove_version_files(tv.tile_store, [tv.prefix])


def abandon_job_versions(conn: Connection, job_id: int) -> list[str]:
    """Hide the unfinished versions (building or preview) a job's attempt made, in the
    caller's transaction (the one that takes the job from that attempt); their paths
    under the tiles directory come back for :func:`remove_version_files` after commit."""
    return list(conn.execute(
        update(tilesets).where(tilesets.c.job_id == job_id,
                               tilesets.c.status.in_(UNFINISHED))
        .values(status="failed", is_current=False).returning(tilesets.c.path)).scalars())


def abandon_orphan_versions(engine: Engine, where: TileStore | Path) -> int:
    """Unfinished versions whose job is no longer running (its worker was killed, the job
    was requeued or failed meanwhile, the server restarted): a preview would otherwise
    stay current, and its files on disk, for ever. Returns how many were removed."""
    with engine.begin() as conn:
        paths = list(conn.execute(
            update(tilesets).where(
                tilesets.c.status.in_(UNFINISHED), tilesets.c.job_id.is_not(None),
                ~exists().where(and_(jobs.c.id == tilesets.c.job_id,
                                     jobs.c.status == "running")))
            .values(status="failed", is_current=False).returning(tilesets.c.path)).scalars())
    remove_version_files(where, paths)
    return len(paths)


def remove_version_files(where: TileStore | Path, paths: list[str]) -> None:
    """Delete versions (``<name>/v<n>`` as the rows hold them) from the store and from its
    working folder. A store that cannot be reached is logged, not raised: the rows are
    already failed (never shown again), and only the space of their objects is lost until
    an operator deletes the logged prefix."""
    tile_store = as_store(where)
    root = tile_store.work_dir.resolve()
    for rel in paths:
        path = (tile_store.work_dir / rel).resolve()
        if path.is_relative_to(root) and path != root:  # paths are ours, but never outside
            shutil.rmtree(path, ignore_errors=True)
            if not isinstance(tile_store, LocalTileStore):
                try:
                    tile_store.delete_prefix(rel)
                except ServiceUnavailable as exc:
                    log.warning("tileset %s: its objects were not deleted: %s", rel, exc)


def purge_failed_objects(engine: Engine, where: TileStore | Path, limit: int = 100) -> int:
    """Delete the objects of failed versions from an object store, once each (marked in
    their stats): :func:`remove_version_files` deletes them when a version fails, but a
    store that was down then (the reason many uploads fail) still holds what reached it.
    A local store needs none: its folders go with the version. Returns versions purged."""
    tile_store = as_store(where)
    if isinstance(tile_store, LocalTileStore):
        return 0
    with engine.connect() as conn:
        rows = conn.execute(
            select(tilesets.c.id, tilesets.c.path)
            .where(tilesets.c.status == "failed",
                   ~tilesets.c.stats.has_key(OBJECTS_REMOVED))
            .order_by(tilesets.c.id).limit(limit)).all()
    purged = 0
    for row in rows:
        try:
            tile_store.delete_prefix(row.path)
        except ServiceUnavailable as exc:  # still away: the next pass tries again
            log.warning("tileset %s: its objects were not deleted: %s", row.path, exc)
            break
        with engine.begin() as conn:
            conn.execute(update(tilesets).where(tilesets.c.id == row.id).values(
                stats=tilesets.c.stats.op("||")(func.jsonb_build_object(
                    OBJECTS_REMOVED, True))))
        purged += 1
    return purged


# -- what the API reads ------------------------------------------------------------------------

def current_versions() -> Select:
    """The current version of every tileset, by name."""
    return (select(tilesets.c.name, tilesets.c.version, tilesets.c.kind, tilesets.c.status,
                   tilesets.c.dataset_id, tilesets.c.published_at, tilesets.c.stats,
                   tilesets.c.path)
            .where(tilesets.c.is_current).order_by(tilesets.c.name))


def current_of(name: str) -> Select:
    return select(tilesets.c.version, tilesets.c.path).where(
        tilesets.c.name == name, tilesets.c.is_current)


def version_of(name: str, version: int) -> Select:
    return select(tilesets.c.path, tilesets.c.status).where(
        tilesets.c.name == name, tilesets.c.version == version)
