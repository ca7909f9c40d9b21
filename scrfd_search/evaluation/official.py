"""Whether a ground-truth folder is the real WIDER FACE validation set.

Published APs (the SCRFD paper's) were measured on WIDER FACE val; a figure may set them beside a
search's APs only when the search was validated there too. The set is recognised by its official
ground truth, wider_face_val.mat: 3,226 images in 61 events.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import FACES_FILE, _cells, _load_mat, _per_event

WIDER_VAL_IMAGES = 3226
WIDER_VAL_EVENTS = 61
WIDER_VAL_TEXT = f"WIDER FACE val ({WIDER_VAL_IMAGES:,} images in {WIDER_VAL_EVENTS} events)"


@dataclass(frozen=True)
class ValidationSet:
    """What a ground-truth folder holds, as far as comparing with published APs needs: image and event
    counts, or why they could not be read."""

    gt_dir: str
    images: int | None = None
    events: int | None = None
    problem: str | None = None

    @property
    def is_wider_val(self) -> bool:
        """Whether this is the real WIDER FACE val set (its official counts)."""
        return self.images == WIDER_VAL_IMAGES and self.events == WIDER_VAL_EVENTS

    def describe(self) -> str:
        """'50 images in 4 events', or the reason the folder could not be read."""
        if self.problem is not None:
            return self.problem
        return f"{self.images:,} images in {self.events} event{'s' * (self.events != 1)}"


def read_validation_set(gt_dir: str | os.PathLike) -> ValidationSet:
    """Count the images and events of gt_dir/wider_face_val.mat; a missing or unreadable file is described,
    not raised (a store copied away from its data can still be plotted)."""
    path = Path(gt_dir) / FACES_FILE
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return ValidationSet(str(gt_dir), problem=f"{path} not found")
    return _read_counts(str(path.resolve()), stamp, str(gt_dir))


@lru_cache(maxsize=16)
def _read_counts(path: str, stamp: int, gt_dir: str) -> ValidationSet:
    """The counts of one file version (stamp: its modification time, so an edited file is read again)."""
    try:
        content = _load_mat(Path(path), ("event_list", "file_list"))
        events = _cells(content["event_list"], f"{path}: event_list")
        images = sum(len(files) for files in _per_event(content["file_list"], len(events), Path(path), "file_list"))
    except UserError as exc:
        return ValidationSet(gt_dir, problem=str(exc))
    return ValidationSet(gt_dir, images=images, events=len(events))


def is_wider_face_val(gt_dir: str | os.PathLike) -> bool:
    """Whether gt_dir holds the real WIDER FACE val ground truth (3,226 images in 61 events)."""
    return read_validation_set(gt_dir).is_wider_val
