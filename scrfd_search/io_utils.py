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

import yaml

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


def read_text_file(
    path: str | os.PathLike, expected: str, error: type[UserError] = UserError, missing: str | None = None
) -> str:
    """A UTF-8 file's text, or a one-line `error` naming the file and what was expected there."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing or 'no such file'} (expected {expected})")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file (expected {expected})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None


def parse_json_text(text: str, source: str, expected: str, error: type[UserError] = UserError) -> Any:
    """JSON text parsed, or a one-line `error` naming source and line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise error(f"{source}: nested too deeply (expected {expected})") from None


def read_json_file(
    path: str | os.PathLike, expected: str, error: type[UserError] = UserError, missing: str | None = None
) -> Any:
    """A JSON file's contents, or a one-line `error` naming the file (and line) and what was expected."""
    return parse_json_text(read_text_file(path, expected, error, missing), str(path), expected, error)


def read_yaml_file(
    path: str | os.PathLike, expected: str, error: type[UserError] = UserError, missing: str | None = None
) -> Any:
    """A YAML file's contents, or a one-line `error` naming the file (and line) and what was expected."""
    text = read_text_file(path, expected, error, missing)
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise error(f"{path}: nested too deeply (expected {expected})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # PyYAML's can span lines
        raise error(f"{where}: not valid YAML ({problem})") from None


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
