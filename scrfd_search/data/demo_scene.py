"""Synthetic WIDER FACE-like scenes: drawn faces with landmarks, blur, occlusion, crowds and distractors.

Faces are drawn shapes: skin-toned ellipses with eyes, brows, nose and mouth at the five landmarks,
under random rotation, scale and colour, up to a crowd per image; their sizes follow the real WIDER
FACE val distribution relative to image width (face_sizes.json, from tools/face_size_stats.py) scaled
by `size_scale`, down to a few pixels, smaller in crowded images. Each face's blur and occlusion
levels are drawn with the frequencies WIDER's val faces of its size class have (small faces mostly
heavily blurred), then rendered: a Gaussian blur, an occluder over part of the face, and neighbours in
a crowd overlapping it; the occlusion label is the covered fraction actually drawn. Backgrounds are
gradients, blurred noise and random shapes; distractors are face-like blobs without features. A few
faces are obscured beyond recognition and marked invalid.

The faces are composed from cv2 primitives (ellipses, polylines); only their layout is ours.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

FACE_SIZES_PATH = Path(__file__).with_name("face_sizes.json")
EVENTS = ("0--Street", "1--Meeting", "2--Parade", "3--Party")
SHIFT = 4  # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
SKIN_TONES_BGR = ((189, 224, 255), (173, 205, 241), (134, 176, 224), (105, 151, 198), (74, 118, 160), (45, 80, 120))
# Landmarks in face-local units (x along the ellipse's width, y along its height, both in [-1, 1]):
# left eye, right eye, nose tip, left mouth corner, right mouth corner.
LANDMARKS_LOCAL = np.array([[-0.38, -0.15], [0.38, -0.15], [0.0, 0.18], [-0.33, 0.5], [0.33, 0.5]])


# WIDER's test size over the demo's (640 px against `make demo`'s 192): demo faces are this much larger
# relative to the image than WIDER's, so that they are as large in the network's input as WIDER's are.
DEMO_SIZE_SCALE = 640 / 192
SIZE_CLASSES = ("easy", "medium", "hard", "none")  # the hardest subset a face first counts in; none: too small
BLUR_SIGMA = (0.0, 0.05, 0.14)  # Gaussian sigma per blur level, as a fraction of the face size
BLUR_MIN_SIGMA = (0.0, 0.4, 0.9)
OCCLUDED_COVER = ((0.0, 0.0), (0.12, 0.28), (0.38, 0.65))  # share of the face box an occluder covers, per level
PARTIAL, HEAVY = 0.05, 0.30  # occluded fractions from which WIDER's occlusion label is 1 (partial) or 2 (heavy)
CROWD_OVERLAP = 0.3  # how much of a face box a neighbour's may cover


@dataclass(frozen=True)
class DemoConfig:
    """What to generate; every random choice derives from `seed`."""

    num_train: int = 200
    num_val: int = 50
    seed: int = 0
    min_width: int = 320
    max_width: int = 480
    min_face_px: float = 3.0  # smallest face drawn; faces below the hard subset's height count in no subset
    max_faces: int = 40
    max_distractors: int = 6
    invalid_fraction: float = 0.05
    empty_fraction: float = 0.04
    jpeg_quality: int = 92
    size_scale: float = DEMO_SIZE_SCALE  # face sizes and subset heights: WIDER's (relative to width) times this
    crowd_fill: float = 0.3  # the faces of an image cover at most about this fraction of it
    clear_faces: bool = False  # True: no blur and no occluders (tests and benchmarks of the training path)


@dataclass(frozen=True)
class DemoFace:
    """One drawn face: box (x1, y1, x2, y2), five (x, y) landmarks, whether it is invalid, and WIDER's
    pose, blur and occlusion labels (0 none, 1 partial/normal, 2 heavy)."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    invalid: bool
    pose: int
    blur: int = 0
    occlusion: int = 0

    @property
    def height(self) -> float:
        """Box height in pixels (WIDER's subsets go by height)."""
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """sqrt(w * h) in pixels."""
        return math.sqrt((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


@dataclass(frozen=True)
class DemoImage:
    """One generated image: where it goes, its size, its faces and its JPEG bytes."""

    event: str
    name: str
    width: int
    height: int
    faces: tuple[DemoFace, ...]
    jpeg: bytes

    @property
    def rel_path(self) -> str:
        """`<event>/<name>.jpg`, as the annotation files spell it."""
        return f"{self.event}/{self.name}.jpg"


@lru_cache(maxsize=1)
def load_face_sizes() -> dict:
    """The shipped WIDER FACE val face-size statistics."""
    return json.loads(FACE_SIZES_PATH.read_text())


def size_class(height: float, width: int, size_scale: float, stats: dict) -> str:
    """The hardest subset a valid face of this height first counts in (by WIDER's height thresholds
    relative to image width, times size_scale), or 'none' below the hard subset's."""
    for subset in SIZE_CLASSES[:3]:
        if height >= stats["subset_min_relative_height"][subset] * size_scale * width:
            return subset
    return "none"


def sample_quantiles(rng: np.random.Generator, quantiles: list[float], log: bool = False) -> float:
    """Inverse-CDF sample from evenly spaced quantiles (interpolated in log space if `log`)."""
    values = np.log(np.asarray(quantiles)) if log else np.asarray(quantiles, dtype=float)
    pos = rng.uniform(0, len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    value = values[lo] + (values[hi] - values[lo]) * (pos - lo)
    return float(np.exp(value) if log else value)


# ---------------------------------------------------------------- drawing primitives


def _fx(value: float) -> int:
    """A coordinate in cv2's fixed-point (shifted) representation."""
    return int(round(value * (1 << SHIFT)))


def _ellipse(img: np.ndarray, center, axes, angle: float, color, thickness: int = -1) -> None:
    """Anti-aliased sub-pixel ellipse."""
    cv2.ellipse(
        img,
        (_fx(center[0]), _fx(center[1])),
        (max(1, _fx(axes[0])), max(1, _fx(axes[1]))),
        angle,
        0,
        360,
        tuple(int(c) for c in color),
        thickness,
        cv2.LINE_AA,
        SHIFT,
    )


def _mask_ellipse(mask: np.ndarray, center, axes, angle: float, value: int) -> None:
    """Fill an ellipse with a label value (no anti-aliasing: a label map, not a picture)."""
    cv2.ellipse(
        mask,
        (_fx(center[0]), _fx(center[1])),
        (max(1, _fx(axes[0])), max(1, _fx(axes[1]))),
        angle,
        0,
        360,
        value,
        -1,
        cv2.LINE_8,
        SHIFT,
    )


def _polyline(img: np.ndarray, points: np.ndarray, color, thickness: int) -> None:
    """Anti-aliased open polyline through points (k, 2)."""
    pts = np.round(points * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [pts], False, tuple(int(c) for c in color), max(1, thickness), cv2.LINE_AA, SHIFT)


def _jitter_color(rng: np.random.Generator, color, amount: float) -> np.ndarray:
    """color + uniform noise, clipped to 0..255."""
    return np.clip(np.asarray(color, float) + rng.uniform(-amount, amount, 3), 0, 255)


def draw_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Gradient plus blurred noise plus random shapes, BGR uint8."""
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    xs = np.arange(width, dtype=np.float32)[None, :] * math.cos(angle)
    ys = np.arange(height, dtype=np.float32)[:, None] * math.sin(angle)
    t = xs + ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c1.astype(np.float32) + (c2 - c1).astype(np.float32) * t[..., None]
    coarse = rng.uniform(-1, 1, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.float32)
    img += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) * rng.uniform(15, 50)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 14))):
        _draw_clutter_shape(rng, img)
    return img


def _draw_clutter_shape(rng: np.random.Generator, img: np.ndarray) -> None:
    """One random rectangle, circle or line somewhere on img."""
    h, w = img.shape[:2]
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    x, y = rng.uniform(0, w), rng.uniform(0, h)
    size = rng.uniform(0.05, 0.4) * min(w, h)
    kind = int(rng.integers(3))
    thickness = -1 if rng.random() < 0.6 else int(rng.integers(1, 4))
    if kind == 0:
        cv2.rectangle(img, (int(x), int(y)), (int(x + size), int(y + size * rng.uniform(0.3, 2))), color, thickness)
    elif kind == 1:
        cv2.circle(img, (int(x), int(y)), int(size / 2), color, thickness, cv2.LINE_AA)
    else:
        end = (int(x + rng.uniform(-1, 1) * size * 2), int(y + rng.uniform(-1, 1) * size * 2))
        cv2.line(img, (int(x), int(y)), end, color, int(rng.integers(1, 5)), cv2.LINE_AA)


def _to_image(center: np.ndarray, axes: np.ndarray, angle_deg: float, local: np.ndarray) -> np.ndarray:
    """Face-local points (k, 2) in [-1, 1] units -> image coordinates."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return center + (local * axes) @ rot.T


def rotated_ellipse_box(center: np.ndarray, axes: np.ndarray, angle_deg: float) -> np.ndarray:
    """Axis-aligned (x1, y1, x2, y2) of an ellipse with semi-axes `axes` rotated by angle_deg."""
    a = math.radians(angle_deg)
    half_w = math.hypot(axes[0] * math.cos(a), axes[1] * math.sin(a))
    half_h = math.hypot(axes[0] * math.sin(a), axes[1] * math.cos(a))
    return np.array([center[0] - half_w, center[1] - half_h, center[0] + half_w, center[1] + half_h])


def draw_face(
    rng: np.random.Generator,
    img: np.ndarray,
    center: np.ndarray,
    axes: np.ndarray,
    angle: float,
    owner: np.ndarray | None = None,
    index: int = 0,
) -> np.ndarray:
    """Draw a face (hair, skin, eyes, brows, nose, mouth); return its five landmarks (5, 2).

    With an `owner` label map, its skin is marked `index` there and its hair 0 (covering what was behind).
    """
    skin = _jitter_color(rng, SKIN_TONES_BGR[int(rng.integers(len(SKIN_TONES_BGR)))], 14)
    if rng.random() < 0.7:  # hair behind the head, showing above it
        hair = _jitter_color(rng, (20, 30, 45), 20)
        hair_center = _to_image(center, axes, angle, np.array([[0.0, -0.18]]))[0]
        hair_axes = axes * rng.uniform(1.02, 1.12)
        _ellipse(img, hair_center, hair_axes, angle, hair)
        if owner is not None:
            _mask_ellipse(owner, hair_center, hair_axes, angle, 0)
    _ellipse(img, center, axes, angle, skin)
    if owner is not None:
        _mask_ellipse(owner, center, axes, angle, index)
    yaw = rng.uniform(-0.12, 0.12)
    local = LANDMARKS_LOCAL + np.array([yaw, 0.0]) + rng.uniform(-0.04, 0.04, LANDMARKS_LOCAL.shape)
    points = _to_image(center, axes, angle, local)
    eye_axes = axes * np.array([0.17, 0.1])
    for eye in points[:2]:
        if axes[0] >= 6:
            _ellipse(img, eye, eye_axes, angle, (235, 235, 235))
        _ellipse(img, eye, np.maximum(eye_axes * 0.6, 0.8), angle, _jitter_color(rng, (35, 25, 20), 15))
    line_width = max(1, int(round(axes[0] * 0.09)))
    dark_skin = skin * 0.6
    for side in (-1, 1):
        brow = _to_image(center, axes, angle, local[0 if side < 0 else 1] + np.array([[-0.16, -0.2], [0.16, -0.22]]))
        _polyline(img, brow, (30, 30, 40), line_width)
    nose_top = local[2] + np.array([0.0, -0.25])
    _polyline(img, _to_image(center, axes, angle, np.array([nose_top, local[2]])), dark_skin, line_width)
    mouth_mid = (local[3] + local[4]) / 2 + np.array([0.0, rng.uniform(0.02, 0.12)])
    mouth = _to_image(center, axes, angle, np.array([local[3], mouth_mid, local[4]]))
    _polyline(img, mouth, _jitter_color(rng, (60, 50, 170), 25), max(1, int(round(axes[0] * 0.12))))
    return points


def draw_distractor(
    rng: np.random.Generator, img: np.ndarray, center: np.ndarray, axes: np.ndarray, angle: float
) -> None:
    """A face-like blob without facial features: a skin or random coloured ellipse, maybe striped."""
    if rng.random() < 0.6:
        color = _jitter_color(rng, SKIN_TONES_BGR[int(rng.integers(len(SKIN_TONES_BGR)))], 14)
    else:
        color = rng.uniform(0, 255, 3)
    _ellipse(img, center, axes, angle, color)
    if rng.random() < 0.4:
        stripe = _to_image(center, axes, angle, np.array([[-0.8, 0.0], [0.8, 0.0]]))
        _polyline(img, stripe, rng.uniform(0, 255, 3), max(1, int(axes[1] * 0.2)))


def obscure(rng: np.random.Generator, img: np.ndarray, box: np.ndarray) -> None:
    """Blur a face heavily and cover part of it, the way WIDER's invalid faces are unrecognisable."""
    x1, y1 = max(int(box[0]) - 1, 0), max(int(box[1]) - 1, 0)
    x2, y2 = min(int(math.ceil(box[2])) + 1, img.shape[1]), min(int(math.ceil(box[3])) + 1, img.shape[0])
    k = max(3, int((x2 - x1) * 0.35)) | 1
    img[y1:y2, x1:x2] = cv2.GaussianBlur(img[y1:y2, x1:x2], (k, k), 0)
    cover_y = int(y1 + (y2 - y1) * rng.uniform(0.3, 0.6))
    cv2.rectangle(img, (x1, cover_y), (x2 - 1, y2 - 1), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)


def blur_face(img: np.ndarray, center: np.ndarray, axes: np.ndarray, angle: float, level: int) -> None:
    """Blur a drawn face (and its hair) at a WIDER blur level, fading out at its edge; level 0 is a no-op."""
    if level == 0:
        return
    size = 2 * math.sqrt(axes[0] * axes[1])
    sigma = BLUR_SIGMA[level] * size + BLUR_MIN_SIGMA[level]
    box = rotated_ellipse_box(center, axes * 1.3 + 2 * sigma, angle)
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(math.ceil(box[2])) + 1, img.shape[1]), min(int(math.ceil(box[3])) + 1, img.shape[0])
    if x2 <= x1 or y2 <= y1:
        return
    patch = img[y1:y2, x1:x2]
    mask = np.zeros(patch.shape[:2], np.uint8)
    _ellipse(mask, center - (x1, y1), axes * 1.2, angle, (255,))
    weight = cv2.GaussianBlur(mask, (0, 0), max(sigma, 1.0)).astype(np.float32)[..., None] / 255
    blurred = cv2.GaussianBlur(patch, (0, 0), sigma).astype(np.float32)
    patch[:] = np.clip(blurred * weight + patch * (1 - weight), 0, 255).astype(np.uint8)


def draw_occluder(rng: np.random.Generator, img: np.ndarray, owner: np.ndarray, box: np.ndarray, level: int) -> None:
    """Cover a share of a face box from one side (a hand, a hat, a scarf, a shoulder), at an occlusion level."""
    lo, hi = OCCLUDED_COVER[level]
    cover = rng.uniform(lo, hi)
    x1, y1, x2, y2 = box
    side = int(rng.integers(4))
    if side == 0:  # from below
        rect = (x1 - 1, y2 - (y2 - y1) * cover, x2 + 1, y2 + 1)
    elif side == 1:  # from above
        rect = (x1 - 1, y1 - 1, x2 + 1, y1 + (y2 - y1) * cover)
    elif side == 2:  # from the left
        rect = (x1 - 1, y1 - 1, x1 + (x2 - x1) * cover, y2 + 1)
    else:
        rect = (x2 - (x2 - x1) * cover, y1 - 1, x2 + 1, y2 + 1)
    corners = (int(round(rect[0])), int(round(rect[1]))), (int(round(rect[2])), int(round(rect[3])))
    if rng.random() < 0.3:  # skin: a hand
        color = _jitter_color(rng, SKIN_TONES_BGR[int(rng.integers(len(SKIN_TONES_BGR)))], 20)
    else:
        color = rng.uniform(0, 255, 3)
    cv2.rectangle(img, *corners, tuple(int(c) for c in color), -1)
    cv2.rectangle(owner, *corners, 0, -1)


def occlusion_label(covered: float) -> int:
    """WIDER's occlusion label from the covered fraction of a face: 0 none, 1 partial, 2 heavy."""
    return 2 if covered > HEAVY else 1 if covered >= PARTIAL else 0


def pick_level(rng: np.random.Generator, fractions: list[float]) -> int:
    """A label 0, 1 or 2 drawn with the given frequencies."""
    p = np.asarray(fractions, dtype=float)
    return int(rng.choice(3, p=p / p.sum()))


# ---------------------------------------------------------------- layout of one image


def crowd_quantiles(stats: dict, count: int) -> list[float]:
    """WIDER's relative face-size quantiles for images with about `count` faces (crowds: smaller faces)."""
    bin_index = int(np.searchsorted(stats["crowd_bins"], max(count, 1), side="right")) - 1
    return stats["relative_size_quantiles_by_crowd"][bin_index]


def _sample_axes(
    rng: np.random.Generator, width: int, height: int, config: DemoConfig, quantiles: list[float], cap: float
) -> np.ndarray:
    """Ellipse semi-axes (a, b) for a face whose sqrt(w*h) follows the given relative-size quantiles
    times size_scale, at most `cap` pixels and at least min_face_px."""
    size = sample_quantiles(rng, quantiles, log=True) * config.size_scale * width
    size = float(np.clip(size, config.min_face_px, max(config.min_face_px, min(cap, 0.55 * min(width, height)))))
    aspect = float(np.clip(sample_quantiles(rng, load_face_sizes()["aspect_ratio_quantiles"]), 1.0, 1.6))
    return np.array([size / math.sqrt(aspect), size * math.sqrt(aspect)]) / 2


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes over the smaller one's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / smaller)


def _place(
    rng: np.random.Generator,
    width: int,
    height: int,
    axes: np.ndarray,
    angle: float,
    taken: list,
    max_overlap: float = 0.0,
):
    """A centre where the rotated ellipse fits inside the image and covers at most max_overlap of any
    taken box (and they of it); or None."""
    for _ in range(30):
        center = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        box = rotated_ellipse_box(center, axes * 1.12, angle)  # margin for hair
        if box[0] < 1 or box[1] < 1 or box[2] > width - 1 or box[3] > height - 1:
            continue
        if all(_overlap(box, t) <= max_overlap for t in taken):
            taken.append(box)
            return center
    return None


def _num_faces(rng: np.random.Generator, config: DemoConfig, stats: dict) -> int:
    """Faces in one image: 0 with empty_fraction, else the real count distribution clipped."""
    if rng.random() < config.empty_fraction:
        return 0
    count = round(sample_quantiles(rng, stats["faces_per_image_quantiles"]))
    return int(np.clip(count, 1, config.max_faces))


def _layout_faces(rng: np.random.Generator, width: int, height: int, config: DemoConfig, stats: dict, taken: list):
    """(centre, axes, angle) of each face that found a place; crowded images get smaller faces."""
    count = _num_faces(rng, config, stats)
    quantiles = crowd_quantiles(stats, count)
    cap = math.sqrt(config.crowd_fill * width * height / max(count, 1))
    shapes = []
    for _ in range(count):
        axes, angle = _sample_axes(rng, width, height, config, quantiles, cap), rng.uniform(-25, 25)
        center = _place(rng, width, height, axes, angle, taken, CROWD_OVERLAP)
        if center is not None:
            shapes.append((center, axes, angle))
    return shapes


def _draw_faces(rng: np.random.Generator, img: np.ndarray, shapes: list, config: DemoConfig, stats: dict) -> list:
    """Draw the faces in order (later ones in front), each blurred and occluded at levels drawn for its
    size class; return their faces with labels, occlusion measured on what was drawn."""
    owner = np.zeros(img.shape[:2], np.int16)  # which face each pixel shows (0: none); max_faces < 2**15
    drafts = []
    for index, (center, axes, angle) in enumerate(shapes, start=1):
        box = np.round(rotated_ellipse_box(center, axes, angle))
        invalid = bool(rng.random() < config.invalid_fraction)
        kind = size_class(float(box[3] - box[1]), img.shape[1], config.size_scale, stats)
        levels = stats["attributes_by_size_class"][kind]
        blur, occlusion = pick_level(rng, levels["blur"]), pick_level(rng, levels["occlusion"])
        if config.clear_faces:
            blur = occlusion = 0
        points = draw_face(rng, img, center, axes, angle, owner, index)
        area = int((owner == index).sum())
        if invalid:
            obscure(rng, img, box)
            owner[owner == index] = 0
        else:
            blur_face(img, center, axes, angle, blur)
            if occlusion:
                draw_occluder(rng, img, owner, box, occlusion)
        drafts.append((box, points, invalid, int(abs(angle) > 20), blur, area))
    faces = []
    for index, (box, points, invalid, pose, blur, area) in enumerate(drafts, start=1):
        covered = 1.0 - (owner == index).sum() / area if area else 0.0
        landmarks = tuple((round(float(x), 2), round(float(y), 2)) for x, y in points)
        labels = (2, 2) if invalid else (blur, occlusion_label(covered))
        faces.append(DemoFace(tuple(box.tolist()), landmarks, invalid, pose, *labels))
    return faces


def render_image(rng: np.random.Generator, config: DemoConfig, stats: dict) -> tuple[np.ndarray, list[DemoFace]]:
    """Draw one image with its faces and distractors; return the BGR image and the faces."""
    width = int(rng.integers(config.min_width, config.max_width + 1))
    height = int(round(width * rng.uniform(0.7, 1.3)))
    img = draw_background(rng, width, height)
    taken: list[np.ndarray] = []
    shapes = _layout_faces(rng, width, height, config, stats, taken)
    for _ in range(int(rng.integers(0, config.max_distractors + 1))):
        quantiles = stats["relative_size_quantiles"]
        axes = _sample_axes(rng, width, height, config, quantiles, math.inf) * rng.uniform(1.0, 1.6)
        angle = rng.uniform(-40, 40)
        center = _place(rng, width, height, axes, angle, taken)
        if center is not None:
            draw_distractor(rng, img, center, axes, angle)
    faces = _draw_faces(rng, img, shapes, config, stats)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * 3.0
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, faces


def generate_split(split: str, count: int, config: DemoConfig) -> list[DemoImage]:
    """All images of one split, each from its own RNG stream (seed, split, index)."""
    stats = load_face_sizes()
    split_id = 0 if split == "train" else 1
    images = []
    for index in range(count):
        rng = np.random.default_rng([config.seed, split_id, index])
        img, faces = render_image(rng, config, stats)
        ok, encoded = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        event = EVENTS[index % len(EVENTS)]
        event_id, event_name = event.split("--")
        name = f"{event_id}_{event_name}_{split}_{index}"
        images.append(DemoImage(event, name, img.shape[1], img.shape[0], tuple(faces), encoded.tobytes()))
    return sorted(images, key=lambda im: (EVENTS.index(im.event), int(im.name.rsplit("_", 1)[1])))
