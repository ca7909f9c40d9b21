"""Hard AP per optimizer on demo data: one architecture, the same epochs, each optimizer with its defaults.

Generates a demo data set (synthetic faces; NOT WIDER FACE), then trains the same small basic-block
detector with sgd, sgdp, adamw, adaboundw and sam, each from its published defaults (lr as given,
unscaled at the batch size, as the reference trains its search candidates), for --seeds seeds, and
prints hard AP per run and the mean and spread per optimizer, with the seconds each run took (SAM runs
two forward/backward passes per step). Runs go --jobs at a time, one torch thread each.

    .venv/bin/python benchmarks/bench_optimizers.py [--epochs 30] [--img-size 128] [--batch-size 4] [--seeds 3]

The numbers describe demo data and a few hundred CPU iterations: they show the machinery works and how
the optimizers behave on a short schedule, not how they rank on WIDER FACE after 640 epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.recipe import OPTIMIZER_NAMES
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec

# A small ResNet-style detector (0.58 GFLOPs at 640x480): learns on demo data within a few CPU epochs.
ARCH = ArchSpec(
    block="basic",
    stem_width=16,
    stages=(StageSpec(1, 16), StageSpec(1, 32), StageSpec(1, 32), StageSpec(1, 64)),
    neck=NeckSpec(32),
    head=HeadSpec(num_convs=2, width=32, norm="gn", gn_groups=8),
)


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train ARCH with one optimizer and seed (in a worker process); its hard AP and seconds."""
    import torch

    from scrfd_search.recipe import Recipe
    from scrfd_search.training.candidate import train_candidate
    from scrfd_search.training.settings import candidate_data, candidate_schedule

    torch.set_num_threads(1)
    data = candidate_data(job["data"], img_size=job["img_size"], batch_size=job["batch_size"], num_workers=0)
    schedule = candidate_schedule(data, job["epochs"], Recipe(job["optimizer"]))  # as a search trial trains
    start = time.perf_counter()
    result = train_candidate(ARCH, data, schedule, Path(job["work"]), device="cpu", seed=job["seed"], progress=None)
    return {**{k: job[k] for k in ("optimizer", "seed")}, "hard": result.hard, "seconds": time.perf_counter() - start}


def main() -> int:
    """Generate the data, run every (optimizer, seed), print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=96)
    parser.add_argument("--val-images", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZER_NAMES))
    parser.add_argument("--json", type=Path, help="also write the per-run results here")
    args = parser.parse_args()
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        demo = DemoConfig(
            num_train=args.train_images,
            num_val=args.val_images,
            seed=0,
            min_width=args.img_size,
            max_width=args.img_size + 64,
            min_face_px=16.0,
            clear_faces=True,  # the optimizers' comparison predates blurred and occluded demo faces
        )
        write_demo_dataset(data, demo)
        jobs = [
            dict(
                data=str(data),
                work=str(Path(tmp) / f"{o}_{s}"),
                optimizer=o,
                seed=s,
                epochs=args.epochs,
                img_size=args.img_size,
                batch_size=args.batch_size,
            )
            for s in range(args.seeds)
            for o in optimizers
        ]
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            runs = []
            for run in pool.map(train_one, jobs):
                runs.append(run)
                print(
                    f"  {run['optimizer']:<9} seed {run['seed']}  "
                    f"hard AP {100 * run['hard']:6.2f}%  {run['seconds']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        wall = time.perf_counter() - start
    print(
        f"demo data ({args.train_images} train / {args.val_images} val synthetic images), {args.img_size} px, "
        f"{args.epochs} epochs, batch {args.batch_size}, {args.seeds} seeds; total {wall:.0f} s"
    )
    print(f"{'optimizer':<10} {'hard AP % per seed':<26} {'mean':>6} {'sd':>5} {'s/run':>6}")
    for o in optimizers:
        mine = [r for r in runs if r["optimizer"] == o]
        aps = [100 * r["hard"] for r in mine]
        sd = statistics.stdev(aps) if len(aps) > 1 else 0.0
        per_seed = " ".join(f"{a:6.2f}" for a in aps)
        seconds = statistics.mean(r["seconds"] for r in mine)
        print(f"{o:<10} {per_seed:<26} {statistics.mean(aps):6.2f} {sd:5.2f} {seconds:6.0f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
