"""Atomic file writes, so that an interrupted job never leaves a half-written result."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError

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


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """A new folder beside out to fill; it replaces out when the block ends well, else it is removed.

    Whatever out held before is kept until the new folder is complete, so a folder of results is
    always either the old one or the whole new one, never a mix.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    try:
        yield staging
        staging.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private; results are meant to be shared
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_folder(new: Path, out: Path) -> None:
    """Put new where out is: a rename, with an existing out moved aside first and then deleted."""
    if not out.exists():
        os.replace(new, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, trash / out.name)
    os.replace(new, out)
    shutil.rmtree(trash, ignore_errors=True)


def check_writable(path: str | os.PathLike, flag: str) -> None:
    """Fail with a UserError naming flag unless files can be created at path (checked before any work).

    The nearest existing folder on the way must be a folder and accept a new file: this catches a
    read-only mount, an immutable folder and a path under a regular file, and creates nothing.
    """
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
