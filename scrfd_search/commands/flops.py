"""FLOPs and parameters of a detector, total and by component (stem, C2-C5, neck, head).

The detector is given as an ArchSpec JSON file (or a trained run's candidate.json), a trial of a search
as NAME/KEY (e.g. s1/c0003), or an mmdet config .py written by scrfd-search
(its ArchSpec is read from the JSON file with the same stem beside it, or from the `scrfd_arch` /
`arch` entry that exports of earlier releases carried; a config with neither is built with mmengine
and measured). FLOPs are
measured with fvcore on the backbone -> neck -> head forward of a zero image (one multiply-add = one
FLOP); --analytic uses the closed-form count instead (same numbers, no model is built).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scrfd_search.builders import build_model
from scrfd_search.errors import UserError
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.measure import measure_flops_timed
from scrfd_search.flops.report import COMPONENTS, DEFAULT_INPUT_SHAPE, FlopsReport
from scrfd_search.search.store import load_arch_ref
from scrfd_search.space.arch import ArchSpec

CONFIG_ARCH_KEYS = ("scrfd_arch", "arch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument(
        "model", type=Path, help="an ArchSpec .json file (or a run's candidate.json), NAME/KEY, or an mmdet config .py"
    )
    parser.add_argument(
        "--input-shape",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=list(DEFAULT_INPUT_SHAPE),
        help="input height and width (default: 480 640, i.e. VGA)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    parser.add_argument("--analytic", action="store_true", help="closed-form count from the ArchSpec instead of fvcore")


def _config_arch(path: Path) -> ArchSpec | None:
    """The ArchSpec of an mmdet config: sibling <stem>.json, else an scrfd_arch/arch entry, else None."""
    sibling = path.with_suffix(".json")
    if sibling.is_file():
        return ArchSpec.load(sibling)
    cfg = _load_config(path).to_dict()
    for key in CONFIG_ARCH_KEYS:
        if key in cfg:
            return ArchSpec.from_dict(cfg[key], f"{path}: {key}")
    return None


def _load_config(path: Path) -> Any:
    """Read an mmengine config file, turning any failure into a UserError naming it."""
    from mmengine.config import Config

    try:
        return Config.fromfile(str(path), import_custom_modules=False)
    except Exception as exc:  # mmengine raises many kinds (SyntaxError, KeyError, ...)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: cannot read as an mmdet config ({first_line})") from None


def _measure_config(path: Path, input_shape: tuple[int, int]) -> tuple[FlopsReport, float]:
    """Build the model a config describes (no ArchSpec available) and measure it with fvcore."""
    import torch
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    cfg = _load_config(path)
    if "model" not in cfg:
        raise UserError(f"{path}: the config has no 'model' entry (expected an mmdet detector config)")
    if cfg.get("custom_imports"):
        import_modules_from_strings(**cfg["custom_imports"])
    init_default_scope(cfg.get("default_scope", "mmdet"))
    from mmdet.registry import MODELS

    try:
        with torch.no_grad():
            model = MODELS.build(cfg.model)
    except Exception as exc:  # a registry/config error in the user's file
        raise UserError(f"{path}: cannot build its model ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    try:
        return measure_flops_timed(model, input_shape)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None


def load_arch_or_none(path: Path) -> ArchSpec | None:
    """The ArchSpec a JSON or config file holds (None for a config without one)."""
    if path.suffix == ".json" or (not path.is_file() and str(path).count("/") == 1):
        return load_arch_ref(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (expected an ArchSpec .json, an mmdet config .py or NAME/KEY)")
    if path.suffix == ".py":
        return _config_arch(path)
    raise UserError(f"{path}: unsupported file type {path.suffix!r} (expected .json or .py)")


def format_table(report: FlopsReport, source: str) -> str:
    """The human-readable table: component, GFLOPs, share of total, params (M), and a total row."""
    total = report.total_gflops
    rows = [f"{'component':<10} {'GFLOPs':>10} {'share':>8} {'params (M)':>11}"]
    for c in COMPONENTS:
        share = report.gflops[c] / total if total else 0.0
        rows.append(f"{c:<10} {report.gflops[c]:>10.4f} {share:>8.1%} {report.params[c] / 1e6:>11.4f}")
    rows.append(f"{'total':<10} {total:>10.4f} {1.0 if total else 0.0:>8.1%} {report.params_m:>11.4f}")
    h, w = report.input_shape
    rows.append(f"input {w}x{h} (W x H); {source}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    """Count and print."""
    input_shape = (int(args.input_shape[0]), int(args.input_shape[1]))
    if min(input_shape) < 32:
        raise UserError(f"--input-shape: {input_shape[0]} {input_shape[1]} is too small (expected H, W >= 32)")
    path: Path = args.model
    arch = load_arch_or_none(path)
    if arch is None and args.analytic:
        raise UserError(f"{path}: --analytic needs an ArchSpec (no {path.stem}.json beside it, no scrfd_arch entry)")
    if args.analytic:
        report, source = count_flops(arch, input_shape), "closed-form count (fvcore convention)"
    else:
        if arch is None:
            report, seconds = _measure_config(path, input_shape)
        else:
            report, seconds = measure_flops_timed(build_model(arch, init_weights=False), input_shape)
        source = f"measured with fvcore (trace {seconds:.2f} s)"
    print(json.dumps(report.to_dict(), indent=2, sort_keys=True) if args.json else format_table(report, source))
    return 0
