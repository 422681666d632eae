"""The uploads' periodic clean-ups, which the app hands the job worker's reaper to run."""

from __future__ import annotations

from sqlalchemy import func, update

from service.core.db import sync_engine
from service.core.settings import Settings
from service.core.tables import uploads
from service.uploads.space import remove_orphan_parts
from service.uploads.storage import part_path


def expire_uploads(url: str, settings: Settings) -> int:
    """Unfinished uploads past their expiry: mark them failed and free their disk space."""
    with sync_engine(url).begin() as conn:
        ids = conn.execute(
            update(uploads).where(uploads.c.status == "receiving",
                                  uploads.c.expires_at < func.now())
            .values(status="failed").returning(uploads.c.id)).scalars().all()
    for upload_id in ids:
        part_path(settings.uploads_dir, upload_id).unlink(missing_ok=True)
    return len(ids)


def free_orphan_parts(url: str, settings: Settings) -> int:
    """Partial files no upload row claims (see space.remove_orphan_parts)."""
    return remove_orphan_parts(sync_engine(url), settings.uploads_dir)


CHORES = (expire_uploads, free_orphan_parts)
