"""Measure (or, with --table, predict) the latency of detectors on this machine.

TARGET is an ArchSpec JSON, a config .py written by scrfd-search, an ONNX file in the released
convention, or a trial of a search (NAME/KEY, KEY as `status` shows it). Per target: the median,
p10 and p90 milliseconds over --runs timed runs after --warmup untimed ones, for the network alone
(the released outputs: what the ONNX file returns) and end to end (what `detect` does for one image:
letterbox, normalisation, network, decoding, NMS; batch 1 only, as `detect` runs one image at a time).
Runs of the two are interleaved. Threads are fixed (--threads, default 1) and printed with the result.

With --table TABLE.json (from `scrfd-search latency-table`), ArchSpec targets are predicted from the
table without running them; the table must have been measured with the same backend, device,
threads, batch and input shape as asked here (--measure also times them, to compare).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.report import COMPONENTS
from scrfd_search.latency.measure import BACKENDS, DEVICES, check_settings, load_warning, machine_fingerprint
from scrfd_search.latency.table import LatencyTable, check_fingerprint, describe_fingerprint, load_latency_table

DEFAULT_RUNS = 15
DEFAULT_WARMUP = 3


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags naming where and how to time: backend, device, threads, input shape, batch."""
    parser.add_argument("--backend", choices=BACKENDS, default="onnxruntime", help="default onnxruntime")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="default cpu")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--input-shape", type=int, nargs=2, metavar=("H", "W"), help="input size (default 480 640)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search latency`."""
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="ArchSpec .json, config .py, .onnx, or NAME/KEY")
    add_device_arguments(parser)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"timed runs (default {DEFAULT_RUNS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed runs first ({DEFAULT_WARMUP})")
    parser.add_argument("--image", type=Path, help="end-to-end input image (default: a fixed random frame)")
    parser.add_argument("--table", type=Path, help="predict from this latency table instead of running")
    parser.add_argument("--measure", action="store_true", help="with --table: also measure, to compare")
    parser.add_argument("--results-dir", type=Path, help="where NAME/KEY targets' experiments are (default results)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def input_shape_of(args: argparse.Namespace, default: tuple[int, int] = (480, 640)) -> tuple[int, int]:
    """--input-shape as (H, W), or the default."""
    return tuple(args.input_shape) if args.input_shape else default  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    """Resolve every target first, then measure or predict each, then print."""
    from scrfd_search.latency_targets import Settings, measure_targets, resolve_target  # torch, onnxruntime

    shape = input_shape_of(args)
    check_settings(args.backend, args.device, args.threads, args.batch, shape)
    if args.runs < 1 or args.warmup < 0:
        raise UserError(f"--runs {args.runs} / --warmup {args.warmup}: need at least 1 run and no negative warm-up")
    if args.measure and args.table is None:
        raise UserError("--measure compares with a prediction: give --table too")
    if args.image is not None and not args.image.is_file():
        raise UserError(f"--image {args.image}: no such file")
    targets = [resolve_target(t, args.results_dir) for t in args.targets]
    settings = Settings(args.backend, args.device, args.threads, args.batch, shape, image=args.image)
    results: list[dict[str, Any]] = [_base(t, settings) for t in targets]
    table = _table(args, settings) if args.table is not None else None
    if table is not None:
        for target, result in zip(targets, results, strict=True):
            if target.arch is None:
                raise UserError(f"{target.label}: an ONNX file has no ArchSpec to predict from a table")
            try:
                result["predicted"] = {
                    "ms": table.predict_ms(target.arch),
                    "components_ms": table.predict_components(target.arch),
                }
            except UserError as exc:
                raise UserError(f"{target.label}: {exc}") from None
    machine = None
    if table is None or args.measure:
        machine = machine_fingerprint(args.backend, args.device, args.threads, args.batch, shape)
        progress = None if args.json else (lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        busy_before = load_warning()
        timings = measure_targets(targets, settings, args.runs, args.warmup, progress)
        busy = load_warning() or busy_before
        if busy:
            print(busy, file=sys.stderr)
            machine = {**machine, "load_warning": busy}
        for result, timing in zip(results, timings, strict=True):
            result["network"] = timing.network.to_dict()
            result["end_to_end"] = timing.end_to_end.to_dict() if timing.end_to_end is not None else None
    out = {"machine": machine or table.fingerprint, "results": results}  # type: ignore[union-attr]
    if table is not None:
        out["table"] = {"path": str(args.table), "fingerprint": table.fingerprint}
    print(json.dumps(out, indent=2) if args.json else format_results(out))
    return 0


def _base(target: Any, settings: Any) -> dict[str, Any]:
    """A result's settings and, for an architecture, its GFLOPs at the input shape."""
    result: dict[str, Any] = {
        "target": target.label,
        "backend": settings.backend,
        "device": settings.device,
        "threads": settings.threads,
        "input_shape": list(settings.input_shape),
        "batch": settings.batch,
    }
    if target.arch is not None:
        result["gflops"] = count_flops(target.arch, settings.input_shape).total_gflops
    return result


def _table(args: argparse.Namespace, settings: Any) -> LatencyTable:
    """The --table, refused unless measured with the backend, device, threads, batch and shape asked for."""
    table = load_latency_table(args.table)
    expected = {
        "backend": settings.backend,
        "device": settings.device,
        "threads": settings.threads,
        "batch": settings.batch,
        "input_shape": list(settings.input_shape),
    }
    check_fingerprint(table, expected, f"--table {args.table}")
    return table


def _timing_text(timing: dict[str, Any] | None) -> str:
    """median (p10-p90) or a dash."""
    if timing is None:
        return "-"
    return f"{timing['median_ms']:.2f} ({timing['p10_ms']:.2f}-{timing['p90_ms']:.2f})"


def format_results(out: dict[str, Any]) -> str:
    """The text report: the machine, then one line per target (and its predicted components)."""
    lines = [f"machine: {describe_fingerprint(out['machine'])}, CPU {out['machine'].get('cpu', '?')}"]
    if "table" in out:
        lines.append(f"table: {out['table']['path']} ({describe_fingerprint(out['table']['fingerprint'])})")
    width = max(len(r["target"]) for r in out["results"])
    measured = "network" in out["results"][0]
    predicted = "predicted" in out["results"][0]
    head = f"{'target':<{width}} {'GFLOPs':>7}"
    if measured:
        head += f"  {'network ms median (p10-p90)':>29}  {'end to end ms median (p10-p90)':>32}"
    if predicted:
        head += f"  {'predicted ms':>12}"
    lines.append(head)
    for r in out["results"]:
        line = f"{r['target']:<{width}} {r['gflops']:7.3f}" if "gflops" in r else f"{r['target']:<{width}} {'-':>7}"
        if measured:
            line += f"  {_timing_text(r['network']):>29}  {_timing_text(r['end_to_end']):>32}"
        if predicted:
            line += f"  {r['predicted']['ms']:12.2f}"
        lines.append(line)
    if predicted:
        lines.append("predicted ms by component:")
        lines.append(f"  {'':<{width}} " + " ".join(f"{c:>6}" for c in COMPONENTS))
        for r in out["results"]:
            parts = " ".join(f"{r['predicted']['components_ms'][c]:6.2f}" for c in COMPONENTS)
            lines.append(f"  {r['target']:<{width}} {parts}")
    if measured:
        runs = out["results"][0]["network"]["runs"]
        lines.append(f"({runs} timed runs each; end to end at batch 1 only, as `detect` runs one image at a time)")
    return "\n".join(lines)
