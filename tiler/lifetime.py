"""Child processes that end with the process that started them (Linux).

A worker process killed outright (SIGKILL, the OOM killer) runs no clean-up, so its pool
processes would live on, each holding its memory. The kernel can signal a process when its
parent ends (``PR_SET_PDEATHSIG``), and a pidfd tells when any given process ends. Shared by
the tiler's pool processes and the service's API processes; no web or database imports.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading
import time

PR_SET_PDEATHSIG = 1


def end_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel for ``sig`` when this process's parent ends. Heard from the moment it
    is asked only: check afterwards that the parent is still there (:func:`alive`). A no-op
    where prctl does not exist."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))  # libc is linked in


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_with(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to this process when process ``pid`` ends, whether or not it is the
    parent (a forkserver's children have the forkserver as parent, and the forkserver does
    not end while they hold its pipe: they must watch the process that made them). A
    daemon thread waits on a pidfd; it polls where pidfds do not exist."""
    me = os.getpid()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(me, sig)
        return
    except (AttributeError, OSError):
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has ended
        else:
            while alive(pid):
                time.sleep(1.0)
        os.kill(me, sig)

    threading.Thread(target=watch, name=f"end-with-{pid}", daemon=True).start()
