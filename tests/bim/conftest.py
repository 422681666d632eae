"""BIM test fixtures (the helpers they use are in helpers_bim.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers_bim import Ingest, make_ifc4x3, run_ingest


@pytest.fixture(scope="session")
def bim_settings(db_url, tmp_path_factory):
    from service.core.settings import Settings

    return Settings(database_url=db_url, data_dir=tmp_path_factory.mktemp("bim-var"),
                    in_process_worker=False, load_samples=False)


@pytest.fixture(scope="session")
def ingested(db_url, bim_settings) -> Callable[..., Ingest]:
    """Ingest a sample once per session (same file and params give the same dataset)."""
    cache: dict[tuple, Ingest] = {}

    def get(path: Path, **params: Any) -> Ingest:
        key = (str(path), tuple(sorted((k, repr(v)) for k, v in params.items())))
        if key not in cache:
            cache[key] = run_ingest(db_url, bim_settings, path, **params)
        return cache[key]

    return get


@pytest.fixture
def ifc4x3_maker():
    """``make_ifc4x3`` as a fixture: every tests folder has a module named ``conftest``, so
    importing it by name picks whichever folder's was imported first."""
    return make_ifc4x3
