"""Export searched architectures: a full-schedule mmdet config, the ArchSpec, its FLOPs, search metrics, ONNX.

One folder per exported model, named `<rank>_<trial id>` (or the ArchSpec file's stem):
  <stem>.py        a short mmdet 3.x config over the export's _base_/ files (written once, at the top):
                   SCRFD's 640-epoch schedule on WIDER FACE with large-crop sample redistribution and
                   the WIDER FACE metric; mmdet's tools/train.py (or ours) takes it as is
  <stem>.json      the ArchSpec (beside the config, so `scrfd-search flops <stem>.py` finds it)
  flops.json       GFLOPs and parameters per component (stem, C2-C5, neck, head) and the shares
  metrics.json     what the search measured (trial id, easy/medium/hard AP, epochs, experiment, step)
  <stem>.onnx      with --onnx: backbone -> neck -> head in the released SCRFD models' convention
                   (input 1x3xHxW, outputs score_8/16/32, bbox_*, kps_*; dynamic H and W)
  onnx.json        with --onnx: inputs, outputs, preprocessing, where the weights came from, self-check
plus export.json listing them. Everything is written into a temporary folder beside the destination and
renamed into place at the end (io_utils.staged_folder), so an export is either complete or absent.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrfd_search.config_builder import PIXEL_MEAN, PIXEL_STD, SIZE_DIVISOR, build_model
from scrfd_search.config_writer import WIDERFACE_DATA_ROOT, full_config, write_bases, write_child
from scrfd_search.errors import UserError
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.report import FlopsReport
from scrfd_search.io_utils import atomic_write_bytes, atomic_write_json, staged_folder
from scrfd_search.search.store import ExperimentStore, TrialRecord, ranked, store_path
from scrfd_search.space.arch import ArchSpec

ONNX_OPSET = 17  # supported by the TorchScript exporter of torch 2.13 and by current runtimes
ONNX_CHECK_SIZES = ((640, 640), (480, 640))  # (H, W) the export is verified at against PyTorch
ONNX_TOLERANCE = 1e-4
STRIDES = (8, 16, 32)
# The released models' output groups (insightface's SCRFD runtime reads them in this order).
OUTPUT_GROUPS = ("score", "bbox", "kps")
OUTPUT_CHANNELS = {"score": 1, "bbox": 4, "kps": 10}
INDEX_FILE = "export.json"


@dataclass(frozen=True)
class ExportItem:
    """One model to export: its sub-folder ('' for the export folder itself), file stem, arch, metrics."""

    folder: str
    stem: str
    arch: ArchSpec
    flops: FlopsReport
    flops_source: str
    metrics: dict[str, Any] | None = None
    checkpoint: Path | None = None


def safe_name(text: str) -> str:
    """A file-name-safe version of text (letters, digits, - _ . kept; the rest become _)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


# ------------------------------------------------------------------ choosing what to export


def _resolve_checkpoint(trial: TrialRecord, experiment_dir: Path) -> Path | None:
    """The trial's checkpoint file (absolute, or relative to the experiment or the current folder)."""
    if not trial.checkpoint:
        return None
    path = Path(trial.checkpoint).expanduser()
    for candidate in (path,) if path.is_absolute() else (experiment_dir / path, Path.cwd() / path):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(
        f"{experiment_dir / 'leaderboard.json'}: trial {trial.trial_id}: checkpoint {trial.checkpoint} "
        "not found (it was moved or deleted; export without --onnx, or restore it)"
    )


