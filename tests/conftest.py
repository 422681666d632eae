"""Test session fixtures: a throwaway PostgreSQL + PostGIS cluster, started once per session
with the same code `twinbase serve` uses, and a live HTTP server on a free port.

``./run test`` runs one test process per core (pytest-xdist): each is a session of its own,
with its own cluster (its own temporary folder and free port), its own database names (they
carry the process id), servers on free ports and its own ``tmp_path`` root, so nothing here
is shared between them. A session fixture is made once per process, a module's fixtures once
(``--dist loadfile`` keeps a file's tests in one process)."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every test server and worker would load all job libraries and start its own IFC geometry
# processes ahead; the tests load them when they need them (tests/service/test_jobs.py
# checks the warm start itself).
os.environ.setdefault("TWINBASE_WARM_START", "false")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    from service.runtime.embedded_pg import EmbeddedPostgres

    # /tmp, not pytest's tmp_path: as root the cluster runs as the postgres user, who must
    # be able to reach the directory.
    base = Path(tempfile.mkdtemp(prefix="twinbase-test-pg-"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "cluster")
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def db_url(pg_cluster) -> str:
    from service.core import db

    db.upgrade(pg_cluster.url)
    return pg_cluster.url


@pytest.fixture(scope="session")
def _database_names() -> Iterator[str]:
    """Unique names for the databases tests make on the session cluster."""
    return (f"scratch_{os.getpid()}_{n}" for n in itertools.count(1))


def _on_cluster(pg_cluster, name: str) -> str:
    return pg_cluster.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def fresh_database(pg_cluster, _database_names):
    """Factory: a new, empty database (PostGIS only) on the session cluster."""
    import psycopg
    from psycopg import sql

    def make() -> str:
        name = next(_database_names)
        with psycopg.connect(_on_cluster(pg_cluster, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = _on_cluster(pg_cluster, name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
        return url

    return make


@pytest.fixture(scope="session")
def migrated_template(pg_cluster, fresh_database) -> str:
    """The name of a database with PostGIS and every migration, made once per session for
    ``migrated_database`` to copy. Nothing may stay connected to it: CREATE DATABASE ...
    TEMPLATE refuses to copy a database another session is connected to."""
    import psycopg
    from psycopg import sql

    from service.core import db

    url = fresh_database()
    # alembic's env.py connects through a NullPool, and service.core.db's cached engines are
    # never asked for this URL, so no connection outlives the upgrade
    db.upgrade(url)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_on_cluster(pg_cluster, "postgres"), autocommit=True) as conn:
        # a test that connected to the template by mistake would make every later copy fail
        # with "being accessed by other users"; refused at once, it fails alone and clearly
        conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
                     .format(sql.Identifier(name)))
        left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                            (name,)).fetchone()[0]
    assert left == 0, f"{left} connection(s) to the template database left open"
    return name


@pytest.fixture(scope="session")
def migrated_database(pg_cluster, migrated_template, _database_names):
    """Factory: a new database with PostGIS and every migration, copied from the template
    (a copy takes a fraction of the time the migrations take)."""
    import psycopg
    from psycopg import sql

    def make() -> str:
        name = next(_database_names)
        with psycopg.connect(_on_cluster(pg_cluster, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(migrated_template)))
        return _on_cluster(pg_cluster, name)

    return make


@pytest.fixture
def settings(tmp_path: Path, db_url: str):
    from service.core.settings import Settings

    return Settings(database_url=db_url, data_dir=tmp_path / "var",
                    max_upload_bytes=8 * 1024 * 1024, in_process_worker=False,
                    load_samples=False, demo=False, heartbeat_seconds=0.5, stalled_after_seconds=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app) -> None:
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def wait_idle(self, timeout: float = 10) -> None:
        """Until every request the server took has finished, the work its middleware does
        after the response went out (the audit log's row) included."""
        deadline = time.monotonic() + timeout
        while self.server.server_state.tasks:
            if time.monotonic() > deadline:
                raise AssertionError(f"requests still running after {timeout} s")
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def live_server_factory() -> type[LiveServer]:
    """The live-server class, for fixtures of a wider scope than ``live_server``."""
    return LiveServer


@pytest.fixture(scope="session")
def cesium_check():
    """Run ``tests/js/cesium_check/check.js`` (CesiumJS in headless Debian Chromium) on a
    tileset URL; return its summary after checking it exited cleanly. ``./run test`` installs
    node, Chromium and the npm packages, so a missing one fails instead of skipping. The
    screenshot is copied to $TWINBASE_ARTIFACTS when that is set."""
    import json
    import subprocess

    check = ROOT / "tests" / "js" / "cesium_check" / "check.js"
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    assert shutil.which("node") and Path(chromium).exists() \
        and (ROOT / "node_modules" / "cesium").is_dir() \
        and (ROOT / "node_modules" / "playwright-core").is_dir(), \
        "needs node, Debian chromium and the cesium + playwright-core npm packages " \
        "(./run test installs them)"

    def run(tileset_url: str, shot: Path, *options: str) -> dict:
        done = subprocess.run(["node", str(check), tileset_url, "--out", str(shot),
                               "--timeout", "60", *options],
                              capture_output=True, text=True, timeout=150, cwd=ROOT)
        start = done.stdout.find("{")
        assert start >= 0, done.stderr[-2000:]
        summary = json.loads(done.stdout[start:])
        if os.environ.get("TWINBASE_ARTIFACTS"):
            keep = Path(os.environ["TWINBASE_ARTIFACTS"])
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, keep / shot.name)
        assert done.returncode == 0, (done.stderr[-2000:], summary)
        return summary

    return run


@pytest.fixture
def live_server(settings, db_url) -> Iterator[LiveServer]:
    """The real app on a real socket (clients such as tuspy need one)."""
    from service.app import create_app

    with LiveServer(create_app(settings, db_url, in_process_worker=False)) as server:
        yield server


@pytest.fixture
def make_key(db_url):
    """Factory: a new key with a unique name for the given role."""
    from service.core.auth import create_key
    from service.core.db import sync_engine

    counter = iter(range(1, 10_000))

    def make(role: str) -> str:
        with sync_engine(db_url).begin() as conn:
            return create_key(conn, f"{role}-{os.getpid()}-{time.monotonic_ns()}-"
                                    f"{next(counter)}", role)

    return make


@pytest.fixture
def auth(make_key):
    """Factory: headers carrying a new key of the given role."""

    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_key(role)}"}

    return headers
