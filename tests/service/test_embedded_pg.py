"""The embedded cluster: created once, reused on the next start, stopped on exit."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg
import pytest

from service.runtime.embedded_pg import EmbeddedPostgres, default_cluster_dir


@pytest.fixture
def cluster_base():
    base = Path(tempfile.mkdtemp(prefix="twinbase-test-embedded-"))
    os.chmod(base, 0o755)
    yield base
    EmbeddedPostgres(base / "pg").destroy()


def test_second_start_reuses_the_cluster_and_its_data(cluster_base):
    first = EmbeddedPostgres(cluster_base / "pg")
    first.start()
    url = first.url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
        assert conn.execute("SELECT postgis_version()").fetchone()[0].startswith("3")
    first.stop()
    assert not first.running()

    second = EmbeddedPostgres(cluster_base / "pg")
    second.start()
    assert second.url == url  # same port and password: the cluster was not re-created
    with psycopg.connect(second.url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
    # a start while it runs reuses it and leaves it running for its owner
    third = EmbeddedPostgres(cluster_base / "pg")
    third.start()
    third.stop()
    assert second.running()
    second.stop()
    assert not second.running()


def test_cluster_listens_on_loopback_with_a_password(pg_cluster):
    url = pg_cluster.url
    assert "@127.0.0.1:" in url
    wrong = url.replace(url.split(":")[2].split("@")[0], "wrong-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(wrong)


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback is for root only")
def test_root_cluster_moves_where_postgres_can_reach(tmp_path):
    hidden = Path(tempfile.mkdtemp(prefix="twinbase-private-"))  # mode 700, root only
    try:
        chosen = default_cluster_dir(hidden / "var")
        assert not chosen.is_relative_to(hidden)
        assert chosen.parent == Path("/var/lib/twinbase/clusters")
        open_dir = Path(tempfile.mkdtemp(prefix="twinbase-open-"))
        os.chmod(open_dir, 0o755)
        assert default_cluster_dir(open_dir / "var") == (open_dir / "var" / "pg").resolve()
    finally:
        import shutil

        shutil.rmtree(hidden, ignore_errors=True)
