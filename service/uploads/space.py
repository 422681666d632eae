"""Disk space for uploads: an upload the disk cannot hold is refused before its bytes fill
it, and the partial files nothing will complete are freed."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sqlalchemy import Engine, select

from service.core.errors import TwinbaseError
from service.core.faults import DISK_FULL
from service.core.tables import uploads

log = logging.getLogger(__name__)

ORPHAN_GRACE_SECONDS = 600  # a .part is created just before its row is committed


class InsufficientStorage(TwinbaseError):
    status, slug = 507, "insufficient-storage"


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def ensure_room(directory: Path, needed: int, reserve: int) -> None:
    """507 unless ``directory``'s file system can take ``needed`` more bytes and still
    keep ``reserve`` free (for the tiles, the database and the logs that share it)."""
    free = free_bytes(directory)
    if free - reserve < needed:
        raise InsufficientStorage(
            f"the server's disk cannot hold this upload now: {needed:,} more bytes are "
            f"needed, {max(0, free - reserve):,} are available; try again once space is "
            "freed (an operator can delete datasets or add space)",
            needed_bytes=needed, available_bytes=max(0, free - reserve))


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in DISK_FULL


def remove_orphan_parts(engine: Engine, uploads_dir: Path) -> int:
    """Delete ``.part`` files no upload is receiving into: uploads that failed, were
    refused, cancelled or completed elsewhere, or whose row a crash never committed.
    Returns how many were deleted."""
    if not uploads_dir.is_dir():
        return 0
    parts = {p.name.removesuffix(".part"): p for p in uploads_dir.glob("*.part")}
    if not parts:
        return 0
    with engine.connect() as conn:
        status = {r.id: r.status for r in conn.execute(
            select(uploads.c.id, uploads.c.status).where(uploads.c.id.in_(list(parts))))}
    now = time.time()
    removed = 0
    for upload_id, path in parts.items():
        if status.get(upload_id) == "receiving":
            continue
        try:
            # no row yet: perhaps an upload being created right now
            if upload_id not in status and now - path.stat().st_mtime < ORPHAN_GRACE_SECONDS:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
        log.info("freed the partial upload %s: nothing is receiving into it", path.name)
    return removed
