"""``twinbase serve`` in a process of its own, for tests of requests that could crash or
swell the server: a crash then fails the test (the process is gone, its exit code says
how) instead of killing the test session, and the server's memory is its own to measure.
(Not in conftest.py: every test folder has a module named conftest, so importing one by
name can get another folder's.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``python -m service.cli serve`` on a free port, over ``database_url``; stdout and
    stderr go to a file (a full pipe nobody reads would stall the server)."""

    def __init__(self, database_url: str, data_dir: Path, *, port: int | None = None,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self._out = self.log.open("wb")
        full_env = {**os.environ, "DATABASE_URL": database_url,
                    "TWINBASE_DATA_DIR": str(data_dir), "TWINBASE_IN_PROCESS_WORKER": "false",
                    "TWINBASE_LOAD_SAMPLES": "false", "TWINBASE_LOG_LEVEL": "warning",
                    **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port",
             str(self.port), "--no-samples", "--no-demo", *args],
            cwd=ROOT, env=full_env, stdout=self._out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def why_dead(self) -> str:
        code = self.proc.poll()
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"server process ended ({how}); its output:\n{self.output()[-3000:]}"

    def wait_ready(self, timeout: float = 180) -> ServeProcess:
        # its imports alone take about 6 s of CPU: on a busy 2-core machine (two test
        # processes, other work) that was measured at 65 s before /health answered
        deadline = time.monotonic() + timeout
        while True:
            assert self.alive(), self.why_dead()
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start:\n" + self.output()
            time.sleep(0.1)

    def rss_kib(self) -> int:
        """The server process's resident memory now (KiB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS for the server process")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._out.close()

    def __enter__(self) -> ServeProcess:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
