"""``twinbase serve --workers N``: N API processes on one port, and a supervisor over them.

Each API process binds its own listening socket on the same host:port with SO_REUSEPORT,
so the kernel gives every process an accept queue of its own and spreads new connections
over them by a hash of the client's address and port. With one shared listening socket (as
gunicorn and ``uvicorn --workers`` have) the processes race to accept, and with clients that
keep their connections open (load generators, dashboards polling over keep-alive) one
process ended up holding most of them while the other core idled; its queue made the tail
latency. ``uvicorn --workers`` also delayed every kept-alive request (benchmarks/RESULTS.md).

The supervisor (the ``twinbase serve`` process itself):

- reserves the port before any worker starts: an ordinary bind first, which fails when
  anything already listens there (another twinbase included: SO_REUSEPORT would otherwise
  quietly let it share our port and split the traffic), then a bound but never listening
  SO_REUSEPORT socket that keeps other programs off the port while workers restart (a socket
  that does not listen receives no connections);
- starts each worker with the command it is given (``python -m service.api_worker``): a
  fresh interpreter that builds the app once, binds its socket and only starts listening
  once the app's start-up has run (uvicorn calls listen()), so the kernel never queues
  connections for a process that cannot answer yet;
- restarts a worker that dies (and the jobs process, when there is one), and gives up with
  exit code 1 when processes keep dying right after they start;
- on SIGINT or SIGTERM asks every child to stop (SIGTERM: uvicorn finishes the requests in
  flight), waits up to ``GRACEFUL_SECONDS``, kills what is left, and returns 0. A second
  signal kills at once.

Children run in process groups of their own, so a Ctrl-C in a terminal reaches the
supervisor alone and every child is stopped once, in order. An API worker also asks the
kernel for SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so a supervisor that
is killed outright does not leave processes holding the port.

Connections that wait in the accept queue of a worker at the moment it exits are reset by
the kernel (each queue belongs to its process); clients retry those like any dropped
connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

log = logging.getLogger("twinbase.serve")

GRACEFUL_SECONDS = 30.0  # a stopping child's time to finish its requests (or its job)
QUICK_EXIT_SECONDS = 10.0  # a child that exits this soon after starting did not start well
MAX_QUICK_EXITS = 5  # in a row for one API worker: then something is wrong, not unlucky
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class PortTaken(RuntimeError):
    pass


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple]:
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                               flags=socket.AI_PASSIVE)[0]
    return family, addr


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening SO_REUSEPORT socket on host:port (port 0: a free one).

    Raises PortTaken when anything else is bound there."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("--workers > 1 needs SO_REUSEPORT (Linux); run one worker")
    family, addr = _address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR ignores connections in TIME_WAIT (as every server does), but without
        # SO_REUSEPORT this bind fails on any socket bound or listening on the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            raise PortTaken(f"cannot bind {host}:{port}: {exc.strerror}") from None
        addr = (addr[0], probe.getsockname()[1], *addr[2:])
    keeper = socket.socket(family, socket.SOCK_STREAM)
    # no SO_REUSEADDR here, so the probe above also fails while only this socket is bound
    keeper.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        keeper.bind(addr)
    except OSError as exc:
        keeper.close()
        raise PortTaken(f"cannot bind {host}:{port}: {exc.strerror}") from None
    return keeper


def listening_socket(host: str, port: int) -> socket.socket:
    """The one API process's socket (``serve`` without --workers): bound before anything
    starts, so a taken port ends the command at once instead of after the app's start-up
    (where uvicorn logged EADDRINUSE and the process hung on its job worker and pools).
    Raises PortTaken."""
    family, addr = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise PortTaken(f"cannot bind {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def worker_socket(host: str, port: int) -> socket.socket:
    """A worker's own socket on the shared port: bound, not yet listening."""
    family, addr = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # accepted connections inherit it on Linux: a response's head and body never wait for
    # the client's delayed ACK (Nagle), whatever the event loop does
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(addr)
    sock.set_inheritable(False)
    return sock


@dataclass
class Child:
    """One supervised process slot: an API worker or the jobs worker."""

    name: str
    argv: list[str]
    essential: bool = True  # the server cannot work without it (the jobs worker can wait)
    proc: subprocess.Popen | None = None
    started: float = 0.0
    start_at: float = 0.0  # when a replacement is due
    quick_exits: int = 0  # in a row


