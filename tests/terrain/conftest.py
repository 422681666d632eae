"""Terrain tests get a database of their own per test: the terrain layer is every stored DTM
of the database, so tests sharing one would see each other's surveys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the survey helpers of the fly-and-model tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "city"))


@pytest.fixture
def db_url(migrated_database) -> str:
    return migrated_database()


@pytest.fixture
def settings(settings):
    settings.max_upload_bytes = 60 * 1024 * 1024
    return settings
