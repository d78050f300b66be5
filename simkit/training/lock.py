"""The advisory lock of a run directory: one process trains a run at a time.

While a process trains a run, the run directory holds ``.lock``, one line ``PID HOST``, created
atomically (``O_CREAT | O_EXCL``: of two processes that try at once, one wins) and removed when
the run ends, whatever the exit. A second process refuses the run with one line naming the holder.
A lock whose process is gone (its pid is not alive on this host, or the file is empty because its
writer died before writing it) is stale: it is taken over with a one-line note. A lock from
another host cannot be checked and is never taken over. A process that is killed (SIGKILL) leaves
its lock behind; the next run finds it stale.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from simkit.errors import UserError

HELD: set[str] = set()       # the locks this process holds (a second claim in-process is refused)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # someone else's process
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:               # no /proc (macOS): os.kill's answer
        return True
    return stat[stat.rindex(")") + 2:][:1] != "Z"


class RunLock:
    """``.lock`` in ``folder``: :meth:`acquire` (refuses when held), :meth:`release`."""

    def __init__(self, folder):
        self.path = Path(folder) / ".lock"
        self.held = False

    def owner(self) -> tuple[int | None, str]:
        """``(pid, host)`` written in the lock, ``(None, "")`` if it is empty or garbled."""
        try:
            pid, host = self.path.read_text().split()
            return int(pid), host
        except (OSError, ValueError):
            return None, ""

    def stale(self, pid, host) -> bool:
        if pid is None:
            return True
        if host != socket.gethostname():
            return False
        if pid == os.getpid():
            return str(self.path.resolve()) not in HELD
        return not pid_alive(pid)

    def acquire(self):
        """Create the lock, taking over a stale one; a live holder: :class:`UserError`."""
        for attempt in (1, 2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self.owner()
                if attempt == 2 or not self.stale(pid, host):
                    raise UserError(f"{self.path.parent} is in use by process {pid} on {host} "
                                    f"({self.path}); wait until it ends, or remove {self.path} if "
                                    "that process is gone") from None
                gone = f"process {pid} on {host} is gone" if pid else "it is empty"
                print(f"simkit: taking over the stale lock of {self.path.parent} ({gone})",
                      file=sys.stderr)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()}\n")
            self.held = True
            HELD.add(str(self.path.resolve()))
            return

    def release(self):
        """Remove the lock if this object holds it."""
        if not self.held:
            return
        self.held = False
        HELD.discard(str(self.path.resolve()))
        if self.owner() == (os.getpid(), socket.gethostname()):
            self.path.unlink(missing_ok=True)
