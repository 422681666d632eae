"""What the dashboard page reads besides the public API: its settings (/dashboard/config.json)
and the jobs panel's stream (/dashboard/jobs/stream, Server-Sent Events), on the real app and
a real worker run."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import pytest
from pydantic import ValidationError

from service.core.settings import Settings
from service.jobs.execute import run_job


class JobStream:
    """Reads /dashboard/jobs/stream in a thread and keeps its ``jobs`` events."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[list[dict]] = []
        self.status: int | None = None
        self.keepalives = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}),
                                        daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with contextlib.suppress(httpx.HTTPError), \
                httpx.stream("GET", url, headers=headers, timeout=30) as r:
            self.status = r.status_code
            if r.status_code != 200:
                return
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "jobs":
                    self.events.append(json.loads(line[6:]))
                elif line.startswith(": keep-alive"):
                    self.keepalives += 1

    def wait_for(self, pred, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for jobs in list(self.events):
                if pred(jobs):
                    return jobs
            time.sleep(0.05)
        raise AssertionError(f"no such event in {self.events}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def quick_stream(monkeypatch):
    # keep-alives every half second, so a closed reader is noticed at once
    monkeypatch.setattr("service.dashboard.router.JOBS_KEEPALIVE_S", 0.5)


def test_config_gives_the_home_area(live_server):
    r = httpx.get(f"{live_server.url}/dashboard/config.json", timeout=60)
    assert r.status_code == 200
    assert r.json() == {"home": {"lon": 114.25, "lat": 22.72, "radius_m": 6000.0}}


def test_config_follows_the_settings(live_server):
    live_server.server.config.app.state.settings.home_lon = 4.45
    live_server.server.config.app.state.settings.home_lat = 51.91
    home = httpx.get(f"{live_server.url}/dashboard/config.json", timeout=60).json()["home"]
    assert (home["lon"], home["lat"]) == (4.45, 51.91)


def test_a_home_off_the_earth_is_refused(monkeypatch):
    monkeypatch.setenv("TWINBASE_HOME_LAT", "95")
    with pytest.raises(ValidationError, match="home_lat"):
        Settings()
    monkeypatch.setenv("TWINBASE_HOME_LAT", "22.7")
    monkeypatch.setenv("TWINBASE_HOME_RADIUS_M", "0")
    with pytest.raises(ValidationError, match="home_radius_m"):
        Settings()


def test_jobs_stream_shows_a_job_from_queued_to_done(live_server, auth, db_url, settings,
                                                     quick_stream):
    admin = auth("admin")
    stream = JobStream(f"{live_server.url}/dashboard/jobs/stream")
    try:
        stream.wait_for(lambda jobs: jobs == [])  # nothing yet: an empty list, not silence
        r = httpx.post(f"{live_server.url}/jobs/selfcheck", headers=admin,
                       json={"steps": 4, "step_seconds": 0.4}, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        queued = stream.wait_for(lambda jobs: any(j["id"] == job_id for j in jobs))
        assert queued[0]["status"] == "queued" and queued[0]["progress"]["fraction"] == 0
        assert run_job(job_id, db_url, settings) == "succeeded"
        done = stream.wait_for(lambda jobs: jobs and jobs[0]["status"] == "succeeded")
        assert done[0]["id"] == job_id and done[0]["progress"]["fraction"] == 1
        # the worker wrote its progress as it went, and each write was an event
        fractions = [j["progress"]["fraction"] for jobs in stream.events for j in jobs
                     if j["id"] == job_id]
        assert any(0 < f < 1 for f in fractions), fractions
        assert fractions == sorted(fractions), fractions
        # an unchanged job table sends no event again, only keep-alives
        n = len(stream.events)
        time.sleep(1.5)
        assert len(stream.events) == n and stream.keepalives >= 1
    finally:
        stream.close()


def test_jobs_stream_needs_a_key_where_reads_do(live_server, auth, quick_stream):
    live_server.server.config.app.state.settings.read_requires_key = True
    refused = JobStream(f"{live_server.url}/dashboard/jobs/stream")
    let_in = JobStream(f"{live_server.url}/dashboard/jobs/stream", auth("viewer"))
    try:
        deadline = time.monotonic() + 10
        while (refused.status is None or not let_in.events) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused.status == 401 and refused.events == []
        assert let_in.status == 200 and let_in.events == [[]]
    finally:
        refused.close()
        let_in.close()
