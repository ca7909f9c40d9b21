"""Parsers for the two WIDER FACE annotation text formats (no mmdet needed).

Official: `wider_face_split/wider_face_{train,val}_bbx_gt.txt`: an image path line, a count line, then
one `x y w h blur expression illumination invalid occlusion pose` line per face (a face-less image
is followed by one line of zeros). RetinaFace/SCRFD `labelv2.txt`: `# path width height`, then one
`x1 y1 x2 y2` line per face followed by 15 landmark numbers (x y flag, all -1 when absent) or by
one ignore flag. Both produce mmdet-style instance dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scrfd_search.errors import UserError

NUM_KEYPOINTS = 5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
WIDER_FACE_FIELDS = "x y w h blur expression illumination invalid occlusion pose"
WIDER_INVALID_COLUMN = 7
RETINAFACE_FIELD_COUNTS = (4, 5, 4 + 3 * NUM_KEYPOINTS)


@dataclass(frozen=True)
class ImageAnnotation:
    """One image's faces as parsed; width/height are None when the format does not record them."""

    name: str
    width: int | None
    height: int | None
    instances: list[dict]
    line: int  # 1-based line of the image's header in the annotation file


def face_instance(bbox: list[float], ignore: bool, keypoints: np.ndarray | None = None) -> dict:
    """An mmdet instance dict for one face (class 0) with (5, 3) keypoints (x, y, visible)."""
    if keypoints is None:
        keypoints = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    return dict(bbox=[float(v) for v in bbox], bbox_label=0, ignore_flag=int(ignore), keypoints=keypoints)


