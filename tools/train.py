"""Train a detector from an mmdet 3.x config (e.g. one written by `scrfd-search export`) with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp] [--cfg-options K=V ...]
    torchrun --nproc_per_node 4 tools/train.py CONFIG --launcher pytorch     # the reference's 4 GPUs

The same options as mmdet's tools/train.py; this copy also registers scrfd-search's modules (the
backbones, head, data sets, transforms and the WIDER FACE metric) before the config is built, and
lets mmengine load full checkpoints (--resume, load_from) under torch >= 2.6: only use checkpoints you trust.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (mmdet's names, so its documentation applies)."""
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the training config file (.py)")
    parser.add_argument(
        "--work-dir", help="folder for logs and checkpoints (default: the config's, else work_dirs/<config stem>)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="resume from this checkpoint, or with no value from the latest one in the work dir",
    )
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (GPU)")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        help="override config entries, e.g. train_cfg.max_epochs=1 train_dataloader.batch_size=2",
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def load_config(args: argparse.Namespace):
    """Read the config, apply the command-line overrides and settle the work dir, AMP and resume."""
    from scrfd_search.training.runner import entry_point_config

    cfg = entry_point_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    if args.amp:
        if cfg.optim_wrapper.type == "SAMOptimWrapper":
            sys.exit("tools/train.py: error: --amp does not combine with SAM's two-pass SAMOptimWrapper; drop --amp")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Build the Runner from the config and train."""
    args = parse_args(argv)
    from scrfd_search.builders import register_modules
    from scrfd_search.training.runner import own_checkpoint_loading, runner_from_config

    register_modules()
    cfg = load_config(args)
    runner = runner_from_config(cfg)
    with own_checkpoint_loading():  # mmengine's torch.load of its own checkpoints (see there)
        runner.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
