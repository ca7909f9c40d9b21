"""`fidelity` without training: refused requests, and what status, export and plot make of its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from search_helpers import folder_snapshot, make_store, step1_rows

from scrfd_search.cli import main
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.search.fidelity import make_plan, report_json
from scrfd_search.search.fidelity_stats import CandidateRuns
from scrfd_search.search.fidelity_store import REPORT_FILE, FidelityRequest, fidelity_dir


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run a command in-process; (exit code, stdout, stderr)."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def eight(tmp_path: Path) -> Path:
    """A store of 8 finished trials (2 epochs each); returns the results folder."""
    _, rows = step1_rows(8)
    make_store(tmp_path, "s1", rows)
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["s1", "--sample", "9"], "--sample: 9 is more than the 8 trials trained to the end in"),
        (["s1", "--sample", "2"], "--sample: 2 must be at least 3"),
        (["s1", "--sample", "4", "--epochs", "0"], "--epochs: 0 must be at least 1"),
        (["s1", "--sample", "4", "--seeds", "0"], "--seeds: 0 must be at least 1"),
        (["s1", "--sample", "4", "--seed", "-1"], "--seed: -1 must be between 0 and"),
        (["nope", "--sample", "4"], "nope: no experiment here"),
    ],
)
def test_a_bad_request_is_one_line_and_writes_nothing(capsys, eight: Path, argv: list[str], needle: str) -> None:
    before = folder_snapshot(eight)
    code, out, err = run(capsys, "fidelity", *argv, "--results-dir", str(eight))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("scrfd-search fidelity: error: ") and needle in err, err
    assert folder_snapshot(eight) == before


def test_fewer_than_three_trials_trained_to_the_end_is_refused(capsys, tmp_path: Path) -> None:
    space, rows = step1_rows(4)
    rows[0] = rows[0].updated(state="ERROR", hard=None)
    rows[1] = rows[1].updated(state="RUNNING")  # its AP so far is not a finished trial's
    make_store(tmp_path, "s1", rows)
    before = folder_snapshot(tmp_path)
    code, _, err = run(capsys, "fidelity", "s1", "--sample", "3", "--results-dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 's1' / 'trials.db'}: 2 trials trained to the end; fidelity needs at least 3" in err
    assert folder_snapshot(tmp_path) == before


def test_a_second_request_with_other_flags_does_not_mix_with_the_first(capsys, eight: Path) -> None:
    from scrfd_search.search.store import ExperimentStore

    store = ExperimentStore(eight / "s1")
    plan = make_plan(store.read_experiment().settings, store.read_trials(), FidelityRequest(sample=4))
    atomic_write_json(fidelity_dir(store.path) / "plan.json", plan.to_dict())
    before = folder_snapshot(eight)
    code, _, err = run(capsys, "fidelity", "s1", "--sample", "5", "--results-dir", str(eight))
    assert code == 2 and "holds a fidelity run of --sample 4 --seeds 2 --seed 0" in err, err
    assert folder_snapshot(eight) == before


def write_report(results: Path, noisy: bool) -> dict:
    """fidelity.json for s1 as `fidelity` writes it, from chosen retrain APs (4 trials, 2 seeds)."""
    from scrfd_search.search.store import ExperimentStore

    store = ExperimentStore(results / "s1")
    rows = {r.trial_id: r for r in store.read_trials()}
    plan = make_plan(store.read_experiment().settings, list(rows.values()), FidelityRequest(sample=4, seed=1))
    spread = 0.08 if noisy else 0.002
    candidates = [
        CandidateRuns(t, rows[t].hard, (rows[t].hard,), (rows[t].hard + spread, rows[t].hard - spread), (h, h + 0.01))
        for t, h in zip(plan.picked, (0.9, 0.8, 0.7, 0.6), strict=True)
    ]
    data = report_json(plan, store.read_experiment(), candidates)
    atomic_write_json(fidelity_dir(store.path) / REPORT_FILE, data)
    return data


def test_status_shows_the_verdict(capsys, eight: Path) -> None:
    data = write_report(eight, noisy=False)
    code, out, _ = run(capsys, "status", "s1", "--results-dir", str(eight))
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("fidelity ("))
    assert line.endswith(data["report"]["verdict"]) and "4 trials retrained for 8 epochs, 2 seeds" in line
    code, out, _ = run(capsys, "status", "s1", "--results-dir", str(eight), "--json")
    assert json.loads(out)["fidelity"] == line


def test_export_names_the_trials_within_the_measured_noise_as_ties(capsys, eight: Path) -> None:
    data = write_report(eight, noisy=True)
    noise = data["report"]["resolvable"]
    code, out, _ = run(capsys, "export", "s1", "--results-dir", str(eight))
    assert code == 0
    from scrfd_search.search.store import ExperimentStore, ranked

    board = ranked(ExperimentStore(eight / "s1").read_trials())
    expected = [t.trial_id for t in board[1:] if board[0].hard - t.hard < noise]
    assert expected, "the chosen noise should tie some trials with the best"
    assert f"ties: {', '.join(expected)} within {100 * noise:.2f} points of the best, {board[0].trial_id}" in out
    index = json.loads((eight / "s1" / "export" / "export.json").read_text())
    assert index["source"]["ties_with_best"]["ties"] == expected


def test_plot_draws_trial_against_long_run_ap_with_its_csv(capsys, eight: Path) -> None:
    data = write_report(eight, noisy=False)
    code, _, err = run(capsys, "plot", "s1", "--results-dir", str(eight))
    assert code == 0, err
    plots = eight / "s1" / "plots"
    assert (plots / "fidelity_s1.png").stat().st_size > 0
    lines = (plots / "fidelity_s1.csv").read_text().splitlines()
    assert lines[0].startswith("trial_id,trial_hard_pct,short_hard_pct,long_mean_hard_pct")
    first = data["candidates"][0]
    assert lines[1].split(",")[0] == first["trial_id"]
    assert float(lines[1].split(",")[3]) == pytest.approx(100 * first["long_mean"], rel=1e-5)
