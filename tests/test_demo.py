"""`make demo`'s script, shrunk: demo data, the two-step search, leaderboards and figures, then a rerun
that keeps every finished trial. Real Ray trials on 128 px images for one epoch (a few minutes on 2 cores)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from search_helpers import REPO

from scrfd_search.search.store import ExperimentStore

pytestmark = pytest.mark.slow
TINY_DEMO = {
    "STEP1_TRIALS": "2",
    "STEP2_TRIALS": "2",
    "EPOCHS": "1",
    "IMG_SIZE": "128",
    "TRAIN_IMAGES": "8",
    "VAL_IMAGES": "4",
}


def run_demo(data: Path, results: Path) -> subprocess.CompletedProcess:
    """tools/demo.sh with the tiny settings, this interpreter's environment, data and results in tmp."""
    env = {**os.environ, **TINY_DEMO, "RESULTS_DIR": str(results), "SCRFD_BIN": str(Path(sys.executable).parent)}
    return subprocess.run(
        ["bash", str(REPO / "tools" / "demo.sh"), str(data), "tiny"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_demo_runs_both_steps_prints_leaderboards_plots_and_resumes(tmp_path: Path) -> None:
    data, results = tmp_path / "demo", tmp_path / "results"
    first = run_demo(data, results)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert (data / "wider_face_split" / "wider_face_val_bbx_gt.txt").is_file()
    for step in ("tiny-step1", "tiny-step2"):
        rows = ExperimentStore(results / step).read_trials()
        assert len(rows) == 2 and all(r.state == "TERMINATED" and r.hard is not None for r in rows), step
        assert f"search {step}:" in first.stdout
    assert first.stdout.count("trials: 2 of 2 done, 0 running, 0 failed") == 2
    assert "constraint: backbone shares from the top 2 of tiny-step1" in first.stdout  # top 3 of 2 finished
    step2 = ExperimentStore(results / "tiny-step2").read_experiment()
    assert step2.step == 2 and step2.constraint["from_experiment"] == "tiny-step1"

    plots = results / "tiny-step1" / "plots"
    assert (plots / "edf_hard_ap.png").stat().st_size > 10_000
    with open(plots / "edf_hard_ap.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4  # both steps' trials

    before = {step: ExperimentStore(results / step).read_trials() for step in ("tiny-step1", "tiny-step2")}
    again = run_demo(data, results)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert again.stdout.count("exists: resuming it") == 2 and "generating demo data" not in again.stdout
    for step, rows in before.items():
        after = ExperimentStore(results / step).read_trials()
        assert [(r.trial_id, r.hard, r.epochs_run) for r in after] == [(r.trial_id, r.hard, r.epochs_run) for r in rows]
