"""Export searched architectures: a full-schedule mmdet config, the ArchSpec, its FLOPs, search metrics, ONNX.

One folder per exported model, named `<rank>_<trial id>` (or the ArchSpec file's stem):
  <stem>.py        mmdet 3.x config: SCRFD's 640-epoch schedule on WIDER FACE with large-crop sample
                   redistribution and the WIDER FACE metric; mmdet's tools/train.py (or ours) takes it as is
  <stem>.json      the ArchSpec (beside the config, so `scrfd-search flops <stem>.py` finds it)
  flops.json       GFLOPs and parameters per component (stem, C2-C5, neck, head) and the shares
  metrics.json     what the search measured (trial id, easy/medium/hard AP, epochs, experiment, step)
  <stem>.onnx      with --onnx: backbone -> neck -> head, raw per-stride outputs, dynamic H and W
  onnx.json        with --onnx: inputs, outputs, preprocessing, where the weights came from, self-check
plus export.json listing them. Everything is written into a temporary folder beside the destination and
renamed into place at the end, so an export is either complete or absent.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.flops.report import FlopsReport
from scrfd_search.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text
from scrfd_search.recipe import OPTIMIZERS, Recipe
from scrfd_search.search.store import ExperimentStore, TrialRecord, ranked, store_path
from scrfd_search.space.arch import ArchSpec

WIDERFACE_DATA_ROOT = "data/widerface"
GT_SUBDIR = "wider_face_split"  # where wider_face_val.mat and wider_{easy,medium,hard}_val.mat live
LARGE_MODEL_GFLOPS = 20.0  # the reference trains its 34GF model with twice the lr of the smaller ones
LARGE_MODEL_LR_FACTOR = 2.0
RECIPE_FIELDS = ("optimizer", "lr", "weight_decay", "momentum")
ONNX_OPSET = 17  # supported by the TorchScript exporter of torch 2.13 and by current runtimes
ONNX_CHECK_SIZES = ((640, 640), (480, 640))  # (H, W) the export is verified at against PyTorch
ONNX_TOLERANCE = 1e-4
STRIDES = (8, 16, 32)
OUTPUT_GROUPS = ("cls_logits", "bbox_distances", "keypoints")
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
    recipe: dict[str, Any] | None = None  # what the trial trained with (None where nobody chose: defaults)


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
        "search_recipe": trial.recipe or settings.get("recipe"),
        "ranked_by": "hard AP on the WIDER FACE validation set",
    }


def trial_recipe(trial: TrialRecord, settings: dict[str, Any]) -> dict[str, Any] | None:
    """What a trial chose of its recipe: all of it when the search sampled one, else the launch's choices.

    A launch's --lr is left out: it sets short search runs (often compensating a small batch), not the
    full schedule, which takes the optimiser's default for the model's size instead.
    """
    if trial.recipe is not None:
        return dict(trial.recipe)
    chosen = {k: settings.get(k) for k in ("optimizer", "weight_decay", "momentum") if settings.get(k) is not None}
    return chosen or None


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
                recipe=trial_recipe(trial, settings),
            )
        )
    return items


def item_from_arch(path: str | os.PathLike) -> ExportItem:
    """One ArchSpec JSON file as an export item, written straight into the export folder (no search metrics)."""
    from scrfd_search.flops.analytic import count_flops

    path = Path(path)
    arch = ArchSpec.load(path)
    stem = safe_name(path.stem)
    return ExportItem("", stem, arch, count_flops(arch), "closed-form count (scrfd_search.flops.analytic)")


# ------------------------------------------------------------------ the config


def widerface_data(data_root: str = WIDERFACE_DATA_ROOT) -> Any:
    """Real WIDER FACE in the official layout: 640x640 large-crop training, metric ground truth beside it."""
    from scrfd_search.data.pipelines import LARGE_CROPS
    from scrfd_search.detector import DataSettings

    if not data_root.strip():
        raise UserError("--data-root: empty (expected the WIDER FACE folder, e.g. data/widerface)")
    root = data_root.rstrip("/") or "/"
    return DataSettings(data_root=root, gt_dir=f"{root}/{GT_SUBDIR}", layout="wider", crop_choice=LARGE_CROPS)


def export_recipe(item: ExportItem, flags: dict[str, Any] | None = None) -> Recipe:
    """The recipe an exported config trains with: the export's flags, else the trial's choices, else defaults.

    A flag naming another optimiser than the trial's drops the trial's numbers (they belong to its
    optimiser). Without a chosen lr, SGD-family optimisers take the reference's: twice the base lr above
    LARGE_MODEL_GFLOPS (the reference's 34 GF model), the others their published one.
    """
    chosen = dict(item.recipe or {})
    given = {k: v for k, v in (flags or {}).items() if k in RECIPE_FIELDS and v is not None}
    if given.get("optimizer", chosen.get("optimizer")) != chosen.get("optimizer", "sgd"):
        chosen = {}
    chosen.update(given)
    optimizer = chosen.get("optimizer", "sgd")
    if "momentum" not in given and OPTIMIZERS.get(optimizer) and OPTIMIZERS[optimizer].momentum is None:
        chosen.pop("momentum", None)
    if chosen.get("lr") is None and item.flops.total_gflops > LARGE_MODEL_GFLOPS:
        default = OPTIMIZERS.get(optimizer)
        if default is not None and default.momentum is not None:
            chosen["lr"] = LARGE_MODEL_LR_FACTOR * default.lr
    return Recipe(**{k: chosen.get(k) for k in RECIPE_FIELDS if k != "optimizer"}, optimizer=optimizer)


def full_config(
    item: ExportItem, data_root: str = WIDERFACE_DATA_ROOT, recipe_flags: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The full-schedule training config dict for an item."""
    from scrfd_search.detector import Schedule, build_config

    schedule = Schedule.full(export_recipe(item, recipe_flags))
    return build_config(item.arch, data=widerface_data(data_root), schedule=schedule, work_dir=f"work_dirs/{item.stem}")


def config_text(cfg: dict[str, Any], header: str) -> str:
    """The config as mmengine writes Python config files, after a comment header."""
    from mmengine.config import Config

    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + Config(cfg).pretty_text


def check_config_file(path: Path, arch: ArchSpec) -> None:
    """Read the written config back with mmengine and check it describes arch (fail before publishing)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(path), import_custom_modules=False)
    if ArchSpec.from_dict(cfg.to_dict()["scrfd_arch"], str(path)) != arch:
        raise RuntimeError(f"{path}: the written config does not round-trip to its ArchSpec")


def _header(item: ExportItem, data_root: str, recipe: Recipe) -> str:
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
        f"Full schedule (640 epochs), WIDER FACE at {data_root}, optimizer {recipe.describe()}; train with:\n"
        f"  python tools/train.py {item.stem}.py --work-dir work_dirs/{item.stem}"
    )


# ------------------------------------------------------------------ ONNX


def onnx_output_names(with_keypoints: bool) -> list[str]:
    """Output names in the order the wrapper returns them: each group, then each stride."""
    groups = OUTPUT_GROUPS if with_keypoints else OUTPUT_GROUPS[:2]
    return [f"{group}_{stride}" for group in groups for stride in STRIDES]


def raw_head_module(detector: Any) -> Any:
    """backbone -> neck -> head of an mmdet detector as a module returning a flat tuple of head outputs."""
    import torch

    class RawHead(torch.nn.Module):
        """The dense part of the detector, without preprocessing, decoding or NMS."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.neck, self.bbox_head = detector.backbone, detector.neck, detector.bbox_head

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            """Per-stride outputs, grouped: class logits, box distances, (keypoint offsets)."""
            outputs = self.bbox_head(self.neck(self.backbone(images)))
            return tuple(t for group in outputs for t in group)

    return RawHead().eval()


def load_detector(arch: ArchSpec, checkpoint: Path | None) -> Any:
    """The detector for arch, with the checkpoint's weights when one is given (else freshly initialised)."""
    import torch
    from mmengine.logging import MMLogger

    from scrfd_search.detector import build_model

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter's initialiser at INFO
    try:
        model = build_model(arch)
    finally:
        logger.setLevel(level)
    if checkpoint is not None:
        # weights_only=False: mmengine checkpoints also pickle the message hub's history; these files are
        # the search's own output, not downloads.
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        try:
            model.load_state_dict(state.get("state_dict", state), strict=True)
        except RuntimeError as exc:
            raise UserError(
                f"{checkpoint}: does not fit the trial's architecture ({str(exc).splitlines()[0]})"
            ) from None
    return model.eval()


def export_onnx_bytes(module: Any, with_keypoints: bool, sample_hw: tuple[int, int]) -> bytes:
    """The module as ONNX (TorchScript exporter: the dynamo one needs onnxscript, not installed)."""
    import io

    import torch

    names = onnx_output_names(with_keypoints)
    dynamic = {"input": {0: "batch", 2: "height", 3: "width"}}
    dynamic |= {n: {0: "batch", 2: f"height_{n.rsplit('_', 1)[1]}", 3: f"width_{n.rsplit('_', 1)[1]}"} for n in names}
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
        images = torch.randn(1, 3, h, w, generator=generator)
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
    from scrfd_search.detector import PIXEL_MEAN, PIXEL_STD, SIZE_DIVISOR

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
        "outputs": onnx_output_names(item.arch.head.keypoints),
        "output_layout": {
            "cls_logits_S": "N x (2 anchors x 1) x H/S x W/S, face logits (apply a sigmoid)",
            "bbox_distances_S": "N x (2 anchors x 4) x H/S x W/S, left/top/right/bottom distances in units of S",
            "keypoints_S": "N x (2 anchors x 10) x H/S x W/S, five (x, y) offsets in units of S (keypoint heads only)",
            "anchors": "2 per location at strides 8/16/32, centred on (x, y) * S",
        },
        "check": {"sizes_hw": [list(s) for s in ONNX_CHECK_SIZES], "max_abs_diff_vs_pytorch": max_diff},
    }


