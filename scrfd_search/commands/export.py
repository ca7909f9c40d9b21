"""Export the best architectures of a search (or one ArchSpec file) for full training and deployment.

For each of the top K trials by hard AP: an mmdet 3.x config with SCRFD's full 640-epoch schedule on
WIDER FACE (large-crop sample redistribution, WIDER FACE metric) that `tools/train.py` or mmdet's own
tools/train.py accept as is; the ArchSpec JSON; FLOPs and parameters by component; the search
metrics it was chosen on. --onnx adds an ONNX model of backbone -> neck -> head with dynamic batch
and input size and raw per-stride outputs (batch x anchors x channels), from the trial's checkpoint
when it saved one (else freshly initialised, and said so), checked against PyTorch in onnxruntime
at batch 1 and 3. The configs train with the
optimizer recipe the trial trained with (its searched lr; otherwise the optimizer's default for the
full schedule); --optimizer, --lr, --weight-decay and --momentum override it.
--pareto exports the non-dominated trials of a multi-objective search (`launch --objectives
hard,latency` or `hard,gflops`) instead of the top K, each with its ONNX file, and measures each
model's latency (predicted by the search's latency table against measured, in export.json).
Default output: results/NAME/export/; an earlier export there is replaced only with --force, and a
non-empty folder that holds no export is never touched. After `fidelity` measured the search's seed
noise, the trials whose hard AP lies within it of the best are named as ties (also in export.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from scrfd_search.commands.recipe_flags import add_recipe_arguments, recipe_flags
from scrfd_search.errors import UserError
from scrfd_search.export.latency_check import latency_entry, latency_text, settings_for
from scrfd_search.latency.measure import machine_fingerprint
from scrfd_search.search.fidelity_store import ties_text
from scrfd_search.search.store import ExperimentStore, store_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument("name", nargs="?", help="experiment name (a folder under the results dir)")
    parser.add_argument(
        "--arch",
        default=None,
        metavar="ARCH.json|NAME/KEY",
        help="export this ArchSpec (a JSON file, a run's candidate.json, or trial KEY of search NAME) instead",
    )
    parser.add_argument("--top", type=int, default=None, help="how many of the best trials to export (default: 1)")
    parser.add_argument(
        "--pareto",
        action="store_true",
        help="export the non-dominated trials of a multi-objective search instead (with ONNX files and each "
        "model's measured latency beside its prediction)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: results/NAME/export, or export/<arch stem>)"
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also export each detector to ONNX, in the released SCRFD models' convention",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="with --arch: the weights for --onnx (a trained or `import-weights` checkpoint)",
    )
    parser.add_argument(
        "--data-root",
        default="data/widerface",
        help="WIDER FACE folder the configs train on, as the training machine sees it (default: data/widerface)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where experiments live (default: $SCRFD_SEARCH_RESULTS or results)",
    )
    parser.add_argument("--force", action="store_true", help="replace an earlier export in the output folder")
    add_recipe_arguments(parser, lr_note="; default for a trial: the lr its search chose")


def pareto_timer(name: str, results_dir: Path | None) -> Any:
    """Times an exported model as `scrfd-search latency` does, with the search's latency table's settings."""
    from scrfd_search.latency_targets import Settings, Target, measure_targets  # onnxruntime/torch

    store = ExperimentStore(store_path(name, results_dir))
    chosen = settings_for(store.read_experiment(), str(store.experiment_file))
    timing = Settings(chosen.backend, chosen.device, chosen.threads, chosen.batch, chosen.input_shape)

    def time_model(item: Any, onnx_file: Path) -> dict[str, Any]:
        """The `latency` entry of one exported model (its ONNX file, or its module for --backend torch)."""
        if chosen.backend == "onnxruntime":
            target = Target(str(onnx_file), onnx=onnx_file)
        else:
            target = Target(str(onnx_file), arch=item.arch, checkpoint=item.checkpoint)
        measured = measure_targets([target], timing, chosen.runs, chosen.warmup)[0]
        machine = machine_fingerprint(chosen.backend, chosen.device, chosen.threads, chosen.batch, chosen.input_shape)
        return latency_entry(item, measured, machine, chosen)

    return time_model


def run(args: argparse.Namespace) -> int:
    """Export and list what was written."""
    if (args.name is None) == (args.arch is None):
        raise UserError("expected either an experiment NAME or --arch ARCH.json (exactly one)")
    if args.checkpoint is not None and args.arch is None:
        raise UserError("--checkpoint: only with --arch (a search's export takes each trial's own checkpoint)")
    if args.pareto and (args.arch is not None or args.top is not None):
        raise UserError("--pareto: exports a search's non-dominated trials (not with --arch or --top)")
    top = 1 if args.top is None else args.top
    from scrfd_search.export.writer import export_arch, export_experiment  # torch/mmdet: keeps --help fast

    if args.arch is not None:
        out, index = export_arch(
            args.arch,
            args.out,
            data_root=args.data_root,
            with_onnx=args.onnx,
            force=args.force,
            checkpoint=args.checkpoint,
            recipe_flags=recipe_flags(args),
            results_dir=args.results_dir,
        )
    else:
        out, index = export_experiment(
            args.name,
            top,
            args.out,
            results_dir=args.results_dir,
            data_root=args.data_root,
            with_onnx=args.onnx or args.pareto,
            force=args.force,
            recipe_flags=recipe_flags(args),
            pareto=args.pareto,
            time_model=pareto_timer(args.name, args.results_dir) if args.pareto else None,
        )
    for entry in index["models"]:
        ap = f"  hard AP {entry['hard']:.4f}" if entry.get("hard") is not None else ""
        recipe = entry["recipe"]
        print(
            f"{out / entry['config']}  {entry['total_gflops']:.3f} GFLOPs  {entry['params_m']:.3f} M{ap}  "
            f"{recipe['optimizer']} lr {recipe['lr']:g}"
        )
        if "onnx" in entry:
            origin = (
                "freshly initialised weights (no checkpoint)" if entry["onnx_freshly_initialised"] else "checkpoint"
            )
            print(f"{out / entry['onnx']}  from {origin}")
        if "latency" in entry:
            print("  " + latency_text(entry["latency"]))
    ties = index.get("source", {}).get("ties_with_best")
    if ties is not None:
        print(ties_text(ties))
    count = len(index["models"])
    if args.arch is None and not args.pareto and count < top:
        print(f"note: only {count} finished trial(s) with a hard AP; --top asked for {top}")
    print(f"{count} model(s) exported to {out}")
    return 0
