"""The `scrfd-search` command: one subcommand per stage of the search pipeline."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from scrfd_search.errors import UserError

# (subcommand, module under scrfd_search.commands, one-line help). Each module defines
# add_arguments(parser) and run(args) -> int, and imports heavy libraries only inside run().
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("sample", "sample", "sample distinct architectures inside a GFLOPs budget"),
    ("flops", "flops", "FLOPs and parameters of a detector, total and by component"),
    ("latency", "latency", "measure (or predict from a table) detectors' latency on this machine"),
    ("latency-table", "latency_table", "measure a per-block latency table for search spaces on this machine"),
    ("demo-data", "demo_data", "write a small synthetic data set in the WIDER FACE layout"),
    ("data-stats", "data_stats", "face sizes and ATSS positives per stride, small vs large crops"),
    ("eval-widerface", "eval_widerface", "easy/medium/hard AP by the official WIDER FACE protocol"),
    ("train", "train", "train one architecture on WIDER FACE (or demo data)"),
    ("launch", "launch", "launch a budgeted search with Ray Tune"),
    ("resume", "resume", "continue an interrupted search"),
    ("status", "status", "print a search's leaderboard and progress"),
    ("fidelity", "fidelity", "retrain a spread of trials under new seeds and longer: can the ranking be trusted?"),
    ("export", "export", "export top architectures as mmdet configs (and ONNX)"),
    ("import-weights", "import_weights", "import released SCRFD weights (ONNX or reference checkpoint)"),
    ("detect", "detect", "detect faces in images with a checkpoint or an ONNX file"),
    ("plot", "plot", "draw the computation-ratio figures from experiment stores"),
    ("doctor", "doctor", "check this machine or cluster for a search and estimate its wall time"),
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand (a command module that fails to import is an error)."""
    parser = argparse.ArgumentParser(
        prog="scrfd-search",
        description="Search compute-redistributed SCRFD face detectors under a GFLOPs budget.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(f"scrfd_search.commands.{module_name}")
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


# Third-party warnings every command would otherwise print, none of them about anything the user did.
QUIET_WARNINGS = (
    # mmengine imports pkg_resources, which setuptools deprecates on every import
    (UserWarning, r"pkg_resources is deprecated as an API"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments, run the subcommand, turn UserError into one line and exit 2."""
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"scrfd-search {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scrfd-search {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`status NAME | head`): stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
