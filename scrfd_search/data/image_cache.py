"""What the image check already passed, so `launch`, `resume` and `train` decode an unchanged data set once.

The record lists every image that decoded, keyed by its path inside the data folder with its size and
modification time (ns) when it was checked. An image whose size or time differs, or that is new, is
decoded again; a removed one fails the check as missing (its size cannot be read). The record lives in
the data folder (CACHE_FILE) or, where that folder is read-only, in the user's cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from scrfd_search.io_utils import atomic_write_json

CACHE_FILE = ".scrfd-search-image-check.json"
CACHE_VERSION = 1
Stamp = tuple[int, int]  # (size in bytes, modification time in ns)


@dataclass(frozen=True)
class ImageCheckCache:
    """The images of one data folder that passed the check, with the stamp each had then."""

    root: Path
    file: Path
    passed: dict[str, Stamp]

    def unchecked(self, paths: list[Path]) -> list[Path]:
        """The paths that must be decoded: new, changed or unreadable since they last passed."""
        todo = []
        for path in paths:
            stamp = image_stamp(path)
            if stamp is None or self.passed.get(self._key(path)) != stamp:  # unreadable: the check says why
                todo.append(path)
        return todo

    def with_passed(self, paths: list[Path]) -> ImageCheckCache:
        """The cache with paths recorded as passed, at their current stamps."""
        passed = dict(self.passed)
        for path in paths:
            stamp = image_stamp(path)
            if stamp is not None:
                passed[self._key(path)] = stamp
        return ImageCheckCache(self.root, self.file, passed)

    def save(self) -> None:
        """Write the record atomically; a folder that refuses it only costs a full check next time."""
        images = {key: list(stamp) for key, stamp in sorted(self.passed.items())}
        with contextlib.suppress(OSError):
            atomic_write_json(self.file, {"version": CACHE_VERSION, "images": images})

    def _key(self, path: Path) -> str:
        """The path inside the data folder (the record follows a moved folder)."""
        return os.path.relpath(path, self.root)


def image_stamp(path: Path) -> Stamp | None:
    """(size, mtime in ns) of a file, None when it cannot be read."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def cache_file(root: Path) -> Path:
    """Where the record of a data folder lives: in it when writable, else in the user's cache folder."""
    if os.access(root, os.W_OK):
        return root / CACHE_FILE
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scrfd-search"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return base / f"image-check-{digest}.json"


def load_cache(data_root: str | os.PathLike) -> ImageCheckCache:
    """The record of a data folder (empty when there is none or it cannot be read)."""
    root = Path(data_root).expanduser().resolve()
    file = cache_file(root)
    try:
        data = json.loads(file.read_text())
        images = data["images"] if data.get("version") == CACHE_VERSION else {}
        passed = {str(k): (int(v[0]), int(v[1])) for k, v in images.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        passed = {}  # no record, or one this version does not read: every image is checked
    return ImageCheckCache(root, file, passed)
