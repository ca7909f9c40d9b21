"""Multi-objective searches without training: objectives, the leaderboard's Pareto marks, status, plot, bad input.

The stores are built by hand (tests/search_helpers.py): real ArchSpecs of the 0.5 GF space with
chosen APs and latencies, so the expected front is known exactly.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from search_helpers import STEP1_SPACE, gflops_front_by_brute_force, make_store, step1_rows

from scrfd_search.cli import main
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.errors import UserError
from scrfd_search.search.objectives import GFLOPS, HARD, LATENCY, non_dominated, parse_objectives
from scrfd_search.search.store import ExperimentStore
from scrfd_search.space.search_space import SearchSpace

# (hard AP, latency ms) of eight trials; the front by hand: t1 (fastest), t3, t5, t7 (best AP)
POINTS = [(0.30, 12.0), (0.25, 9.0), (0.40, 11.0), (0.35, 11.5), (0.45, 14.0), (0.44, 16.0), (0.20, 20.0), (0.50, 25.0)]
FRONT = ["t01", "t02", "t04", "t07"]


@pytest.fixture()
def store(tmp_path):
    """A finished hard,latency search of eight trials plus one failed and one still pending."""
    _, rows = step1_rows(10, seed=1)
    rows = [r.updated(hard=h, latency_ms=ms) for r, (h, ms) in zip(rows, POINTS, strict=False)] + [
        rows[8].updated(state="ERROR", hard=0.9, latency_ms=1.0, error="boom"),  # failed: never on the front
        rows[9].updated(state="PENDING", hard=None, easy=None, medium=None, latency_ms=2.0),
    ]
    return make_store(tmp_path, "mo", rows, objectives="hard,latency")


def brute_front(rows) -> list[str]:
    """Finished trials that no other finished trial beats in one objective while matching it in the other."""
    done = [r for r in rows if r.state == "TERMINATED"]
    return [
        a.trial_id
        for a in done
        if not any(
            b.hard >= a.hard and b.latency_ms <= a.latency_ms and (b.hard > a.hard or b.latency_ms < a.latency_ms)
            for b in done
        )
    ]


def test_the_leaderboard_marks_the_non_dominated_finished_trials(store) -> None:
    data = json.loads(store.leaderboard_file.read_text())
    assert data["objectives"] == ["hard", "latency"]
    assert data["pareto"] == FRONT == brute_front(store.read_trials())
    assert store.read_experiment().settings.objectives == "hard,latency"  # what resume reads back
    # a trial finishing faster and better than every other takes the front alone
    best = store.read_trials()[9].updated(state="TERMINATED", hard=0.99, easy=1.0, medium=1.0, latency_ms=5.0)
    store.upsert(best)
    store.flush()  # the snapshot follows the rows every few seconds (issue 19); a flush writes it now
    assert json.loads(store.leaderboard_file.read_text())["pareto"] == [best.trial_id]


def test_non_dominated_agrees_with_pairwise_domination_on_random_points() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = [tuple(p) for p in rng.integers(0, 6, size=(12, 2)).astype(float)]  # many ties on purpose
        marks = non_dominated(points, ["max", "min"])
        for p, mark in zip(points, marks, strict=True):
            beaten = any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)
            assert mark == (not beaten)
    assert non_dominated([], ["max", "min"]) == []


def test_status_shows_the_front(store, capsys) -> None:
    assert main(["status", "mo", "--results-dir", str(store.path.parent)]) == 0
    out = capsys.readouterr().out
    assert "objectives: hard AP (max) and predicted latency (min)" in out
    assert "Pareto front (*, finished trials): 4 trials: t01 (25.00%, 9 ms), t02 (40.00%, 11 ms)" in out
    marked = sorted(line.split()[2] for line in out.splitlines() if line[4:6] == " *")
    assert marked == FRONT
    assert main(["status", "mo", "--json", "--results-dir", str(store.path.parent)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["pareto"]) == FRONT and data["objectives"] == ["hard", "latency"]
    assert sorted(r["trial_id"] for r in data["trials"] if r["pareto"]) == FRONT
    assert {r["trial_id"]: r["latency_ms"] for r in data["trials"]}["t00"] == 12.0


def test_plot_draws_hard_ap_against_latency_with_the_front(store, tmp_path) -> None:
    out = tmp_path / "plots"
    assert main(["plot", "mo", "--out", str(out), "--results-dir", str(store.path.parent)]) == 0
    assert (out / "pareto_hard_ap_latency_mo.png").stat().st_size > 0
    with (out / "pareto_hard_ap_latency_mo.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8  # the failed and the pending trial are left out
    assert sorted(r["trial_id"] for r in rows if r["pareto"] == "True") == FRONT
    assert {r["trial_id"]: float(r["latency_ms"]) for r in rows}["t07"] == 25.0
    assert main(["plot", "mo", "--out", str(out), "--results-dir", str(store.path.parent)]) == 0  # ours to replace


def test_objectives_parse_and_refuse_what_they_do_not_know() -> None:
    assert parse_objectives("hard") == (HARD,)
    assert parse_objectives("hard, latency") == (HARD, LATENCY)
    assert parse_objectives("hard,gflops") == (HARD, GFLOPS)
    for bad in ("speed", "hard,speed", "latency,hard", "hard,latency,gflops", ""):
        with pytest.raises(UserError, match="--objectives"):
            parse_objectives(bad)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """A tiny generated data set in the WIDER FACE layout (launch checks it before the objectives' table)."""
    root = tmp_path_factory.mktemp("data") / "demo"
    write_demo_dataset(root, DemoConfig(num_train=4, num_val=2, seed=0))
    return root


@pytest.mark.parametrize(
    ("objectives", "needles"),
    [
        ("hard,speed", ["--objectives", "unknown objective 'speed'", "hard,latency"]),
        ("hard,latency", ["--objectives hard,latency", "scrfd_0.5gf_step1.yaml", "sets no latency_table"]),
    ],
    ids=["unknown", "latency_without_table"],
)
def test_bad_objectives_are_one_line_and_write_nothing(demo_data, tmp_path, capsys, objectives, needles) -> None:
    argv = ["launch", "--space", str(STEP1_SPACE), "--data", str(demo_data), "--name", "x"]
    code = main([*argv, "--results-dir", str(tmp_path), "--trials", "2", "--epochs", "1", "--objectives", objectives])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("scrfd-search launch: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    assert list(tmp_path.iterdir()) == []


def test_export_pareto_refuses_a_single_objective_search(tmp_path, capsys) -> None:
    _, rows = step1_rows(3)
    make_store(tmp_path, "single", rows)
    assert main(["export", "single", "--pareto", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pareto" in err and "hard AP alone" in err
    assert not (tmp_path / "single" / "export").exists()


def test_store_objectives_default_to_hard_alone(tmp_path) -> None:
    _, rows = step1_rows(3)
    store = make_store(tmp_path, "plain", rows)
    assert store.objectives() == (HARD,) and store.pareto_ids() == []
    assert "pareto" not in json.loads(store.leaderboard_file.read_text())
    assert ExperimentStore(tmp_path / "none").objectives() == (HARD,)


def test_gflops_objective_marks_by_counted_gflops(tmp_path) -> None:
    _, rows = step1_rows(6, seed=2)
    store = make_store(tmp_path, "gf", rows, objectives="hard,gflops")
    expected = gflops_front_by_brute_force(rows)
    assert store.pareto_ids() == expected and expected


def test_multi_objective_optuna_tells_the_study_hard_ap_and_the_cost(tmp_path) -> None:
    import optuna

    from scrfd_search.search.searchers import BudgetedOptunaSearch

    space = SearchSpace.from_dict(SearchSpace.load(STEP1_SPACE).to_dict())  # as the tuner reads it back
    url = f"sqlite:///{tmp_path / 'mo.db'}"

    def searcher(**kwargs) -> BudgetedOptunaSearch:
        return BudgetedOptunaSearch(
            space, storage_url=url, study_name="mo", seed=5, confirm=False, objectives=(HARD, GFLOPS), **kwargs
        )

    first = searcher()
    configs = [first.suggest(f"t{i}") for i in range(4)]
    for i in range(2):  # the trainable reports the costs too; here only the AP arrives
        first.on_trial_complete(f"t{i}", {"hard": 0.1 * (i + 1), "training_iteration": 1})
    resumed = searcher(replay=[configs[2]])  # a killed driver's unfinished trial, handed out again
    assert resumed.suggest("again") == configs[2]
    resumed.on_trial_complete("again", {"hard": 0.5, "training_iteration": 1})
    later = [resumed.suggest(f"n{i}") for i in range(3)]  # TPE over a two-objective history
    low, high = space.budget_range()
    assert all(low <= c["flops"]["total_gflops"] <= high for c in later)
    assert len({json.dumps(c["arch"], sort_keys=True) for c in configs + later}) == 7

    study = optuna.load_study(study_name="mo", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    values = {t.number: t.values for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    expected = {
        c["optuna_number"]: [h, c["flops"]["total_gflops"]] for c, h in zip(configs[:3], (0.1, 0.2, 0.5), strict=True)
    }
    assert values.keys() == expected.keys()
    assert all(values[n] == pytest.approx(v) for n, v in expected.items())
