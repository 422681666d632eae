"""An embedded PostgreSQL + PostGIS cluster, so `twinbase serve` needs no configuration.

The cluster lives in a directory of its own, listens on 127.0.0.1 on a port chosen once
(kept in the cluster's postgresql.conf) and uses a password generated at creation. initdb
and pg_ctl refuse to run as root, so as root they run as the ``postgres`` system user
(created by Debian's postgresql packages) in a directory that user owns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

DB_NAME = "twinbase"
DB_USER = "twinbase"
_SEARCH_BINDIRS = ("/usr/lib/postgresql/{v}/bin",)
_VERSIONS = ("17", "16", "15")


class EmbeddedPostgresError(RuntimeError):
    pass


def find_bindir() -> Path:
    """Directory holding initdb and pg_ctl (Debian keeps them out of PATH)."""
    if env := os.environ.get("TWINBASE_PG_BINDIR"):
        return Path(env)
    for version in _VERSIONS:
        for pattern in _SEARCH_BINDIRS:
            d = Path(pattern.format(v=version))
            if (d / "initdb").exists():
                return d
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise EmbeddedPostgresError(
        "PostgreSQL server binaries not found: install postgresql-15-postgis-3 "
        "(apt-get install -y postgresql-15-postgis-3) or set DATABASE_URL"
    )


def _is_root() -> bool:
    return os.geteuid() == 0


def _postgres_can_reach(path: Path) -> bool:
    """Whether the postgres user can traverse every parent of ``path``."""
    if not _is_root():
        return True
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(path.parent.resolve())],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def default_cluster_dir(data_dir: Path) -> Path:
    """``<data_dir>/pg``, unless running as root where postgres cannot reach it.

    A clone under /root (mode 700) is the common case: then the cluster goes to
    /var/lib/twinbase/clusters/<hash of data_dir>, one per data directory.
    """
    data_dir = data_dir.resolve()
    candidate = data_dir / "pg"
    data_dir.mkdir(parents=True, exist_ok=True)
    if _postgres_can_reach(candidate):
        return candidate
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    return Path("/var/lib/twinbase/clusters") / digest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedPostgres:
    cluster_dir: Path
    bindir: Path | None = None

    def __post_init__(self) -> None:
        self.cluster_dir = Path(self.cluster_dir).resolve()
        self.bindir = self.bindir or find_bindir()
        self.pgdata = self.cluster_dir / "data"
        self.sockdir = self.cluster_dir / "run"
        self.logfile = self.cluster_dir / "postgres.log"
        self.meta_file = self.cluster_dir / "twinbase-cluster.json"
        self._started_here = False

    # -- running commands as the right user -------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        if _is_root():
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result

    def _chown(self, path: Path) -> None:
        if _is_root():
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, object]:
        return json.loads(self.meta_file.read_text())

    @property
    def url(self) -> str:
        m = self.meta
        return (
            f"postgresql://{DB_USER}:{quote(str(m['password']))}@127.0.0.1:{m['port']}/{DB_NAME}"
        )

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists() and self.meta_file.exists()

    def init(self) -> None:
        if self.initialised():
            return
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise EmbeddedPostgresError(f"{self.pgdata} exists but is not a twinbase cluster")
        if _is_root():
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise EmbeddedPostgresError(
                    "running as root needs the 'postgres' system user "
                    "(apt-get install -y postgresql-15-postgis-3 creates it)"
                ) from exc
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.cluster_dir, 0o700)
        for d in (self.pgdata, self.sockdir):
            d.mkdir(parents=True, exist_ok=True)
        self._chown(self.cluster_dir)
        for d in (self.pgdata, self.sockdir):
            self._chown(d)
        password = secrets.token_urlsafe(24)
        port = _free_port()
        pwfile = self.cluster_dir / "pwfile"
        pwfile.write_text(password + "\n")
        self._chown(pwfile)
        try:
            self._run(
                str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", DB_USER,
                f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                "-E", "UTF8", "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# twinbase embedded cluster\n"
                f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "max_connections = 100\nshared_buffers = 256MB\n"
                "fsync = on\nlog_min_messages = warning\n"
            )
        self.meta_file.write_text(json.dumps({"port": port, "password": password}))
        os.chmod(self.meta_file, 0o600)
        log.info("initialised PostgreSQL cluster in %s (port %s)", self.pgdata, port)

    def running(self) -> bool:
        result = subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "status"),
            capture_output=True, check=False,
        )
        return result.returncode == 0

    def start(self) -> None:
        self.init()
        if self.running():
            log.info("reusing the running PostgreSQL cluster in %s", self.pgdata)
        else:
            if _port_busy(int(self.meta["port"])):
                raise EmbeddedPostgresError(
                    f"port {self.meta['port']} of the embedded cluster is taken by another program"
                )
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.logfile),
                "-w", "-t", "60", "start",
            )
            self._started_here = True
        self._ensure_database()

    def stop(self) -> None:
        if self._started_here and self.running():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast",
                      "-w", "stop")
            self._started_here = False

    def destroy(self) -> None:
        """Stop and delete the cluster (test sessions use throwaway clusters)."""
        self._started_here = True
        self.stop()
        shutil.rmtree(self.cluster_dir, ignore_errors=True)

    def _ensure_database(self) -> None:
        import psycopg

        admin = self.url.rsplit("/", 1)[0] + "/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg.connect(admin, autocommit=True)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
