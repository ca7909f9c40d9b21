"""WIDER FACE prediction files: `<dir>/<event>/<image>.txt` holding the image name, the number of
boxes, then one `x y w h score` line per box."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import ImageKey, WiderFaceGT
from scrfd_search.io_utils import atomic_write_text

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LINE_FORMAT = "x y w h score"


@dataclass(frozen=True, eq=False)
class PredictionSet:
    """Detections per (event, image name) as (P, 5) float64 arrays of x y w h score.

    `missing` lists ground-truth images with no prediction file (they count as no detections);
    `extra` lists files for images the ground truth does not hold (their scores still take part in
    the min-max score normalisation, as in the official tool, which normalises over every file read).
    """

    detections: Mapping[ImageKey, np.ndarray]
    missing: tuple[ImageKey, ...] = ()
    extra: tuple[ImageKey, ...] = field(default=())

    @property
    def num_predictions(self) -> int:
        """Total number of boxes over all images."""
        return sum(int(boxes.shape[0]) for boxes in self.detections.values())


def xyxy_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Convert (N, 4) x1 y1 x2 y2 boxes to x y w h with w = x2 - x1, h = y2 - y1 (float64)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])


def _image_name_from_header(line: str) -> str:
    """The image name of a file's first line: its last path component without an image extension."""
    name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
    for extension in IMAGE_EXTENSIONS:
        if name.lower().endswith(extension):
            return name[: -len(extension)]
    return name


def _parse_box_lines(path: Path, rows: list[str], first_line: int) -> np.ndarray:
    """Parse `x y w h score` lines into a (P, 5) float64 array; UserError `path:line` on the first bad one."""
    tokens = [row.split() for row in rows]
    for offset, parts in enumerate(tokens):
        if len(parts) != 5:
            raise UserError(
                f"{path}:{first_line + offset}: expected '{LINE_FORMAT}' (5 numbers), got {rows[offset].strip()!r}"
            )
    try:
        values = np.array(tokens, dtype=np.float64).reshape(-1, 5)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        for offset, parts in enumerate(tokens):
            try:
                numbers = [float(part) for part in parts]
            except ValueError:
                numbers = [float("nan")]
            if not np.isfinite(numbers).all():
                raise UserError(
                    f"{path}:{first_line + offset}: expected '{LINE_FORMAT}' as 5 finite "
                    f"numbers, got {rows[offset].strip()!r}"
                ) from None
    negative = np.flatnonzero((values[:, 2] < 0) | (values[:, 3] < 0))
    if negative.size:
        row = int(negative[0])
        raise UserError(
            f"{path}:{first_line + row}: expected a box width and height of 0 or more, got {rows[row].strip()!r}"
        )
    return values


def read_prediction_file(path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """Read one prediction file: (image name from its first line, (P, 5) x y w h score array)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read prediction file ({exc})") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not _image_name_from_header(lines[0]):
        raise UserError(f"{path}:1: expected the image name on the first line")
    if len(lines) < 2:
        raise UserError(f"{path}:2: expected the number of boxes on the second line, got end of file")
    try:
        count = int(lines[1].strip())
    except ValueError:
        count = -1
    if count < 0:
        raise UserError(f"{path}:2: expected the number of boxes (an integer >= 0), got {lines[1].strip()!r}")
    rows = lines[2:]
    if len(rows) != count:
        raise UserError(f"{path}:2: expected {count} '{LINE_FORMAT}' lines after the count, found {len(rows)}")
    if not rows:
        return _image_name_from_header(lines[0]), np.zeros((0, 5), dtype=np.float64)
    return _image_name_from_header(lines[0]), _parse_box_lines(path, rows, first_line=3)


def _prediction_files(pred_dir: Path) -> list[tuple[str, Path]]:
    """(event, file) for every `<event>/<image>.txt` under pred_dir, hidden entries skipped, sorted."""
    found = []
    for event_dir in sorted(pred_dir.iterdir()):
        if event_dir.name.startswith(".") or not event_dir.is_dir():
            continue
        for file in sorted(event_dir.iterdir()):
            if file.suffix == ".txt" and not file.name.startswith(".") and file.is_file():
                found.append((event_dir.name, file))
    return found


def read_predictions(
    pred_dir: str | os.PathLike, gt: WiderFaceGT | None = None, *, log_missing: bool = True
) -> PredictionSet:
    """Read every prediction file of a folder; with gt, also note which gt images have no file.

    Missing files count as no detections; they are returned in `missing` and, with log_missing, their
    number is logged once (not per file). A file whose first line names another image than its file
    name is an error.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise UserError(f"{pred_dir}: prediction folder not found (expected <event>/<image>.txt files)")
    files = _prediction_files(pred_dir)
    if not files:
        raise UserError(f"{pred_dir}: no prediction files found (expected <event>/<image>.txt files)")
    detections: dict[ImageKey, np.ndarray] = {}
    for event, file in files:
        name, boxes = read_prediction_file(file)
        if name != file.stem:
            raise UserError(f"{file}:1: expected the image name {file.stem!r} (the file's name), got {name!r}")
        detections[(event, name)] = boxes
    if gt is None:
        return PredictionSet(detections)
    missing = tuple(key for key in gt.index if key not in detections)
    extra = tuple(key for key in detections if key not in gt.index)
    if missing and log_missing:
        logger.warning(
            "%d of %d ground-truth images have no prediction file under %s; counted as no detections",
            len(missing),
            len(gt),
            pred_dir,
        )
    return PredictionSet(detections, missing, extra)


def _check_name(value: str, what: str) -> None:
    """Raise unless value can be a single path component."""
    if not value or "/" in value or "\\" in value or value in (".", "..") or value.strip() != value:
        raise UserError(
            f"prediction file: expected a plain {what} name (no slashes or surrounding spaces), got {value!r}"
        )


def format_prediction_file(image: str, boxes_xywh: np.ndarray, scores: np.ndarray) -> str:
    """The text of a prediction file; numbers are written as exact (round-trip) decimal floats."""
    lines = [image, str(len(scores))]
    for (x, y, w, h), score in zip(boxes_xywh.tolist(), scores.tolist(), strict=True):
        lines.append(f"{x!r} {y!r} {w!r} {h!r} {score!r}")
    return "\n".join(lines) + "\n"


def write_prediction_file(
    out_dir: str | os.PathLike, event: str, image: str, boxes_xyxy: np.ndarray, scores: np.ndarray
) -> Path:
    """Write `<out_dir>/<event>/<image>.txt` atomically from x1 y1 x2 y2 boxes and scores; return its path."""
    _check_name(event, "event")
    _check_name(image, "image")
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.size == 0 and score_array.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != score_array.shape[0]:
        raise UserError(
            f"prediction file {event}/{image}: expected N x 4 boxes and N scores, got boxes of "
            f"shape {boxes.shape} and {score_array.shape[0]} scores"
        )
    if not (np.isfinite(boxes).all() and np.isfinite(score_array).all()):
        raise UserError(f"prediction file {event}/{image}: expected finite boxes and scores")
    path = Path(out_dir) / event / f"{image}.txt"
    atomic_write_text(path, format_prediction_file(image, xyxy_to_xywh(boxes), score_array))
    return path