def search_metrics(trial: TrialRecord, rank: int, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The numbers a trial was chosen on, and the search that measured them."""
    return {
        "experiment": name,
        "step": settings.get("step"),
        "budget_gflops": settings.get("budget_gflops"),
        "search_epochs": settings.get("epochs"),
        "trial_id": trial.trial_id,
        "rank": rank,
        "state": trial.state,
        "easy": trial.easy,
        "medium": trial.medium,
        "hard": trial.hard,
        "epochs": trial.epochs_run,
        "ranked_by": "hard AP on the WIDER FACE validation set",
    }


def items_from_experiment(
    name: str, top: int, results_dir: str | os.PathLike | None = None, need_checkpoints: bool = False
) -> list[ExportItem]:
    """The top `top` finished trials of an experiment by hard AP (failed trials are never exported)."""
    if top < 1:
        raise UserError(f"--top: {top} must be at least 1")
    store = ExperimentStore(store_path(name, results_dir))
    settings = store.read_experiment()
    best = [t for t in ranked(store.read_trials()) if t.state != "ERROR"][:top]
    if not best:
        raise UserError(f"{store.leaderboard_file}: no trial with a hard AP yet (nothing to export)")
    items = []
    for rank, trial in enumerate(best, 1):
        folder = f"{rank:02d}_{safe_name(trial.trial_id)}"
        items.append(
            ExportItem(
                folder=folder,
                stem=f"{safe_name(name)}_{folder}",
                arch=trial.arch,
                flops=trial.flops,
                flops_source=f"recorded by the search ({store.leaderboard_file})",
                metrics=search_metrics(trial, rank, name, settings),
                checkpoint=_resolve_checkpoint(trial, store.path) if need_checkpoints else None,
            )
        )
    return items


def item_from_arch(path: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> ExportItem:
    """One ArchSpec JSON file (and optionally its trained or imported checkpoint) as an export item."""
    path = Path(path)
    arch = ArchSpec.load(path)
    stem = safe_name(path.stem)
    ckpt = None
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise UserError(f"--checkpoint {ckpt}: no such file")
        ckpt = ckpt.resolve()
    flops = count_flops(arch)
    return ExportItem("", stem, arch, flops, "closed-form count (scrfd_search.flops.analytic)", checkpoint=ckpt)


# ------------------------------------------------------------------ the config


def _header(item: ExportItem, data_root: str) -> str:
    """The comment at the top of an exported config."""
    origin = (
        f"trial {item.metrics['trial_id']} of experiment {item.metrics['experiment']} "
        f"(step {item.metrics['step']}, rank {item.metrics['rank']} by hard AP)"
        if item.metrics
        else "an ArchSpec file"
    )
    return (
        f"SCRFD-style detector exported by scrfd-search from {origin}.\n"
        f"{item.flops.total_gflops:.3f} GFLOPs at {item.flops.input_shape[1]}x{item.flops.input_shape[0]}, "
        f"{item.flops.params_m:.3f} M parameters.\n"
        f"Full schedule (640 epochs), WIDER FACE at {data_root}; train with:\n"
        f"  python tools/train.py {item.stem}.py --work-dir work_dirs/{item.stem}"
    )


# ------------------------------------------------------------------ ONNX


def released_output_names(with_keypoints: bool) -> list[str]:
    """Output names in the released models' order: each group (score, bbox, kps), then each stride."""
    groups = OUTPUT_GROUPS if with_keypoints else OUTPUT_GROUPS[:2]
    return [f"{group}_{stride}" for group in groups for stride in STRIDES]


def released_head_module(detector: Any) -> Any:
    """backbone -> neck -> head of an mmdet detector with the released SCRFD ONNX models' outputs.

    Per stride S, with A = H/S * W/S * 2 anchors (row-major locations, two anchors each):
    score_S (1, A, 1) sigmoid face score; bbox_S (1, A, 4) left/top/right/bottom distances from the
    anchor centre in units of S; kps_S (1, A, 10) five (x, y) offsets from the centre in units of S.
    """
    import torch

    class ReleasedOutputs(torch.nn.Module):
        """The dense part of the detector, without decoding or NMS, in the released layout."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.neck, self.bbox_head = detector.backbone, detector.neck, detector.bbox_head

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            """score_*, bbox_*, (kps_*) per stride 8, 16, 32."""
            outputs = self.bbox_head(self.neck(self.backbone(images)))
            flat = []
            for group, per_level in zip(OUTPUT_GROUPS, outputs, strict=False):
                for t in per_level:
                    t = t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, OUTPUT_CHANNELS[group])
                    flat.append(t.sigmoid() if group == "score" else t)
            return tuple(flat)

    return ReleasedOutputs().eval()


def load_detector(arch: ArchSpec, checkpoint: Path | None) -> Any:
    """The detector for arch, with the checkpoint's weights when one is given (else freshly initialised)."""
    import torch

    model = build_model(arch)
    if checkpoint is not None:
        # weights_only=False: mmengine checkpoints also pickle the message hub's history; these files are
        # the search's own output, not downloads.
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            raise UserError(f"{checkpoint}: not a PyTorch checkpoint ({str(exc).splitlines()[0][:160]})") from None
        if not isinstance(state, dict):
            raise UserError(f"{checkpoint}: not a checkpoint (expected a dict with a state_dict)")
        weights = state.get("state_dict", state)
        misfit = first_misfit(model.state_dict(), weights)
        if misfit:
            raise UserError(f"{checkpoint}: does not fit the architecture ({misfit})")
        model.load_state_dict(weights, strict=True)
    return model.eval()


def first_misfit(expected: dict[str, Any], given: dict[str, Any]) -> str | None:
    """The first tensor that is missing, unexpected or of another shape in `given`, said in words."""
    for name, tensor in expected.items():
        if name not in given:
            return f"no {name} {tuple(tensor.shape)} in the checkpoint"
        shape = tuple(getattr(given[name], "shape", ()))
        if shape != tuple(tensor.shape):
            return f"{name} is {shape} in the checkpoint, {tuple(tensor.shape)} in the architecture"
    extra = [name for name in given if name not in expected]
    return f"the architecture has no {extra[0]} ({len(extra)} such tensors)" if extra else None


def export_onnx_bytes(module: Any, with_keypoints: bool, sample_hw: tuple[int, int]) -> bytes:
    """The module as ONNX (TorchScript exporter: the dynamo one needs onnxscript, not installed)."""
    import io

    import torch

    names = released_output_names(with_keypoints)
    dynamic = {"input": {2: "height", 3: "width"}}
    dynamic |= {n: {1: f"anchors_{n.rsplit('_', 1)[1]}"} for n in names}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter announces its deprecation; GroupNorm's batch-size check is traced as a constant
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, *sample_hw),),
            buf,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=names,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    return buf.getvalue()


