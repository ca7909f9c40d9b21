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
On a GPU, --amp trains with mixed precision (bfloat16 where the GPU supports it, else float16 with
dynamic loss scaling), and cuDNN autotuning and pinned loader memory are on; the result also gives the
training throughput (images/s) and peak memory (GPU memory on a GPU, else the process's).

Before anything starts the annotations are parsed and every listed image is decoded (an unreadable
image is refused, named; see docs/store.md, "Bad input"). A work dir holding a checkpoint of an unfinished
run of the same candidate is resumed automatically; a finished or unrelated non-empty work dir is
refused unless --force (which trains afresh into it). A run that fails before its first checkpoint
leaves no work dir behind.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from scrfd_search.commands.recipe_flags import add_recipe_arguments
from scrfd_search.config_builder import DataSettings, Schedule
from scrfd_search.data.preflight import check_split
from scrfd_search.errors import UserError, check_seed
from scrfd_search.export.checkpoints import load_detector
from scrfd_search.io_utils import check_writable
from scrfd_search.recipe import DEFAULT_OPTIMIZER, Recipe
from scrfd_search.search.store import arch_ref_stem, load_arch_ref
from scrfd_search.training.data_checks import check_data
from scrfd_search.training.files import RESULT_FILE, has_checkpoint
from scrfd_search.training.settings import candidate_data, candidate_schedule


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the architecture, data, schedule and runtime options."""
    parser.add_argument(
        "--arch",
        required=True,
        metavar="ARCH.json|NAME/KEY",
        help="the architecture: an ArchSpec JSON file, a run's candidate.json, or trial KEY of search NAME",
    )
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
    parser.add_argument(
        "--amp", action="store_true", help="mixed precision (GPU only: bf16 where supported, else fp16)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="kept for old scripts: an unfinished work dir is always resumed"
    )
    parser.add_argument("--force", action="store_true", help="train afresh into a finished or non-empty work dir")
    parser.add_argument(
        "--load-from",
        type=Path,
        metavar="CKPT",
        help="start from these weights (a checkpoint of the same architecture, e.g. from `import-weights`)",
    )
    parser.add_argument("--verbose", action="store_true", help="also print mmengine's log on stdout")


def _check_positive(name: str, value: int | None) -> None:
    """A UserError naming the option unless value is None or >= 1."""
    if value is not None and value < 1:
        raise UserError(f"{name}: expected an integer >= 1, got {value}")


def _existing(path: Path) -> Path:
    """path, or a UserError naming it when it is not a file."""
    if not path.is_file():
        raise UserError(f"--load-from {path}: no such checkpoint file")
    return path


def work_dir_mode(work_dir: Path, force: bool) -> bool:
    """Whether to resume in work_dir: yes for an unfinished run; a finished or unrelated one needs --force."""
    if not work_dir.exists():
        return False
    if not work_dir.is_dir():
        raise UserError(f"--work-dir: {work_dir} is a file, expected a folder")
    if force or not any(work_dir.iterdir()):
        return False
    if (work_dir / RESULT_FILE).is_file():
        raise UserError(f"--work-dir: {work_dir} holds a finished run ({RESULT_FILE}); use --force to train afresh")
    if has_checkpoint(work_dir):
        return True
    raise UserError(f"--work-dir: {work_dir} is not empty and holds no run to resume; use --force or another folder")


def training_plan(args: argparse.Namespace) -> tuple[DataSettings, Schedule]:
    """The data settings and schedule these flags train with: a search trial's, by the same constructor."""
    for name in ("--epochs", "--val-interval", "--max-train-images", "--max-val-images"):
        _check_positive(name, getattr(args, name.lstrip("-").replace("-", "_")))
    data = candidate_data(
        str(args.data),
        img_size=args.img_size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        gt_dir=str(args.gt) if args.gt else None,
        max_train_images=args.max_train_images,
        max_val_images=args.max_val_images,
    )
    check_data(data)
    recipe = Recipe(args.optimizer or DEFAULT_OPTIMIZER, args.lr, args.weight_decay, args.momentum)
    return data, candidate_schedule(data, args.epochs, recipe, args.val_interval, args.warmup_iters)


def run(args: argparse.Namespace) -> int:
    """Check every input, train, print the AP and the path of result.json."""
    from scrfd_search.training.candidate import train_candidate  # torch/mmengine

    check_seed(args.seed)
    arch = load_arch_ref(args.arch)
    data, schedule = training_plan(args)
    if args.load_from is not None:
        # load strictly once here: mmengine's load_from only warns about layers that do not fit
        load_detector(arch, _existing(args.load_from))
    work_dir = Path(args.work_dir) if args.work_dir else Path("work_dirs") / arch_ref_stem(args.arch)
    resume = work_dir_mode(work_dir, args.force)
    check_writable(work_dir, "--work-dir")
    for split in ("train", "val"):
        check_split(Path(args.data), split, data.layout)
    created = not work_dir.exists()
    try:
        result = train_candidate(
            arch,
            data,
            schedule,
            work_dir,
            device=args.device,
            seed=args.seed,
            resume=resume,
            verbose=args.verbose,
            amp=args.amp,
            load_from=args.load_from,
        )
    except BaseException:
        if created and not has_checkpoint(work_dir):  # nothing worth keeping yet
            shutil.rmtree(work_dir, ignore_errors=True)
        raise
    _print_result(result, schedule.recipe, work_dir)
    return 0


def _print_result(result: Any, recipe: Recipe, work_dir: Path) -> None:
    """The APs, throughput and memory of a finished run, and where its result.json is."""
    aps = "  ".join(
        f"{subset} {'n/a' if value is None else f'{100 * value:.2f}'}"
        for subset, value in (("easy", result.easy), ("medium", result.medium), ("hard", result.hard))
    )
    print(f"AP (%)  {aps}  (after {result.epochs_run} epochs, {result.seconds:.0f} s; {recipe.describe()})")
    rate = "n/a" if result.images_per_s is None else f"{result.images_per_s:.1f}"
    print(f"training: {rate} images/s, peak memory {result.peak_memory_mib:.0f} MiB")
    print(f"result: {work_dir / RESULT_FILE}")
