"""``twinbase serve --workers 2``: real processes on a real port, seen through /proc.

Which process holds which socket is read from /proc/<pid>/fd and /proc/net/tcp, so the
tests need nothing from the server that an operator would not see: each API process has a
listening socket of its own on the port, and connections land on both."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LISTEN, ESTABLISHED = "0A", "01"
WAIT_S = 60  # how long a process may take to start or stop before the test gives up


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid`` and their command lines."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[1] != pid or stat[0] == "Z":
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[int(entry.name)] = cmd
    return out


def _api_workers(pid: int) -> list[int]:
    return sorted(p for p, cmd in _children(pid).items() if "service.api_worker" in cmd)


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else []:
        try:
            target = os.readlink(fd)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _tcp_inodes(port: int, state: str) -> set[int]:
    """Inodes of the sockets whose local port is ``port``, in the given TCP state."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == state:
                inodes.add(int(cols[9]))
    return inodes


def _wait_for(what: str, ok) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ok():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def _get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_db(fresh_database) -> str:
    """A throwaway database for these servers (`serve` migrates it at start)."""
    return fresh_database()


class Served:
    def __init__(self, database_url: str, data_dir: Path, *, jobs: bool = False,
                 port: int | None = None) -> None:
        self.port = port or _free_port()
        # a file, not a pipe: a full pipe nobody reads would stall the server
        self.log = data_dir.parent / f"serve-{self.port}.log"
        env = {**os.environ, "DATABASE_URL": database_url, "TWINBASE_DATA_DIR": str(data_dir),
               "TWINBASE_IN_PROCESS_WORKER": "true" if jobs else "false",
               "TWINBASE_LOG_LEVEL": "warning"}
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--workers", "2", "--host",
             "127.0.0.1", "--port", str(self.port), "--no-samples", "--no-demo"],
            cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.output()
            return len(self.listeners()) == 2

        _wait_for("two API processes listening", ready)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def listeners(self) -> dict[int, set[int]]:
        """API worker pid -> its listening sockets on the port."""
        listening = _tcp_inodes(self.port, LISTEN)
        out = {}
        for pid in _api_workers(self.proc.pid):
            mine = _socket_inodes(pid) & listening
            if mine:
                out[pid] = mine
        return out

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._out.close()


@pytest.fixture
def served(serve_db, tmp_path) -> Iterator[Served]:
    server = Served(serve_db, tmp_path / "var")
    try:
        server.wait_ready()
        yield server
    finally:
        workers = _children(server.proc.pid)
        server.stop()
        for pid in workers:  # nothing outlives the supervisor
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _connections_by_worker(server: Served, count: int) -> dict[int, int]:
    """Open ``count`` kept-alive connections, one request each (answered 200), and count
    the ones each API process holds."""
    conns = [server.connection() for _ in range(count)]
    try:
        for conn in conns:
            assert _get(conn, "/health") == 200
        established = _tcp_inodes(server.port, ESTABLISHED)
        return {pid: len(_socket_inodes(pid) & established)
                for pid in _api_workers(server.proc.pid)}
    finally:
        for conn in conns:
            conn.close()


def test_each_worker_listens_on_its_own_socket_and_both_serve(served):
    listeners = served.listeners()
    assert len(listeners) == 2
    first, second = listeners.values()
    assert len(first) == len(second) == 1 and first != second
    # the supervisor holds the port but never listens: it is not in the kernel's choice
    assert not _socket_inodes(served.proc.pid) & _tcp_inodes(served.port, LISTEN)
    # 24 connections from distinct client ports: the kernel hashes them over both queues
    # (all 24 on one process would happen once in 8 million runs)
    held = _connections_by_worker(served, 24)
    assert sum(held.values()) == 24, held
    assert all(n > 0 for n in held.values()), held
    with closing(served.connection()) as conn:
        assert _get(conn, "/collections") == 200


def test_a_killed_worker_is_replaced(served):
    victim, survivor = served.listeners()
    os.kill(victim, signal.SIGKILL)
    _wait_for("a new API process listening",
              lambda: len(served.listeners()) == 2 and victim not in served.listeners())
    assert survivor in served.listeners()
    held = _connections_by_worker(served, 24)
    assert set(held) == set(served.listeners()) and all(n > 0 for n in held.values()), held
    assert served.proc.poll() is None


def test_sigterm_stops_every_process_with_exit_code_0(served):
    children = list(_children(served.proc.pid))
    assert len(children) == 2
    with closing(served.connection()) as conn:  # an idle kept-alive connection does not hold it up
        assert _get(conn, "/health") == 200
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(WAIT_S) == 0
    assert not [pid for pid in children if _alive(pid)]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", served.port), timeout=5).close()


def test_workers_end_when_the_supervisor_is_killed_outright(served):
    workers = list(served.listeners())
    os.kill(served.proc.pid, signal.SIGKILL)
    served.proc.wait(WAIT_S)
    _wait_for("the orphaned API processes to end",
              lambda: not [pid for pid in workers if _alive(pid)])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", served.port), timeout=5).close()


def test_jobs_run_in_one_more_process_when_the_in_process_worker_is_on(serve_db, tmp_path):
    server = Served(serve_db, tmp_path / "var", jobs=True)
    try:
        server.wait_ready()
        commands = list(_children(server.proc.pid).values())
        assert len(commands) == 3
        assert sum("service.cli worker" in cmd for cmd in commands) == 1
    finally:
        children = list(_children(server.proc.pid))
        assert server.stop() == 0
    assert not [pid for pid in children if _alive(pid)]


def test_a_taken_port_is_a_clear_error(serve_db, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = Served(serve_db, tmp_path / "var", port=taken.getsockname()[1])
        code = server.proc.wait(WAIT_S)
        server.stop()
    assert code == 1
    assert f"cannot bind 127.0.0.1:{server.port}" in server.output()


def test_a_worker_that_dies_at_every_start_stops_the_server_with_code_1():
    from service.runtime.supervisor import MAX_QUICK_EXITS, Child, Supervisor

    supervisor = Supervisor("127.0.0.1", 0, 0, backoff_cap=0.05)
    supervisor.children = [Child("api worker 1", [sys.executable, "-c", "raise SystemExit(3)"])]
    assert supervisor.run() == 1
    assert f"ended right after starting {MAX_QUICK_EXITS} times" in supervisor.failed
    assert "exit code 3" in supervisor.failed