def onnx_max_difference(module: Any, onnx_bytes: bytes, sizes: tuple[tuple[int, int], ...], seed: int = 0) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's outputs on random inputs of each size."""
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for h, w in sizes:
        images = torch.randn(1, 3, h, w, generator=generator)  # the released convention: batch 1
        with torch.no_grad():
            expected = [t.numpy() for t in module(images)]
        got = session.run(None, {"input": images.numpy()})
        for e, g in zip(expected, got, strict=True):
            if e.shape != g.shape:
                raise RuntimeError(f"ONNX output shape {g.shape} differs from PyTorch's {e.shape} at {h}x{w}")
            worst = max(worst, float(np.max(np.abs(e - g))) if e.size else 0.0)
    return worst


def onnx_note(item: ExportItem, max_diff: float) -> dict[str, Any]:
    """What onnx.json says: the tensors, the preprocessing, the weights' origin, the self-check."""
    return {
        "file": f"{item.stem}.onnx",
        "opset": ONNX_OPSET,
        "weights": str(item.checkpoint) if item.checkpoint else None,
        "freshly_initialised": item.checkpoint is None,
        "input": {
            "name": "input",
            "shape": ["batch", 3, "height", "width"],
            "preprocessing": f"RGB, (pixel - {PIXEL_MEAN[0]}) / {PIXEL_STD[0]}, H and W multiples of {SIZE_DIVISOR}",
        },
        "outputs": released_output_names(item.arch.head.keypoints),
        "output_layout": {
            "convention": "insightface's released SCRFD ONNX models (its SCRFD runtime reads them unchanged)",
            "score_S": "1 x A x 1, sigmoid face score; A = (H/S) x (W/S) x 2 anchors, row-major, 2 per location",
            "bbox_S": "1 x A x 4, left/top/right/bottom distances from the anchor centre in units of S",
            "kps_S": "1 x A x 10, five (x, y) offsets from the anchor centre in units of S (keypoint heads only)",
            "anchors": "centres at (x * S, y * S) for strides S = 8, 16, 32",
        },
        "check": {"sizes_hw": [list(s) for s in ONNX_CHECK_SIZES], "max_abs_diff_vs_pytorch": max_diff},
    }


def write_onnx(item: ExportItem, folder: Path) -> dict[str, Any]:
    """Export item's detector to ONNX in folder, verify it against PyTorch, and write onnx.json."""
    module = released_head_module(load_detector(item.arch, item.checkpoint))
    data = export_onnx_bytes(module, item.arch.head.keypoints, ONNX_CHECK_SIZES[0])
    max_diff = onnx_max_difference(module, data, ONNX_CHECK_SIZES)
    if max_diff > ONNX_TOLERANCE:
        raise RuntimeError(f"{item.stem}.onnx: outputs differ from PyTorch by {max_diff:.2e} (> {ONNX_TOLERANCE})")
    atomic_write_bytes(folder / f"{item.stem}.onnx", data)
    note = onnx_note(item, max_diff)
    atomic_write_json(folder / "onnx.json", note)
    return note