def _numbers(text: str, where: str, expected: str) -> list[float]:
    """Parse a whitespace-separated line of finite numbers or raise a file:line UserError."""
    try:
        values = [float(tok) for tok in text.split()]
    except ValueError:
        raise UserError(f"{where}: expected {expected}, got {text.strip()!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"{where}: expected finite numbers ({expected}), got {text.strip()!r}")
    return values


def _check_size(w: float, h: float, where: str, what: str) -> None:
    """A negative box size is a broken annotation (zero-size faces exist in WIDER FACE and are ignored)."""
    if w < 0 or h < 0:
        raise UserError(f"{where}: expected a box {what} of 0 or more, got {w:g} x {h:g}")


def _too_small(w: float, h: float, min_size: float | None) -> bool:
    """True when a face is degenerate or smaller than min_size in either side."""
    return w <= 0 or h <= 0 or (min_size is not None and (w < min_size or h < min_size))


def _read_lines(path: Path) -> list[str]:
    """The annotation file's lines, or a UserError naming it when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read annotation file ({exc})") from None


def _is_image_path(text: str) -> bool:
    """True for one token ending in an image suffix (the official path line)."""
    return len(text.split()) == 1 and text.lower().endswith(IMAGE_SUFFIXES)


def _is_zero_line(text: str) -> bool:
    """True for the line of zeros that follows a face count of 0."""
    tokens = text.split()
    try:
        return bool(tokens) and all(float(t) == 0 for t in tokens)
    except ValueError:
        return False


def _wider_face(values: list[float], min_size: float | None) -> dict:
    """One official face line -> instance; invalid or too small faces are ignored, never dropped."""
    x, y, w, h = values[:4]
    ignore = values[WIDER_INVALID_COLUMN] == 1 or _too_small(w, h, min_size)
    return face_instance([x, y, x + w, y + h], ignore)


def parse_wider_txt(path: str | Path, min_size: float | None = None) -> list[ImageAnnotation]:
    """Parse an official `wider_face_*_bbx_gt.txt`; raises UserError `file:line: expected ...`."""
    lines = _read_lines(Path(path))
    records: list[ImageAnnotation] = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        header_line = i + 1
        if not _is_image_path(name):
            raise UserError(f"{path}:{header_line}: expected an image path like '0--Parade/0_x.jpg', got {name!r}")
        if i + 1 >= len(lines):
            raise UserError(f"{path}:{header_line + 1}: expected the number of faces of {name}, found end of file")
        count_text = lines[i + 1].strip()
        if not count_text.isdigit():
            raise UserError(f"{path}:{i + 2}: expected the number of faces of {name}, got {count_text!r}")
        count = int(count_text)
        i += 2
        if count == 0 and i < len(lines) and _is_zero_line(lines[i]):
            i += 1
        instances = []
        for k in range(count):
            if i >= len(lines) or not lines[i].strip() or _is_image_path(lines[i].strip()):
                # the count is what is wrong: name its line, not the next image's path line
                raise UserError(
                    f"{path}:{header_line + 1}: {name} has a face count of {count} but only {k} face "
                    f"line(s) follow (expected one line of 10 numbers per face)"
                )
            values = _numbers(lines[i], f"{path}:{i + 1}", f"10 numbers '{WIDER_FACE_FIELDS}'")
            if len(values) != 10:
                raise UserError(f"{path}:{i + 1}: expected 10 numbers '{WIDER_FACE_FIELDS}', got {len(values)}")
            _check_size(values[2], values[3], f"{path}:{i + 1}", "width and height (columns 3 and 4)")
            instances.append(_wider_face(values, min_size))
            i += 1
        records.append(ImageAnnotation(name, None, None, instances, header_line))
    return records


def _retinaface_keypoints(values: list[float]) -> np.ndarray:
    """15 numbers (x y flag per landmark) -> (5, 3) float32 with visibility 1, or zeros when absent."""
    raw = np.asarray(values, dtype=np.float32).reshape(NUM_KEYPOINTS, 3)
    absent = (raw == -1).all(axis=1)
    keypoints = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    keypoints[~absent, :2] = raw[~absent, :2]
    keypoints[~absent, 2] = 1.0
    return keypoints


def _retinaface_face(values: list[float], min_size: float | None) -> dict:
    """One labelv2 face line -> instance (ignore flag or landmarks after the box)."""
    x1, y1, x2, y2 = values[:4]
    ignore = _too_small(x2 - x1, y2 - y1, min_size)
    keypoints = None
    if len(values) == 5:
        ignore = ignore or values[4] == 1
    elif len(values) > 5:
        keypoints = _retinaface_keypoints(values[4:])
    return face_instance([x1, y1, x2, y2], ignore, keypoints)


def _retinaface_header(text: str, where: str) -> tuple[str, int | None, int | None]:
    """`# path [width height]` -> (path, width, height)."""
    tokens = text[1:].split()
    if len(tokens) not in (1, 3) or not tokens[0].lower().endswith(IMAGE_SUFFIXES):
        raise UserError(f"{where}: expected '# <image path> <width> <height>', got {text.strip()!r}")
    if len(tokens) == 1:
        return tokens[0], None, None
    if not (tokens[1].isdigit() and tokens[2].isdigit()):
        raise UserError(f"{where}: expected integer image width and height, got {text.strip()!r}")
    return tokens[0], int(tokens[1]), int(tokens[2])


def parse_retinaface_txt(path: str | Path, min_size: float | None = None) -> list[ImageAnnotation]:
    """Parse a RetinaFace/SCRFD `labelv2.txt`; raises UserError `file:line: expected ...`."""
    records: list[ImageAnnotation] = []
    expected = "4, 5 or 19 numbers 'x1 y1 x2 y2 [ignore | 5 x (x y flag)]'"
    for lineno, text in enumerate(_read_lines(Path(path)), start=1):
        text = text.strip()
        if not text:
            continue
        where = f"{path}:{lineno}"
        if text.startswith("#"):
            name, width, height = _retinaface_header(text, where)
            records.append(ImageAnnotation(name, width, height, [], lineno))
            continue
        if not records:
            raise UserError(f"{where}: expected a '# <image path> <width> <height>' line before face lines")
        values = _numbers(text, where, expected)
        if len(values) not in RETINAFACE_FIELD_COUNTS:
            raise UserError(f"{where}: expected {expected}, got {len(values)} numbers")
        _check_size(values[2] - values[0], values[3] - values[1], where, "x2 - x1 and y2 - y1")
        records[-1].instances.append(_retinaface_face(values, min_size))
    return records
