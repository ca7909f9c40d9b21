"""`launch --repeats R` without training: refused values, the mean a repeated trial reports, its row and rank."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from search_helpers import STEP1_SPACE, make_store, step1_rows

from scrfd_search.cli import main
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.search.ray_callback import with_result
from scrfd_search.search.resume import reconcile
from scrfd_search.search.store import ExperimentStore, ranked
from scrfd_search.search.trial import EVENTS_FILE, repeats_result
from scrfd_search.training.files import RESULT_FILE


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--repeats", "0"], "--repeats: 0 must be at least 1"),
        (["--repeats", "2", "--scheduler", "asha"], "--repeats: 2 with --scheduler asha would stop trials"),
    ],
)
def test_a_bad_repeats_value_is_one_line_and_writes_nothing(capsys, tmp_path: Path, flags, needle) -> None:
    argv = ["launch", "--space", str(STEP1_SPACE), "--data", str(tmp_path), "--name", "r", "--results-dir"]
    code = main([*argv, str(tmp_path / "results"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "results").exists()


def test_a_repeated_trial_reports_the_mean_and_keeps_every_run(tmp_path: Path) -> None:
    runs = [{"easy": 0.9, "medium": 0.8, "hard": 0.5, "epochs_run": 2}, {"easy": 0.7, "medium": 0.6, "hard": 0.3}]
    runs[1]["epochs_run"] = 2
    result = repeats_result(runs, tmp_path)
    assert result["hard"] == pytest.approx(0.4) and result["easy"] == pytest.approx(0.8)
    assert result["hard_runs"] == [0.5, 0.3] and result["hard_sd"] == pytest.approx(statistics.stdev([0.5, 0.3]))


def test_repeated_rows_rank_by_the_mean_whether_reported_or_rebuilt(tmp_path: Path, capsys) -> None:
    _, rows = step1_rows(3)
    # t00 has the best single run (0.9) but the lowest mean; t02 the best mean
    runs = {"t00": [0.9, 0.1], "t01": [0.6, 0.5], "t02": [0.7, 0.7]}
    reported = [with_result(r, {"hard": sum(runs[r.trial_id]) / 2, "hard_runs": runs[r.trial_id]}) for r in rows]
    assert [r.trial_id for r in ranked(reported)] == ["t02", "t01", "t00"]
    assert reported[0].extra["hard_runs"] == [0.9, 0.1]
    # a driver killed after the trials trained: resume rebuilds the same rows from their result.json
    store = make_store(tmp_path, "rep", [r.updated(state="RUNNING") for r in rows], repeats=2)
    for row in rows:
        folder = store.path / row.work_dir
        one = [{"easy": h, "medium": h, "hard": h, "epochs_run": 2} for h in runs[row.trial_id]]
        atomic_write_json(folder / RESULT_FILE, repeats_result(one, folder))
        (folder / EVENTS_FILE).write_text('{"event": "start"}\n{"event": "end"}\n')
    rebuilt = reconcile(store, store.read_trials())
    assert [r.trial_id for r in ranked(rebuilt)] == ["t02", "t01", "t00"]
    assert {r.trial_id: r.extra["hard_runs"] for r in rebuilt} == runs
    assert ExperimentStore(store.path).read_experiment().settings.repeats == 2
    assert main(["status", "rep", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "repeats: every candidate trains 2 times (seeds 0 to 1)" in out
    t00 = next(line for line in out.splitlines() if " t00 " in line)
    assert f"{100 * statistics.stdev([0.9, 0.1]):.2f}" in t00