@dataclass
class Supervisor:
    host: str
    port: int
    workers: int
    jobs: bool = False
    # the commands of one API worker (given host, port and the supervisor's pid after it)
    # and of the jobs process: the caller's, so this module knows nothing of the app
    api_command: list[str] = field(default_factory=list)
    jobs_command: list[str] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    stop_signal: int | None = None
    force: bool = False
    failed: str | None = None
    backoff_cap: float = 10.0  # seconds between restarts of a child that keeps failing

    def __post_init__(self) -> None:
        api = [*self.api_command, self.host, str(self.port), str(os.getpid())]
        self.children = [Child(f"api worker {i + 1}", api) for i in range(self.workers)]
        if self.jobs:
            # the same command as `twinbase worker`, so it behaves exactly like one
            self.children.append(Child("job worker", self.jobs_command, essential=False))

    # -- signals ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in STOP_SIGNALS:
            if self.stop_signal is not None:
                self.force = True
            self.stop_signal = signum
        # SIGCHLD needs no action here: the wake-up byte makes the main loop look

    def run(self) -> int:
        """Supervise until a stop signal (exit code 0) or until children keep failing (1)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        handled = (*STOP_SIGNALS, signal.SIGCHLD)
        old = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            for child in self.children:
                self._start(child)
            log.info("serving on %s:%s with %d API processes (pids %s)%s", self.host,
                     self.port, self.workers,
                     ", ".join(str(c.proc.pid) for c in self.children if c.proc),
                     " and a job worker" if self.jobs else "")
            while self.stop_signal is None and self.failed is None:
                self._wait(wake_r, self._next_timeout())
                self._reap_and_restart()
            if self.failed:
                log.error("%s; stopping", self.failed)
            return self._stop_all(wake_r)
        finally:
            for child in self.children:  # only when something above raised
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.kill()
                    child.proc.wait()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)

    @staticmethod
    def _wait(wake_r: int, timeout: float) -> None:
        select.select([wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_r, 512):
                pass

    def _next_timeout(self) -> float:
        due = [c.start_at for c in self.children if c.proc is None]
        return max(0.0, min(due) - time.monotonic()) if due else 5.0

    def _start(self, child: Child) -> None:
        # a process group of its own: a terminal's Ctrl-C reaches the supervisor only
        child.proc = subprocess.Popen(child.argv, process_group=0)
        child.started = time.monotonic()
        log.debug("%s started (pid %d)", child.name, child.proc.pid)

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                lived = now - child.started
                log.warning("%s (pid %d) ended with %s after %.1f s; starting a new one",
                            child.name, child.proc.pid, how, lived)
                child.proc = None
                child.quick_exits = child.quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
                if child.essential and child.quick_exits >= MAX_QUICK_EXITS:
                    self.failed = (f"{child.name} ended right after starting "
                                   f"{child.quick_exits} times in a row (last: {how}); see "
                                   f"the messages above")
                    return
                # once may be bad luck (a kill during start-up): again at once; a repeat
                # waits 2, 4, 8 s, so a broken set-up does not spin the CPU (the jobs worker
                # keeps trying every 10 s: the API goes on serving without it)
                backoff = 2.0 ** (child.quick_exits - 1) if child.quick_exits > 1 else 0.0
                child.start_at = now + min(backoff, self.backoff_cap)
            if child.proc is None and child.start_at <= now and self.stop_signal is None:
                self._start(child)

    def _stop_all(self, wake_r: int) -> int:
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        if self.stop_signal is not None:
            log.info("%s: stopping %d processes", signal.Signals(self.stop_signal).name,
                     len(running))
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_SECONDS
        while running and not self.force and time.monotonic() < deadline:
            self._wait(wake_r, min(0.5, max(0.0, deadline - time.monotonic())))
            running = [c for c in running if c.proc.poll() is None]
        for child in running:
            log.warning("%s (pid %d) did not stop within %.0f s; killing it", child.name,
                        child.proc.pid, GRACEFUL_SECONDS)
            child.proc.kill()
            child.proc.wait()
        return 1 if self.failed else 0


def serve_workers(host: str, port: int, workers: int, *, jobs: bool, api_command: list[str],
                  jobs_command: list[str]) -> int:
    """Run ``workers`` API processes on host:port (plus a jobs process when ``jobs``) until
    SIGINT or SIGTERM; the exit code for the command."""
    keeper = reserve_port(host, port)
    try:
        return Supervisor(host, keeper.getsockname()[1], workers, jobs,
                          api_command=api_command, jobs_command=jobs_command).run()
    finally:
        keeper.close()