def write_onnx(item: ExportItem, folder: Path) -> dict[str, Any]:
    """Export item's detector to ONNX in folder, verify it against PyTorch, and write onnx.json."""
    module = raw_head_module(load_detector(item.arch, item.checkpoint))
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


def write_item(
    item: ExportItem, folder: Path, data_root: str, with_onnx: bool, recipe_flags: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every file of one exported model into folder; its entry for export.json."""
    config_path = folder / f"{item.stem}.py"
    recipe = export_recipe(item, recipe_flags)
    cfg = full_config(item, data_root, recipe_flags)
    atomic_write_text(config_path, config_text(cfg, _header(item, data_root, recipe)))
    check_config_file(config_path, item.arch)
    atomic_write_text(folder / f"{item.stem}.json", item.arch.to_json())
    atomic_write_json(folder / "flops.json", flops_summary(item))
    entry: dict[str, Any] = {
        "folder": item.folder or ".",
        "config": _relative(item, f"{item.stem}.py"),
        "arch": _relative(item, f"{item.stem}.json"),
        "total_gflops": item.flops.total_gflops,
        "params_m": item.flops.params_m,
        "recipe": recipe.to_dict(),
    }
    if item.metrics is not None:
        atomic_write_json(folder / "metrics.json", item.metrics)
        entry |= {k: item.metrics[k] for k in ("rank", "trial_id", "easy", "medium", "hard")}
    if with_onnx:
        note = write_onnx(item, folder)
        entry |= {"onnx": _relative(item, note["file"]), "onnx_freshly_initialised": note["freshly_initialised"]}
    return entry


def _publish(staging: Path, out: Path) -> None:
    """Move the finished staging folder to out, replacing an old export in one rename."""
    if not out.exists():
        os.replace(staging, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, trash / out.name)
    os.replace(staging, out)
    shutil.rmtree(trash, ignore_errors=True)


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
    recipe_flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write every item into out (built beside it, then renamed into place); the export.json contents.

    recipe_flags (optimizer, lr, weight_decay, momentum; None = not given) override each item's recipe.
    """
    out = Path(out).expanduser().absolute()
    check_destination(out, force)
    for item in items:  # a bad flag is one error before anything is written
        export_recipe(item, recipe_flags)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    try:
        entries = [write_item(item, staging / item.folder, data_root, with_onnx, recipe_flags) for item in items]
        index = {"source": source or {}, "data_root": data_root, "onnx": with_onnx, "models": entries}
        atomic_write_json(staging / INDEX_FILE, index)
        staging.chmod(0o755)  # mkdtemp makes it private; an export is ordinary output
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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
    recipe_flags: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export an experiment's top trials (default out: results/NAME/export); the folder and export.json."""
    items = items_from_experiment(name, top, results_dir, need_checkpoints=with_onnx)
    dest = Path(out) if out is not None else store_path(name, results_dir) / "export"
    source = {"experiment": name, "top": top, "store": str(store_path(name, results_dir))}
    return dest, write_export(
        items, dest, data_root=data_root, with_onnx=with_onnx, force=force, source=source, recipe_flags=recipe_flags
    )


def export_arch(
    arch_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    data_root: str = WIDERFACE_DATA_ROOT,
    with_onnx: bool = False,
    force: bool = False,
    recipe_flags: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export one ArchSpec file (default out: export/<file stem>); the folder and export.json."""
    item = item_from_arch(arch_path)
    dest = Path(out) if out is not None else Path("export") / item.stem
    source = {"arch_file": str(arch_path)}
    return dest, write_export(
        [item], dest, data_root=data_root, with_onnx=with_onnx, force=force, source=source, recipe_flags=recipe_flags
    )
