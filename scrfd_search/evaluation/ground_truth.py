"""The WIDER FACE validation ground truth: the four official .mat files, or Python lists."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from scrfd_search.errors import UserError

SUBSETS: tuple[str, ...] = ("easy", "medium", "hard")
FACES_FILE = "wider_face_val.mat"
SUBSET_FILES: dict[str, str] = {subset: f"wider_{subset}_val.mat" for subset in SUBSETS}

ImageKey = tuple[str, str]


def _read_only(array: np.ndarray) -> np.ndarray:
    """Return the array marked read-only, so a frozen ground truth stays frozen."""
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class GTImage:
    """One validation image: its faces (x y w h) and, per subset, the 0-based indices of faces that count."""

    event: str
    name: str
    boxes: np.ndarray
    keep: Mapping[str, np.ndarray]

    @property
    def key(self) -> ImageKey:
        """The (event, image name) pair that identifies this image."""
        return (self.event, self.name)

    @property
    def num_faces(self) -> int:
        """Number of annotated faces, kept or not."""
        return int(self.boxes.shape[0])


@dataclass(frozen=True, eq=False)
class WiderFaceGT:
    """The validation ground truth, images in the official (event, file) order."""

    images: tuple[GTImage, ...]

    def __post_init__(self) -> None:
        seen: set[ImageKey] = set()
        for image in self.images:
            if image.key in seen:
                raise UserError(f"ground truth: image {image.event}/{image.name} appears twice")
            seen.add(image.key)

    def __len__(self) -> int:
        return len(self.images)

    @cached_property
    def index(self) -> dict[ImageKey, int]:
        """Position of each (event, image name) in `images`."""
        return {image.key: i for i, image in enumerate(self.images)}

    @property
    def events(self) -> tuple[str, ...]:
        """Event names in order of first appearance."""
        return tuple(dict.fromkeys(image.event for image in self.images))

    def num_faces(self, subset: str | None = None) -> int:
        """Faces in all images (subset None) or faces that count in a subset (the official count_face)."""
        if subset is None:
            return sum(image.num_faces for image in self.images)
        return sum(len(image.keep[subset]) for image in self.images)

    def restrict(self, keys: Iterable[ImageKey]) -> WiderFaceGT:
        """The ground truth of the given images only (unknown keys are left out), in the official order."""
        wanted = set(keys)
        return WiderFaceGT(tuple(image for image in self.images if image.key in wanted))


def _validated_boxes(boxes: Any, where: str) -> np.ndarray:
    """Boxes as a read-only (N, 4) float64 array of x y w h."""
    array = np.asarray(boxes)
    if array.size == 0:
        return _read_only(np.zeros((0, 4), dtype=np.float64))
    if array.dtype.kind not in "iuf":
        raise UserError(f"{where}: expected numeric face boxes (x y w h), got dtype {array.dtype}")
    if array.ndim == 1 and array.size == 4:
        array = array.reshape(1, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise UserError(f"{where}: expected an N x 4 array of face boxes (x y w h), got shape {array.shape}")
    array = np.array(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise UserError(f"{where}: expected finite face boxes, found NaN or infinity")
    return _read_only(array)


def _validated_keep(indices: Any, num_faces: int, where: str, *, one_based: bool) -> np.ndarray:
    """Kept-face indices as a read-only 0-based int64 array, each checked against the number of faces."""
    array = np.asarray(indices)
    if array.size == 0:
        return _read_only(np.zeros(0, dtype=np.int64))
    if array.dtype.kind not in "iuf" or (array.dtype.kind == "f" and not np.all(array == np.round(array))):
        raise UserError(f"{where}: expected integer face indices, got {array.ravel()[:5].tolist()}")
    flat = array.ravel().astype(np.int64) - (1 if one_based else 0)
    if flat.min() < 0 or flat.max() >= num_faces:
        base = "1-based" if one_based else "0-based"
        raise UserError(
            f"{where}: expected {base} face indices for an image with {num_faces} faces, got "
            f"{(flat + (1 if one_based else 0)).tolist()[:10]}"
        )
    return _read_only(flat)


def build_ground_truth(
    entries: Iterable[tuple[str, str, Any, Mapping[str, Sequence[int]] | None]],
) -> WiderFaceGT:
    """Ground truth from (event, image name, boxes x y w h, {subset: 0-based kept indices} or None) tuples.

    A None keep mapping keeps every face in every subset; a mapping must name all three subsets.
    """
    images = []
    for event, name, boxes, keep in entries:
        where = f"ground truth {event}/{name}"
        box_array = _validated_boxes(boxes, where)
        if keep is None:
            keep = {subset: range(box_array.shape[0]) for subset in SUBSETS}
        missing = [subset for subset in SUBSETS if subset not in keep]
        if missing:
            raise UserError(f"{where}: keep indices missing for subset(s) {missing} (expected {list(SUBSETS)})")
        keep_arrays = {
            subset: _validated_keep(list(keep[subset]), box_array.shape[0], f"{where} ({subset})", one_based=False)
            for subset in SUBSETS
        }
        images.append(GTImage(str(event), str(name), box_array, keep_arrays))
    return WiderFaceGT(tuple(images))


# --- reading the official .mat files -------------------------------------------------------------
# scipy.io.loadmat returns MATLAB cell arrays as object arrays of any 2-D shape (the official files
# use N x 1, savemat-written ones often 1 x N) and strings either as 1-element unicode arrays or,
# for char matrices, as arrays of space-padded strings; the helpers below accept all of these.


def _load_mat(path: Path, variables: Sequence[str]) -> dict[str, Any]:
    """Load the named variables of a .mat file, with a UserError naming the file on any problem."""
    from scipy.io import loadmat  # scipy.io is slow to import; only this path needs it

    if not path.is_file():
        raise UserError(
            f"{path}: file not found (expected the official WIDER FACE ground truth file "
            f"{path.name} holding {', '.join(variables)})"
        )
    try:
        content = loadmat(os.fspath(path), variable_names=list(variables))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise UserError(f"{path}: cannot read as a MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    missing = [name for name in variables if name not in content]
    if missing:
        raise UserError(f"{path}: missing variable(s) {missing} (expected {', '.join(variables)})")
    return {name: content[name] for name in variables}


def _cells(value: Any, where: str) -> list[Any]:
    """The elements of a MATLAB cell array (or of a char matrix, as stripped strings)."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value.ravel(order="F"))
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return [str(item).rstrip() for item in value.ravel(order="F")]
    raise UserError(
        f"{where}: expected a cell array, got {type(value).__name__} "
        f"{getattr(value, 'dtype', '')} {getattr(value, 'shape', '')}".rstrip()
    )


