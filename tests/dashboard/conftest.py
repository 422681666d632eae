"""Dashboard and city-tileset tests get a database of their own per test: the city tileset
holds every current tileset of the database, so tests sharing one would see each other's."""

from __future__ import annotations

import pytest
from helpers_dashboard import ALLOWED_ORIGIN


@pytest.fixture
def db_url(migrated_database) -> str:
    return migrated_database()


@pytest.fixture
def settings(settings):
    settings.max_upload_bytes = 50 * 1024 * 1024
    settings.cors_origins = [ALLOWED_ORIGIN]
    return settings
