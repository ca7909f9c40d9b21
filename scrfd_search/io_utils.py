"""Atomic file writes, so that an interrupted job never leaves a half-written result."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to path through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text (UTF-8) to path atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write obj as indented, key-sorted JSON atomically (byte-stable for equal objects)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def check_writable(path: str | os.PathLike, flag: str) -> None:
    """Fail with a UserError naming flag unless files can be created at path (checked before any work).

    The nearest existing folder on the way must be a folder and accept a new file: this catches a
    read-only mount, an immutable folder and a path under a regular file, and creates nothing.
    """
    from scrfd_search.errors import UserError

    target = Path(path).expanduser().absolute()
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{flag}: {target}: {probe} is a file, not a folder (cannot create anything under it)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".scrfd-search-write-check.", dir=probe)
    except OSError as exc:
        raise UserError(f"{flag}: {target}: cannot write in {probe} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)
