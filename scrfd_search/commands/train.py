"""Train one architecture (an ArchSpec JSON file) with SCRFD's recipe and report its WIDER FACE AP.

DIR is the official WIDER FACE layout: WIDER_train/images/, WIDER_val/images/ and
wider_face_split/wider_face_{train,val}_bbx_gt.txt (a `demo-data` folder has the same layout). The
validation ground truth (wider_face_val.mat and wider_{easy,medium,hard}_val.mat) is read from --gt,
by default DIR/wider_face_split/. Training uses --optimizer (default SGD with the reference's
momentum 0.9 and weight decay 5e-4; sgdp, adamw, adaboundw and sam take their published defaults for
what is not given), a linear warm-up, tenfold lr drops at 440/640 and 544/640 of the epochs, and
SCRFD's large-crop sample redistribution. mmengine's logs and checkpoints go to the work dir; one
progress line per epoch goes to stderr; the final easy/medium/hard AP is printed and written to
WORK_DIR/result.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scrfd_search.commands.recipe_flags import add_recipe_arguments
from scrfd_search.recipe import Recipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the architecture, data, schedule and runtime options."""
    parser.add_argument("--arch", required=True, metavar="ARCH.json", help="ArchSpec JSON file to train")
    parser.add_argument("--data", required=True, metavar="DIR", help="WIDER FACE folder (official layout)")
    parser.add_argument("--gt", metavar="DIR", help="folder of the val .mat files (default DIR/wider_face_split)")
    parser.add_argument("--epochs", type=int, default=80, help="training epochs (default 80, the search's)")
    parser.add_argument("--img-size", type=int, default=640, metavar="S", help="training/test size (default 640)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="B", help="images per batch (default 8)")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="data loading workers (default 2)")
    parser.add_argument("--work-dir", metavar="W", help="output folder (default work_dirs/<arch file stem>)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--val-interval", type=int, metavar="K", help="validate every K epochs (default: after the last one)"
    )
    parser.add_argument("--max-train-images", type=int, metavar="N", help="train on the first N images only")
    parser.add_argument("--max-val-images", type=int, metavar="N", help="validate on the first N images only")
    add_recipe_arguments(parser)
    parser.add_argument(
        "--warmup-iters",
        type=int,
        metavar="N",
        help="linear warm-up iterations (default 1500, at most a tenth of the run's iterations)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the work dir")
    parser.add_argument("--verbose", action="store_true", help="also print mmengine's log on stdout")


def _check_positive(name: str, value: int | None) -> None:
    """A UserError naming the option unless value is None or >= 1."""
    from scrfd_search.errors import UserError

    if value is not None and value < 1:
        raise UserError(f"{name}: expected an integer >= 1, got {value}")


def run(args: argparse.Namespace) -> int:
    """Check every input, train, print the AP and the path of result.json."""
    from scrfd_search.detector import DataSettings, Schedule
    from scrfd_search.space.arch import ArchSpec
    from scrfd_search.training import RESULT_FILE, check_data, train_candidate, warmup_iters_for

    arch_path = Path(args.arch)
    arch = ArchSpec.load(arch_path)
    recipe = Recipe(args.optimizer or "sgd", args.lr, args.weight_decay, args.momentum)
    for name in ("--epochs", "--val-interval", "--max-train-images", "--max-val-images"):
        _check_positive(name, getattr(args, name.lstrip("-").replace("-", "_")))
    data_root = Path(args.data)
    data = DataSettings(
        data_root=str(data_root),
        gt_dir=str(Path(args.gt) if args.gt else data_root / "wider_face_split"),
        img_size=args.img_size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        max_train_images=args.max_train_images,
        max_val_images=args.max_val_images,
    )
    check_data(data)
    warmup = args.warmup_iters if args.warmup_iters is not None else warmup_iters_for(data, args.epochs)
    schedule = Schedule(epochs=args.epochs, recipe=recipe, warmup_iters=warmup, val_interval=args.val_interval)
    work_dir = Path(args.work_dir) if args.work_dir else Path("work_dirs") / arch_path.stem
    result = train_candidate(
        arch, data, schedule, work_dir, device=args.device, seed=args.seed, resume=args.resume, verbose=args.verbose
    )
    aps = "  ".join(
        f"{subset} {'n/a' if value is None else f'{100 * value:.2f}'}"
        for subset, value in (("easy", result.easy), ("medium", result.medium), ("hard", result.hard))
    )
    print(f"AP (%)  {aps}  (after {result.epochs_run} epochs, {result.seconds:.0f} s; {recipe.describe()})")
    print(f"result: {work_dir / RESULT_FILE}")
    return 0
