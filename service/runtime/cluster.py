"""Which database to use: DATABASE_URL, or the embedded cluster started on demand."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from service.core.settings import Settings
from service.runtime.embedded_pg import EmbeddedPostgres, default_cluster_dir

log = logging.getLogger(__name__)


def embedded_cluster(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.pg_dir or default_cluster_dir(settings.data_dir))


@contextlib.contextmanager
def database(settings: Settings, *, migrate: bool = True) -> Iterator[str]:
    """Yield a database URL; an embedded cluster started here is stopped on exit."""
    from service.core import db

    if settings.database_url:
        if migrate:
            db.upgrade(settings.database_url)
        yield settings.database_url
        return
    pg = embedded_cluster(settings)
    pg.start()
    try:
        if migrate:
            db.upgrade(pg.url)
        yield pg.url
    finally:
        pg.stop()