def _text(value: Any, where: str) -> str:
    """A MATLAB string, unwrapped from the nested 1-element arrays loadmat puts around it."""
    while isinstance(value, np.ndarray):
        if value.dtype.kind == "U" and value.size == 1 or value.dtype == object and value.size == 1:
            value = value.ravel()[0]
        else:
            raise UserError(f"{where}: expected a string, got an array of shape {value.shape} and dtype {value.dtype}")
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _unwrap_numeric(value: Any) -> Any:
    """A numeric array, unwrapped from a 1-element cell if savemat wrapped it in one."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.ravel()[0]
    return value


def _per_event(value: Any, num_events: int, path: Path, variable: str) -> list[list[Any]]:
    """A cell array of per-event cell arrays, checked to hold one entry per event."""
    outer = _cells(value, f"{path}: {variable}")
    if len(outer) != num_events:
        raise UserError(
            f"{path}: {variable} has {len(outer)} events, expected {num_events} (one per event of {FACES_FILE})"
        )
    return [_cells(_unwrap_event(item), f"{path}: {variable}[{i}]") for i, item in enumerate(outer)]


def _unwrap_event(value: Any) -> Any:
    """An event's inner cell array (loadmat wraps it once more when the outer cell holds a single cell)."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        inner = value.ravel()[0]
        if isinstance(inner, np.ndarray) and inner.dtype == object:
            return inner
    return value


def _check_image_counts(event: str, expected: int, path: Path, variable: str, found: int) -> None:
    """Raise unless a per-image list of an event has one entry per image of file_list."""
    if found != expected:
        raise UserError(
            f"{path}: {variable} for event {event} has {found} images, expected {expected} "
            f"(as in file_list of {FACES_FILE})"
        )


def load_ground_truth(gt_dir: str | os.PathLike) -> WiderFaceGT:
    """Load wider_face_val.mat and wider_{easy,medium,hard}_val.mat from a folder."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise UserError(
            f"{gt_dir}: ground-truth folder not found (expected a folder holding {FACES_FILE} "
            f"and {', '.join(SUBSET_FILES.values())})"
        )
    faces_path = gt_dir / FACES_FILE
    faces = _load_mat(faces_path, ("event_list", "file_list", "face_bbx_list"))
    events = [
        _text(item, f"{faces_path}: event_list[{i}]")
        for i, item in enumerate(_cells(faces["event_list"], f"{faces_path}: event_list"))
    ]
    files = _per_event(faces["file_list"], len(events), faces_path, "file_list")
    boxes = _per_event(faces["face_bbx_list"], len(events), faces_path, "face_bbx_list")
    keeps: dict[str, list[list[Any]]] = {}
    for subset, file_name in SUBSET_FILES.items():
        subset_path = gt_dir / file_name
        gt_list = _load_mat(subset_path, ("gt_list",))["gt_list"]
        keeps[subset] = _per_event(gt_list, len(events), subset_path, "gt_list")

    subset_paths = {subset: str(gt_dir / SUBSET_FILES[subset]) for subset in SUBSETS}
    entries = []
    for e, event in enumerate(events):
        _check_image_counts(event, len(files[e]), faces_path, "face_bbx_list", len(boxes[e]))
        for subset in SUBSETS:
            _check_image_counts(event, len(files[e]), gt_dir / SUBSET_FILES[subset], "gt_list", len(keeps[subset][e]))
        for j, file_item in enumerate(files[e]):
            image = _text(file_item, f"{faces_path}: file_list[{e}][{j}]")
            where = f"{faces_path}: face_bbx_list for {event}/{image}"
            box_array = _validated_boxes(_unwrap_numeric(boxes[e][j]), where)
            keep = {
                subset: _validated_keep(
                    _unwrap_numeric(keeps[subset][e][j]),
                    box_array.shape[0],
                    f"{subset_paths[subset]}: gt_list for {event}/{image}",
                    one_based=True,
                )
                for subset in SUBSETS
            }
            entries.append(GTImage(event, image, box_array, keep))
    return WiderFaceGT(tuple(entries))
