"""Export searched architectures: a full-schedule mmdet config, the ArchSpec, its FLOPs, search metrics, ONNX.

One folder per exported model, named `<rank>_<trial id>` (or the ArchSpec file's stem):
  <stem>.py        a short mmdet 3.x config over the export's _base_/ files (written once, at the top):
                   SCRFD's 640-epoch schedule on WIDER FACE with large-crop sample redistribution and
                   the WIDER FACE metric; mmdet's tools/train.py (or ours) takes it as is
  <stem>.json      the ArchSpec (beside the config, so `scrfd-search flops <stem>.py` finds it)
  flops.json       GFLOPs and parameters per component (stem, C2-C5, neck, head) and the shares
  metrics.json     what the search measured (trial id, easy/medium/hard AP, epochs, experiment, step)
  <stem>.onnx      with --onnx: backbone -> neck -> head in the released SCRFD models' convention
                   (input Bx3xHxW, outputs score_8/16/32, bbox_*, kps_* of B x anchors x channels;
                   dynamic B, H and W)
  onnx.json        with --onnx: inputs, outputs, preprocessing, where the weights came from, self-check
plus export.json listing them (with --pareto, each model's measured latency beside its prediction).
Everything is written into a temporary folder beside the destination and renamed into place at the
end (io_utils.staged_folder), so an export is either complete or absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scrfd_search.config_writer import (
    WIDERFACE_DATA_ROOT,
    full_config,
    write_bases,
    write_child,
)
from scrfd_search.errors import UserError
from scrfd_search.export.onnx_file import write_onnx
from scrfd_search.export.selection import ExportItem, experiment_ties, item_from_arch, items_from_experiment
from scrfd_search.io_utils import atomic_write_json, check_writable, staged_folder
from scrfd_search.recipe import DEFAULT_OPTIMIZER, OPTIMIZERS, RECIPE_FIELDS, Recipe, full_recipe
from scrfd_search.search.store import ExperimentStore, store_path

INDEX_FILE = "export.json"
ModelTimer = Callable[[ExportItem, Path], dict[str, Any]]  # an exported model's `latency` entry in export.json


def export_recipe(item: ExportItem, flags: dict[str, Any] | None = None) -> Recipe:
    """The recipe an exported config trains with: the export's flags, else the trial's choices, else defaults.

    A flag naming another optimizer than the trial's drops the trial's numbers (they belong to its
    optimizer); what stays unchosen follows recipe.full_recipe (the reference's lr by model size).
    """
    chosen = dict(item.recipe or {})
    given = {k: v for k, v in (flags or {}).items() if k in RECIPE_FIELDS and v is not None}
    if given.get("optimizer", chosen.get("optimizer")) != chosen.get("optimizer", DEFAULT_OPTIMIZER):
        chosen = {}
    chosen.update(given)
    optimizer = chosen.get("optimizer", DEFAULT_OPTIMIZER)
    if "momentum" not in given and optimizer in OPTIMIZERS and OPTIMIZERS[optimizer].momentum is None:
        chosen.pop("momentum", None)
    return full_recipe(item.flops.total_gflops, chosen)


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
    item: ExportItem,
    folder: Path,
    data_root: str,
    with_onnx: bool,
    recipe_flags: dict[str, Any] | None = None,
    time_model: ModelTimer | None = None,
) -> dict[str, Any]:
    """Every file of one exported model into folder (its config over the export's _base_/); its export.json entry.

    With time_model (export --pareto; needs with_onnx), the ONNX file is timed and the entry gets `latency`.
    """
    recipe = export_recipe(item, recipe_flags)
    cfg = full_config(item.arch, data_root, work_dir=f"work_dirs/{item.stem}", recipe=recipe)
    base_dir = "../_base_" if item.folder else "_base_"
    write_child(folder / f"{item.stem}.py", item.arch, cfg, _header(item, data_root, recipe), base_dir)
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
        if time_model is not None:
            entry["latency"] = time_model(item, folder / note["file"])
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
    recipe_flags: dict[str, Any] | None = None,
    time_model: ModelTimer | None = None,
) -> dict[str, Any]:
    """Write every item into out (built beside it, then renamed into place); the export.json contents.

    recipe_flags (optimizer, lr, weight_decay, momentum; None = not given) override each item's recipe.
    time_model (with with_onnx): each model's `latency` entry from its item and ONNX file.
    """
    out = Path(out).expanduser().absolute()
    check_destination(out, force)
    check_writable(out.parent, "--out")
    for item in items:  # a bad flag is one error before anything is written
        export_recipe(item, recipe_flags)
    with staged_folder(out) as staging:
        write_bases(staging)
        entries = [
            write_item(item, staging / item.folder, data_root, with_onnx, recipe_flags, time_model) for item in items
        ]
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
    recipe_flags: dict[str, Any] | None = None,
    pareto: bool = False,
    time_model: ModelTimer | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export an experiment's top trials (default out: results/NAME/export); the folder and export.json.

    pareto: its non-dominated trials instead, each with ONNX (and, with time_model, its measured latency).
    """
    items = items_from_experiment(name, top, results_dir, need_checkpoints=with_onnx or pareto, pareto=pareto)
    dest = Path(out) if out is not None else store_path(name, results_dir) / "export"
    store = ExperimentStore(store_path(name, results_dir))
    source: dict[str, Any] = {"experiment": name, "top": top, "store": str(store.path)}
    if pareto:
        source = {"experiment": name, "pareto": [o.name for o in store.objectives()], "store": str(store.path)}
    ties = experiment_ties(name, results_dir)
    if ties is not None:
        source["ties_with_best"] = ties
    return dest, write_export(
        items,
        dest,
        data_root=data_root,
        with_onnx=with_onnx or pareto,
        force=force,
        source=source,
        recipe_flags=recipe_flags,
        time_model=time_model,
    )


def export_arch(
    arch_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    data_root: str = WIDERFACE_DATA_ROOT,
    with_onnx: bool = False,
    force: bool = False,
    checkpoint: str | os.PathLike | None = None,
    recipe_flags: dict[str, Any] | None = None,
    results_dir: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export one ArchSpec file or trial NAME/KEY (default out: export/<stem>); the folder and export.json."""
    item = item_from_arch(arch_path, checkpoint, results_dir)
    dest = Path(out) if out is not None else Path("export") / item.stem
    source = {"arch_file": str(arch_path)}
    return dest, write_export(
        [item], dest, data_root=data_root, with_onnx=with_onnx, force=force, source=source, recipe_flags=recipe_flags
    )
