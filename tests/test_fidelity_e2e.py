"""`fidelity` and `launch --repeats` training real (tiny) detectors through Ray Tune.

The search is the session's `tiny_search` (3 trials, 1 epoch of 64 px demo images). `fidelity` is
killed (driver, Ray and its workers: the whole session) once its first run has trained to its end, then
run again: it must finish every run exactly once and report statistics equal to scipy's on the pairs it
stored. The retrains must train as their trials did except for the seed (and the long runs' epochs): the
mmengine configs they ran with are compared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAINING
from search_helpers import STEP1_SPACE, cli, cli_command, kill_session, scipy_rank_interval, scipy_rank_statistic

from scrfd_search.search.fidelity_store import RUNS_DIR, fidelity_dir, read_report
from scrfd_search.search.store import ExperimentStore, ranked
from scrfd_search.search.trial import read_events
from scrfd_search.training.files import RESULT_FILE

pytestmark = pytest.mark.slow
RUN_TIMEOUT_S = 900


def copy_store(tiny_search: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the session's search (its data stays where it is); returns the results dir."""
    results = tmp_path / "results"
    shutil.copytree(tiny_search[0], results)
    return results


def ended_runs(runs: Path) -> dict[str, bytes]:
    """result.json of every run whose event log ends with 'end'."""
    out = {}
    for folder in sorted(runs.iterdir()) if runs.is_dir() else []:
        events = read_events(folder)
        if events and events[-1]["event"] == "end":
            out[folder.name] = (folder / RESULT_FILE).read_bytes()
    return out


def scipy_agreement(x: list[float], y: list[float], seed: int) -> dict[str, float]:
    """tau, rho and their percentile-bootstrap intervals, straight from scipy (a constant resample scores 0)."""
    out = {}
    for name in ("tau", "rho"):
        low, high = scipy_rank_interval(x, y, name, seed)
        value = scipy_rank_statistic(np.array(x), np.array(y), name)
        out.update({name: value, f"{name}_low": low, f"{name}_high": high})
    return out


def mmengine_config(work_dir: Path) -> dict:
    """The config mmengine dumped for the run in work_dir, without what names the run (folder, seed, length)."""
    from mmengine.config import Config

    # the first start of the run (a run resumed after the kill dumped its config again, with resume=True)
    dumped = (sorted(work_dir.glob("*/vis_data/config.py")) or sorted(work_dir.glob("*.py")))[0]
    cfg = Config.fromfile(str(dumped)).to_dict()
    for key in ("work_dir", "randomness", "experiment_name"):
        cfg.pop(key, None)
    return cfg


def test_fidelity_killed_mid_way_resumes_without_retraining_finished_runs(tiny_search, tmp_path: Path) -> None:
    results = copy_store(tiny_search, tmp_path)
    args = ["fidelity", "tiny", "--sample", "3", "--seeds", "1", "--epochs", "2", "--results-dir", str(results)]
    runs = fidelity_dir(results / "tiny") / RUNS_DIR
    proc = subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while not ended_runs(runs) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "fidelity ended before the kill: " + proc.stderr.read().decode()[-2000:]
    finally:
        kill_session(proc.pid, wait_s=30)  # as a lost machine would
        proc.wait()
    before = ended_runs(runs)
    assert 1 <= len(before) < 6
    assert not (fidelity_dir(results / "tiny") / "fidelity.json").exists()

    done = cli(*args)  # in this process: nothing is killed now
    assert done.returncode == 0, done.stderr[-3000:]
    after = ended_runs(runs)
    assert len(after) == 6  # 3 trials x 1 seed x 2 lengths
    for key, result in before.items():
        assert after[key] == result  # kept as it was ...
        assert [e["event"] for e in read_events(runs / key)].count("start") == 1  # ... and never trained again
    assert all([e["event"] for e in read_events(runs / k)].count("end") == 1 for k in after)

    data = read_report(results / "tiny")
    assert data is not None and "verdict:" in done.stdout
    store = ExperimentStore(results / "tiny")
    board = [t.trial_id for t in ranked(store.read_trials())]
    assert [c["trial_id"] for c in data["candidates"]] == board  # all three, best first
    pairs = data["candidates"]
    ranking = scipy_agreement([c["trial_hard"] for c in pairs], [c["long_mean"] for c in pairs], seed=0)
    assert data["report"]["ranking"] == pytest.approx(ranking)
    repeat = scipy_agreement([c["trial_runs"][0] for c in pairs], [c["short_hard"][0] for c in pairs], seed=0)
    assert data["report"]["repeat"] == pytest.approx(repeat)
    # each retrain trained as its trial did: the same mmengine config but for the seed (and the long runs' epochs)
    for row in store.read_trials():
        trial = store.path / row.work_dir
        short, long = runs / f"{row.trial_id}-short-s1", runs / f"{row.trial_id}-long-s1"
        assert mmengine_config(short) == mmengine_config(trial)
        long_cfg, trial_cfg = mmengine_config(long), mmengine_config(trial)
        assert (long_cfg["train_cfg"]["max_epochs"], trial_cfg["train_cfg"]["max_epochs"]) == (2, 1)
        long_cfg["train_cfg"] = trial_cfg["train_cfg"] = None
        long_cfg["param_scheduler"] = trial_cfg["param_scheduler"] = None  # lr steps scale with the epochs
        assert long_cfg == trial_cfg
        seeds = [json.loads((p / RESULT_FILE).read_text())["seed"] for p in (trial, short, long)]
        assert seeds == [0, 1, 1]


def test_repeats_train_every_candidate_twice_and_rank_by_the_mean(tiny_search, tmp_path: Path) -> None:
    _, data = tiny_search
    done = cli(
        "launch", "--space", str(STEP1_SPACE), "--name", "rep", "--data", str(data), "--results-dir", str(tmp_path),
        "--trials", "2", "--repeats", "2", *TINY_TRAINING, "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    store = ExperimentStore(tmp_path / "rep")
    assert store.read_experiment().settings.repeats == 2  # what resume reads back
    rows = store.read_trials()
    for row in rows:
        folders = [store.path / row.work_dir / f"repeat{i}" for i in range(2)]
        results = [json.loads((f / RESULT_FILE).read_text()) for f in folders]
        assert [r["seed"] for r in results] == [0, 1]
        assert row.extra["hard_runs"] == pytest.approx([r["hard"] for r in results])
        assert row.hard == pytest.approx(sum(r["hard"] for r in results) / 2)
        assert row.state == "TERMINATED" and row.checkpoint is not None
    by_mean = sorted(rows, key=lambda r: (-sum(r.extra["hard_runs"]) / 2, r.flops.total_gflops, r.trial_id))
    assert [r.trial_id for r in ranked(rows)] == [r.trial_id for r in by_mean]
    status = cli("status", "rep", "--results-dir", str(tmp_path))
    assert status.returncode == 0
    assert "repeats: every candidate trains 2 times (seeds 0 to 1)" in status.stdout and " sd%" in status.stdout
    again = cli("resume", "rep", "--results-dir", str(tmp_path))
    assert again.returncode == 0 and "all 2 trials already finished" in again.stderr
