"""City tests get a database of their own per test: the city tileset holds every current
object of the database, so tests sharing one would see each other's buildings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the glTF and 3D Tiles checkers live beside the tiler tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tiler"))


@pytest.fixture
def db_url(migrated_database) -> str:
    return migrated_database()
