"""A real multi-objective search on demo data: `launch --objectives hard,latency`, its front, `export --pareto`.

A tiny step-1 space at 128x128 (a latency table for it is measured here, in seconds, with the
`latency-table` command), six Optuna trials of one epoch on a handful of demo images, run in this
process (Ray started and stopped by the test). Then the front the leaderboard marks must agree with
the recorded hard APs and predicted latencies, the Optuna study must be the two-objective study that
learnt exactly those values, and `export --pareto` must export that set with measured latencies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from search_helpers import gflops_front_by_brute_force

from scrfd_search.cli import main
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.latency.table import load_latency_table
from scrfd_search.search.store import ExperimentStore

pytestmark = pytest.mark.slow

TINY_SPACE = """\
name: pareto-tiny
step: 1
block: basic
budget_gflops: {budget}
tolerance: 0.5
input_shape: [128, 128]
stem_width: {{min: 8, max: 16, step: 8}}
depth: {{min: 1, max: 2}}
width: {{min: 8, max: 32, step: 8}}
neck:
  channels: 16
head:
  num_convs: 1
  width: 16
  norm: gn
  gn_groups: 4
  shared: true
  depthwise: false
  keypoints: false
latency_table: table.json
"""
BUDGET_GFLOPS = 0.03
TRIALS = 6
TINY = ["--img-size", "128", "--batch-size", "4", "--cpus-per-trial", "1", "--gpus-per-trial", "0", "--epochs", "1"]


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    """The tiny space and, beside it, its latency table measured on this machine (onnxruntime, 1 thread)."""
    folder = tmp_path_factory.mktemp("space")
    path = folder / "tiny.yaml"
    path.write_text(TINY_SPACE.format(budget=BUDGET_GFLOPS))
    args = ["latency-table", "--space", str(path), "--out", str(folder / "table.json"), "--grid-points", "2"]
    assert main([*args, "--runs", "3", "--warmup", "1", "--passes", "1", "--fit-models", "0"]) == 0
    return path


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    """Eight training and four validation images in the WIDER FACE layout."""
    root = tmp_path_factory.mktemp("data") / "demo"
    write_demo_dataset(root, DemoConfig(num_train=8, num_val=4, seed=0, min_width=128, max_width=160))
    return root


@pytest.fixture(scope="module")
def searched(space, demo_data, tmp_path_factory) -> ExperimentStore:
    """The finished six-trial hard,latency Optuna search (Ray stopped afterwards)."""
    import ray

    results = tmp_path_factory.mktemp("results")
    argv = ["launch", "--space", str(space), "--data", str(demo_data), "--name", "mo", "--results-dir", str(results)]
    argv += ["--trials", str(TRIALS), "--searcher", "optuna", "--objectives", "hard,latency", "--seed", "3", *TINY]
    try:
        assert main(argv) == 0
    finally:
        ray.shutdown()
    return ExperimentStore(results / "mo")


def brute_front(rows) -> set[str]:
    """Trials no other trial beats in hard AP or latency while matching it in the other."""
    return {
        a.trial_id
        for a in rows
        if not any(
            b.hard >= a.hard and b.latency_ms <= a.latency_ms and (b.hard > a.hard or b.latency_ms < a.latency_ms)
            for b in rows
        )
    }


def test_the_search_marks_the_front_of_its_recorded_values(searched, space) -> None:
    import optuna

    rows = searched.read_trials()
    assert len(rows) == TRIALS and all(r.state == "TERMINATED" and r.hard is not None for r in rows)
    table = load_latency_table(space.parent / "table.json")
    for row in rows:  # recorded = what the space's table predicts for the trial's architecture
        assert row.latency_ms == pytest.approx(table.predict_ms(row.arch), rel=1e-9)
    front = json.loads(searched.leaderboard_file.read_text())["pareto"]
    assert front and set(front) == brute_front(rows)
    assert searched.read_experiment().settings.objectives == "hard,latency"  # resume reads it back

    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{searched.path / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    told = {t.number: t.values for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    recorded = {r.extra["optuna_number"]: [r.hard, r.latency_ms] for r in rows}
    assert recorded.keys() == told.keys()
    assert all(told[n] == pytest.approx(v) for n, v in recorded.items())


def test_status_and_export_pareto_follow_the_front(searched, capsys) -> None:
    results = str(searched.path.parent)
    front = set(json.loads(searched.leaderboard_file.read_text())["pareto"])
    assert main(["status", "mo", "--results-dir", results]) == 0
    table_lines = capsys.readouterr().out.split("GFLOPs shares per component")[1].splitlines()
    assert {line.split()[2] for line in table_lines if line[4:6] == " *"} == front

    assert main(["export", "mo", "--pareto", "--results-dir", results]) == 0
    out = searched.path / "export"
    index = json.loads((out / "export.json").read_text())
    by_id = {r.trial_id: r for r in searched.read_trials()}
    exported = [m["trial_id"] for m in index["models"]]
    assert set(exported) == front and len(exported) == len(front)
    assert [by_id[i].hard for i in exported] == sorted((by_id[i].hard for i in exported), reverse=True)
    for model in index["models"]:
        latency = model["latency"]
        assert (out / model["onnx"]).is_file()
        assert latency["predicted_ms"] == pytest.approx(by_id[model["trial_id"]].latency_ms)
        assert 0 < latency["measured"]["p10_ms"] <= latency["measured"]["median_ms"] <= latency["measured"]["p90_ms"]
        assert latency["same_machine_as_table"] is True and latency["machine"]["threads"] == 1
        assert latency["error_pct"] == pytest.approx(
            100 * (latency["predicted_ms"] - latency["measured"]["median_ms"]) / latency["measured"]["median_ms"]
        )
    printed = capsys.readouterr().out
    assert printed.count("ms measured") == len(front) and "predicted" in printed


def test_a_random_search_records_latency_and_marks_the_gflops_front(space, demo_data, tmp_path) -> None:
    """The paper's random searcher with --objectives hard,gflops: predicted latency recorded all the same."""
    import ray

    argv = ["launch", "--space", str(space), "--data", str(demo_data), "--name", "rg", "--results-dir", str(tmp_path)]
    try:
        assert main([*argv, "--trials", "3", "--objectives", "hard,gflops", "--seed", "1", *TINY]) == 0
    finally:
        ray.shutdown()
    store = ExperimentStore(tmp_path / "rg")
    rows = store.read_trials()
    table = load_latency_table(space.parent / "table.json")
    candidates = json.loads((store.path / "candidates.json").read_text())["candidates"]
    assert [c["latency_ms"] for c in candidates] == [r.latency_ms for r in sorted(rows, key=lambda r: r.trial_id)]
    assert all(r.latency_ms == pytest.approx(table.predict_ms(r.arch), rel=1e-9) for r in rows)
    front = set(gflops_front_by_brute_force(rows))
    data = json.loads(store.leaderboard_file.read_text())
    assert data["objectives"] == ["hard", "gflops"] and set(data["pareto"]) == front
