"""Low-altitude tests: one database per test module (buildings and approved routes of one
module never meet another's), a live server with the low-altitude settings tests need."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def db_url(migrated_database) -> str:
    return migrated_database()


@pytest.fixture
def lowalt_settings():
    from service.lowalt.settings import LowAltSettings

    return LowAltSettings(silent_after_s=1.5, stream_poll_s=0.2, stream_keepalive_s=0.5)


@pytest.fixture
def api(live_server, lowalt_settings):
    import httpx

    live_server.server.config.app.state.lowalt_settings = lowalt_settings
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        yield client


@pytest.fixture
def city(db_url):
    from helpers_lowalt import City

    return City(db_url)
