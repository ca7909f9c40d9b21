"""Evaluate a trained checkpoint with its mmdet 3.x config (WIDER FACE easy/medium/hard AP).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options K=V ...]

The same options as mmdet's tools/test.py for evaluation; this copy also registers scrfd-search's
modules (the backbones, head, data sets, transforms and the WIDER FACE metric) first, and lets
mmengine load the full checkpoint under torch >= 2.6: only use checkpoints you trust.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (mmdet's names)."""
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the config file (.py) the checkpoint was trained with")
    parser.add_argument("checkpoint", help="the checkpoint file (.pth)")
    parser.add_argument("--work-dir", help="folder for the evaluation logs (default: work_dirs/<config stem>)")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override config entries, e.g. test_dataloader.batch_size=1"
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the Runner with the checkpoint loaded and run the test loop."""
    args = parse_args(argv)
    from scrfd_search.builders import register_modules
    from scrfd_search.training.runner import entry_point_config, own_checkpoint_loading, runner_from_config

    if not Path(args.checkpoint).is_file():
        print(f"tools/test.py: error: {args.checkpoint}: no such checkpoint file", file=sys.stderr)
        return 2
    register_modules()
    cfg = entry_point_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    runner = runner_from_config(cfg)
    with own_checkpoint_loading():  # mmengine's torch.load of its own checkpoints (see there)
        metrics = runner.test()
    for key, value in sorted((metrics or {}).items()):
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
