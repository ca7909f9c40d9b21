"""The demo's hard data against clear faces: training cost and easy/medium/hard AP of one demo candidate.

Generates two demo data sets as `make demo` draws them (192-256 px wide, seed 0): `hard`, the default
(faces from 3 px, blurred, occluded and in crowds as WIDER FACE's are; keep lists by face height), and
`clear`, the same generator with clear faces of at least 20 px and at most 12 per image (close to the
data of releases before the hard demo). Trains one step-1 candidate of `search_spaces/demo_0.5gf_step1.yaml`
on each, with the demo's settings (192 px, batch 4, SGD lr 0.01, one torch thread), for --seeds seeds,
the runs interleaved so that a busy machine slows both alike, and prints easy/medium/hard AP per run,
the seed spread, and the seconds per run with the hard/clear ratio (the demo's cost on the new data).

    .venv/bin/python benchmarks/bench_demo_data.py [--epochs 20] [--seeds 2] [--jobs 2]

Demo data (synthetic faces; NOT WIDER FACE): the APs describe this data and a short CPU schedule.
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
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec

# The first candidate `make demo` draws in step 1 (seed 0): 0.507 GFLOPs at 640x480.
ARCH = ArchSpec(
    block="basic",
    stem_width=8,
    stages=(StageSpec(1, 8), StageSpec(3, 24), StageSpec(3, 40), StageSpec(1, 88)),
    neck=NeckSpec(24),
    head=HeadSpec(num_convs=2, width=32, norm="gn", gn_groups=8),
)
DATA_SETS = {
    "hard": {},
    "clear": {"min_face_px": 20.0, "max_faces": 12, "clear_faces": True},
}


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train ARCH on one data set with one seed (in a worker process); its APs and seconds."""
    import torch  # deferred: only the worker processes need it

    from scrfd_search.recipe import Recipe
    from scrfd_search.training.candidate import train_candidate
    from scrfd_search.training.settings import candidate_data, candidate_schedule

    torch.set_num_threads(1)
    data = candidate_data(job["data"], img_size=job["img_size"], batch_size=4, num_workers=0)
    schedule = candidate_schedule(data, job["epochs"], Recipe(lr=0.01))  # as a search trial trains
    start = time.perf_counter()
    result = train_candidate(ARCH, data, schedule, Path(job["work"]), device="cpu", seed=job["seed"], progress=None)
    aps = {"easy": result.easy, "medium": result.medium, "hard": result.hard}
    return {"data": job["name"], "seed": job["seed"], **aps, "seconds": time.perf_counter() - start}


def main() -> int:
    """Generate both data sets, run every (data, seed), print the table and the cost ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--img-size", type=int, default=192)
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the per-run results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for name, extra in DATA_SETS.items():
            root = Path(tmp) / name
            config = DemoConfig(args.train_images, args.val_images, 0, 192, 256, **extra)
            kept = write_demo_dataset(root, config)["splits"]["val"]["kept"]
            print(f"{name}: val keeps easy/medium/hard {kept['easy']}/{kept['medium']}/{kept['hard']}", file=sys.stderr)
        for seed in range(args.seeds):
            for name in DATA_SETS:  # interleaved: a busy machine slows both data sets alike
                work = str(Path(tmp) / f"{name}_{seed}")
                jobs.append(dict(name=name, data=str(Path(tmp) / name), work=work, seed=seed) | vars(args))
        start = time.perf_counter()
        runs = []
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for run in pool.map(train_one, jobs):
                runs.append(run)
                aps = " / ".join(f"{100 * run[s]:5.2f}" for s in ("easy", "medium", "hard"))
                print(f"  {run['data']:<6} seed {run['seed']}  AP {aps} %  {run['seconds']:.0f} s", file=sys.stderr)
        wall = time.perf_counter() - start
    print(
        f"demo data ({args.train_images} train / {args.val_images} val synthetic images, 192-256 px), "
        f"{args.img_size} px, {args.epochs} epochs, batch 4, {args.seeds} seeds; total {wall:.0f} s"
    )
    print(f"{'data':<6} {'easy':>6} {'medium':>7} {'hard':>6} {'hard sd':>8} {'s/run':>6}")
    seconds = {}
    for name in DATA_SETS:
        mine = [r for r in runs if r["data"] == name]
        mean = {s: statistics.mean(100 * r[s] for r in mine) for s in ("easy", "medium", "hard")}
        sd = statistics.stdev(100 * r["hard"] for r in mine) if len(mine) > 1 else 0.0
        seconds[name] = statistics.mean(r["seconds"] for r in mine)
        print(f"{name:<6} {mean['easy']:6.2f} {mean['medium']:7.2f} {mean['hard']:6.2f} {sd:8.2f} {seconds[name]:6.0f}")
    print(f"cost of a run on hard data / on clear data: {seconds['hard'] / seconds['clear']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