# ------------------------------------------------------------------ writing an export


def flops_summary(item: ExportItem) -> dict[str, Any]:
    """flops.json: the report plus its shares and where it came from."""
    return {
        **item.flops.to_dict(),
        "backbone_shares": item.flops.backbone_shares(),
        "detector_shares": item.flops.detector_shares(),
        "source": item.flops_source,
    }


def _relative(item: ExportItem, file_name: str) -> str:
    """A file's path relative to the export folder."""
    return f"{item.folder}/{file_name}" if item.folder else file_name


def write_item(item: ExportItem, folder: Path, data_root: str, with_onnx: bool) -> dict[str, Any]:
    """Every file of one exported model into folder (its config over the export's _base_/); its export.json entry."""
    cfg = full_config(item.arch, data_root, work_dir=f"work_dirs/{item.stem}")
    base_dir = "../_base_" if item.folder else "_base_"
    write_child(folder / f"{item.stem}.py", item.arch, cfg, _header(item, data_root), base_dir)
    atomic_write_json(folder / "flops.json", flops_summary(item))
    entry: dict[str, Any] = {
        "folder": item.folder or ".",
        "config": _relative(item, f"{item.stem}.py"),
        "arch": _relative(item, f"{item.stem}.json"),
        "total_gflops": item.flops.total_gflops,
        "params_m": item.flops.params_m,
    }
    if item.metrics is not None:
        atomic_write_json(folder / "metrics.json", item.metrics)
        entry |= {k: item.metrics[k] for k in ("rank", "trial_id", "easy", "medium", "hard")}
    if with_onnx:
        note = write_onnx(item, folder)
        entry |= {"onnx": _relative(item, note["file"]), "onnx_freshly_initialised": note["freshly_initialised"]}
    return entry


def check_destination(out: Path, force: bool) -> None:
    """Refuse to replace an existing export without force, and anything that is not an export ever."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder (choose another --out)")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / INDEX_FILE).is_file():
        raise UserError(f"{out}: folder is not empty and holds no earlier export ({INDEX_FILE}); choose another --out")
    if not force:
        raise UserError(f"{out}: an earlier export is there (use --force to replace it)")


def write_export(
    items: list[ExportItem],
    out: str | os.PathLike,
    *,
    data_root: str = WIDERFACE_DATA_ROOT,
    with_onnx: bool = False,
    force: bool = False,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write every item into out (built beside it, then renamed into place); the export.json contents."""
    out = Path(out).expanduser().absolute()
    check_destination(out, force)
    with staged_folder(out) as staging:
        write_bases(staging)
        entries = [write_item(item, staging / item.folder, data_root, with_onnx) for item in items]
        index = {"source": source or {}, "data_root": data_root, "onnx": with_onnx, "models": entries}
        atomic_write_json(staging / INDEX_FILE, index)
    return index


def export_experiment(
    name: str,
    top: int = 1,
    out: str | os.PathLike | None = None,
    *,
    results_dir: str | os.PathLike | None = None,
    data_root: str = WIDERFACE_DATA_ROOT,
    with_onnx: bool = False,
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Export an experiment's top trials (default out: results/NAME/export); the folder and export.json."""
    items = items_from_experiment(name, top, results_dir, need_checkpoints=with_onnx)
    dest = Path(out) if out is not None else store_path(name, results_dir) / "export"
    source = {"experiment": name, "top": top, "store": str(store_path(name, results_dir))}
    return dest, write_export(items, dest, data_root=data_root, with_onnx=with_onnx, force=force, source=source)


def export_arch(
    arch_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    data_root: str = WIDERFACE_DATA_ROOT,
    with_onnx: bool = False,
    force: bool = False,
    checkpoint: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export one ArchSpec file (default out: export/<file stem>); the folder and export.json."""
    item = item_from_arch(arch_path, checkpoint)
    dest = Path(out) if out is not None else Path("export") / item.stem
    source = {"arch_file": str(arch_path)}
    return dest, write_export([item], dest, data_root=data_root, with_onnx=with_onnx, force=force, source=source)
