"""Upload bytes on disk: one ``<id>.part`` file per upload, appended chunk by chunk.

The file's size is the upload offset, so a restarted server resumes exactly where the disk
says. Bodies are streamed to disk and never held whole in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from service.core.errors import Locked, TwinbaseError

HASH_BLOCK = 4 * 1024 * 1024


def part_path(uploads_dir: Path, upload_id: str) -> Path:
    return uploads_dir / f"{upload_id}.part"


def offset_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def exclusive(path: Path, missing: TwinbaseError,
              busy: type[TwinbaseError] = Locked) -> Iterator[int]:
    """Open ``path`` for appending with an exclusive lock; while another request holds it,
    ``busy`` (423 for a second writer, 409 for a cancel). The file is not created: creating
    the upload made it and cancelling removes it under this lock, so a request that comes
    after a cancel gets ``missing`` instead of writing to a new file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        raise missing from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise busy("another request is writing to this upload right now; "
                       "retry when it ends") from exc
        yield fd
    finally:
        os.close(fd)


async def append_stream(fd: int, chunks: AsyncIterator[bytes], limit: int,
                        hasher: hashlib._Hash | None = None) -> tuple[int, bool]:
    """Append chunks until the stream ends or ``limit`` bytes; return (written, overflow)."""
    written = 0
    async for chunk in chunks:
        if not chunk:
            continue
        room = limit - written
        if len(chunk) > room:
            if room > 0:
                os.write(fd, chunk[:room])
                if hasher is not None:
                    hasher.update(chunk[:room])
                written += room
            return written, True
        view = memoryview(chunk)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if hasher is not None:
            hasher.update(chunk)
        written += len(chunk)
    return written, False


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()
