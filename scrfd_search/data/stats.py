"""What sample redistribution does to the training signal: face sizes after augmentation and the
positive anchors ATSS assigns per stride, for a crop list. Used by `scrfd-search data-stats`.

Anchors follow the SCRFD reference config: strides 8/16/32, ratio 1, scales 1 and 2 on base sizes
16/64/256 (two square anchors per location: 16 and 32 px at stride 8, 64/128 at 16, 256/512 at 32);
mmdet's ATSSAssigner(topk=9) with its default IoU calculator.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scrfd_search.data.pipelines import train_pipeline
from scrfd_search.head_settings import ANCHOR_GENERATOR, ATSS_TOPK, STRIDES

SIZE_BIN_EDGES = (8, 16, 32, 64, 128)
SIZE_BIN_LABELS = ("<8", "8-16", "16-32", "32-64", "64-128", ">=128")
# Transforms that change no box: left out of the statistics pipeline.
BOX_NEUTRAL_TRANSFORMS = ("PhotoMetricDistortion", "DrawPhotoMetricDistortion", "PackFaceInputs")


@dataclass(frozen=True)
class AugmentStats:
    """Face sizes (sqrt(w*h) px at the training input size) and ATSS positives per stride."""

    crop_choice: tuple[float, ...]
    num_images: int
    face_sizes: tuple[float, ...]
    positives: tuple[int, ...]  # one count per entry of STRIDES

    def size_histogram(self) -> list[int]:
        """Faces per SIZE_BIN_LABELS bin."""
        return size_histogram(self.face_sizes)

    def to_dict(self) -> dict:
        """Summary for JSON output."""
        return {
            "crop_choice": list(self.crop_choice),
            "num_images": self.num_images,
            "num_faces": len(self.face_sizes),
            "size_histogram": dict(zip(SIZE_BIN_LABELS, self.size_histogram(), strict=True)),
            "positives_per_stride": {str(s): n for s, n in zip(STRIDES, self.positives, strict=True)},
        }


def size_histogram(sizes: Sequence[float]) -> list[int]:
    """Counts of sizes in the bins <8, 8-16, 16-32, 32-64, 64-128, >=128."""
    bins = np.digitize(np.asarray(sizes, dtype=float), SIZE_BIN_EDGES)
    return [int(v) for v in np.bincount(bins, minlength=len(SIZE_BIN_LABELS))]


def stats_pipeline(img_size: int, crop_choice: Sequence[float]) -> list:
    """The training pipeline's box-changing transforms, built from mmdet's registry."""
    from mmdet.registry import TRANSFORMS

    import scrfd_search.data.transforms  # noqa: F401  (registers the face transforms)

    cfgs = [c for c in train_pipeline(img_size, crop_choice) if c["type"] not in BOX_NEUTRAL_TRANSFORMS]
    return [TRANSFORMS.build(c) for c in cfgs]


class PositiveCounter:
    """Counts the anchors ATSS assigns to faces, per stride, for a square training input."""

    def __init__(self, img_size: int, topk: int = ATSS_TOPK) -> None:
        import torch
        from mmdet.models.task_modules import ATSSAssigner
        from mmdet.registry import TASK_UTILS

        generator = TASK_UTILS.build(ANCHOR_GENERATOR)
        featmaps = [(math.ceil(img_size / s), math.ceil(img_size / s)) for s in STRIDES]
        priors = generator.grid_priors(featmaps, device="cpu")
        self.num_level_priors = [len(p) for p in priors]
        self.priors = torch.cat(priors)
        self.assigner = ATSSAssigner(topk=topk)

    def count(self, boxes: np.ndarray) -> list[int]:
        """Positive anchors per stride for the (N, 4) x1 y1 x2 y2 face boxes of one image."""
        import torch
        from mmengine.structures import InstanceData

        if len(boxes) == 0:
            return [0] * len(STRIDES)
        gt = InstanceData(
            bboxes=torch.as_tensor(boxes, dtype=torch.float32), labels=torch.zeros(len(boxes), dtype=torch.long)
        )
        result = self.assigner.assign(InstanceData(priors=self.priors), self.num_level_priors, gt)
        positive = (result.gt_inds > 0).numpy()
        bounds = np.cumsum([0, *self.num_level_priors])
        return [int(positive[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def collect_stats(data_infos: Sequence[dict], img_size: int, crop_choice: Sequence[float], seed: int) -> AugmentStats:
    """Run each image once through the training transforms (numpy global RNG seeded with `seed`)."""
    import torch

    transforms = stats_pipeline(img_size, crop_choice)
    counter = PositiveCounter(img_size)
    np.random.seed(seed)
    sizes: list[float] = []
    positives = np.zeros(len(STRIDES), dtype=np.int64)
    threads = torch.get_num_threads()
    # The per-image assignment works on small tensors: extra intra-op threads only contend
    # (measured 15x slower with the default thread count on a busy 2-core machine).
    torch.set_num_threads(1)
    try:
        for info in data_infos:
            results = copy.deepcopy(info)
            for t in transforms:
                results = t(results)
            boxes = results["gt_bboxes"].numpy()[~results["gt_ignore_flags"].astype(bool)]
            wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
            sizes.extend(np.sqrt(wh[:, 0] * wh[:, 1]).tolist())
            positives += counter.count(boxes)
    finally:
        torch.set_num_threads(threads)
    return AugmentStats(
        tuple(float(c) for c in crop_choice), len(data_infos), tuple(sizes), tuple(int(v) for v in positives)
    )


def _share(count: int, total: int) -> str:
    """'123 (12.3%)', or '0 (-)' when total is 0."""
    return f"{count} ({100.0 * count / total:.1f}%)" if total else f"{count} (-)"


def format_table(columns: dict[str, AugmentStats]) -> str:
    """Side-by-side text table of face sizes and positives per stride, one column per crop list."""
    names = list(columns)
    width = max(26, *(len(n) + 2 for n in names))

    def row(label: str, cells: list[str]) -> str:
        return f"  {label:<30}" + "".join(f"{c:>{width}}" for c in cells)

    header = "".join(f"{n:>{width}}" for n in names)
    lines = [f"{'face size after augmentation (px)':<32}{header}"]
    hists = {n: s.size_histogram() for n, s in columns.items()}
    for i, label in enumerate(SIZE_BIN_LABELS):
        lines.append(row(label, [_share(hists[n][i], len(columns[n].face_sizes)) for n in names]))
    lines.append(row("faces", [str(len(columns[n].face_sizes)) for n in names]))
    lines += ["", f"{f'ATSS positive anchors (topk {ATSS_TOPK})':<32}{header}"]
    for i, stride in enumerate(STRIDES):
        cells = []
        for n in names:
            stats = columns[n]
            per_image = stats.positives[i] / max(stats.num_images, 1)
            cells.append(f"{_share(stats.positives[i], sum(stats.positives))} {per_image:.1f}/img")
        lines.append(row(f"stride {stride}", cells))
    lines.append(row("total", [str(sum(columns[n].positives)) for n in names]))
    return "\n".join(lines)


def plot_png(columns: dict[str, AugmentStats], title: str) -> bytes:
    """A two-panel PNG: face-size distribution and positives per stride, bars side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_size, ax_pos) = plt.subplots(1, 2, figsize=(11, 4.2))
    bar_width = 0.8 / len(columns)
    for k, (name, stats) in enumerate(columns.items()):
        hist = np.asarray(stats.size_histogram(), dtype=float)
        share = 100 * hist / max(hist.sum(), 1)
        x = np.arange(len(SIZE_BIN_LABELS)) + (k - (len(columns) - 1) / 2) * bar_width
        ax_size.bar(x, share, bar_width, label=name)
        per_image = np.asarray(stats.positives, dtype=float) / max(stats.num_images, 1)
        xs = np.arange(len(STRIDES)) + (k - (len(columns) - 1) / 2) * bar_width
        ax_pos.bar(xs, per_image, bar_width, label=name)
    ax_size.set_xticks(range(len(SIZE_BIN_LABELS)), SIZE_BIN_LABELS)
    ax_size.set_xlabel("face size after augmentation, sqrt(w*h) (px)")
    ax_size.set_ylabel("share of faces (%)")
    ax_size.set_title("face sizes")
    ax_pos.set_xticks(range(len(STRIDES)), [f"stride {s}" for s in STRIDES])
    ax_pos.set_xlabel("feature-map stride")
    ax_pos.set_ylabel(f"ATSS positive anchors per image (topk {ATSS_TOPK})")
    ax_pos.set_title("positive anchors")
    for ax in (ax_size, ax_pos):
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
