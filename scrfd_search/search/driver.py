"""Who is driving a search: an exclusive lock plus a heartbeat file, so status can tell a dead driver.

The driver (`launch` or `resume`) holds an flock on results/NAME/driver.lock for its whole life (the
kernel drops it when the process dies, however it dies), so a second driver on the same store is
refused. It also rewrites driver.json (pid, host, start time, heartbeat) every HEARTBEAT_S seconds.
`status` reads driver.json: on the driver's own host the pid must still exist, and anywhere the
heartbeat must be younger than STALE_S (a lock is not visible from another host on every network file
system, a heartbeat is).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from scrfd_search.errors import UserError
from scrfd_search.io_utils import atomic_write_json

DRIVER_FILE = "driver.json"
LOCK_FILE = "driver.lock"
HEARTBEAT_S = 10.0
STALE_S = 6 * HEARTBEAT_S


@dataclass(frozen=True)
class DriverInfo:
    """What driver.json says about the process driving a search."""

    pid: int
    host: str
    command: str
    started: float
    heartbeat: float

    def describe(self) -> str:
        """'resume (pid 123 on host-a, heartbeat 4 s ago)'."""
        age = max(0.0, time.time() - self.heartbeat)
        return f"{self.command} (pid {self.pid} on {self.host}, heartbeat {age:.0f} s ago)"


def read_driver(store_dir: Path) -> DriverInfo | None:
    """The last driver's record (None when there is none or it is unreadable: treated as no driver)."""
    try:
        data = json.loads((store_dir / DRIVER_FILE).read_text())
        return DriverInfo(
            pid=int(data["pid"]),
            host=str(data["host"]),
            command=str(data["command"]),
            started=float(data["started"]),
            heartbeat=float(data["heartbeat"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def live_driver(store_dir: Path, now: float | None = None) -> DriverInfo | None:
    """The driver of this store if it is alive (fresh heartbeat, and on this host a live pid), else None."""
    info = read_driver(store_dir)
    if info is None:
        return None
    now = time.time() if now is None else now
    if now - info.heartbeat > STALE_S:
        return None
    if info.host == socket.gethostname() and not pid_alive(info.pid):
        return None
    return info


class DriverLease:
    """Context manager held by launch and resume: the store's lock and a heartbeat thread."""

    def __init__(self, store_dir: Path, command: str, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.store_dir = Path(store_dir)
        self.command = command
        self.heartbeat_s = heartbeat_s
        self._lock: IO[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.time()

    def __enter__(self) -> DriverLease:
        """Take the lock (or fail naming the live driver), write driver.json, start the heartbeat."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self.store_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held until __exit__)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            other = read_driver(self.store_dir)
            who = other.describe() if other else "another process"
            raise UserError(f"{self.store_dir}: this search is being driven by {who}; wait for it or stop it") from None
        self._lock = lock
        self._beat()
        self._thread = threading.Thread(target=self._run, name="scrfd-search-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Stop the heartbeat, remove driver.json, release the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        (self.store_dir / DRIVER_FILE).unlink(missing_ok=True)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def _record(self) -> dict[str, Any]:
        """driver.json's content now."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": self._started,
            "heartbeat": time.time(),
        }

    def _beat(self) -> None:
        """Rewrite driver.json with a fresh heartbeat."""
        atomic_write_json(self.store_dir / DRIVER_FILE, self._record())

    def _run(self) -> None:
        """The heartbeat thread (a failed write is retried at the next beat: the search goes on)."""
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(OSError):
                self._beat()
