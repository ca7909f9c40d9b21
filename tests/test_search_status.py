"""`scrfd-search status` on hand-built experiment stores."""

from __future__ import annotations

import json

from search_helpers import make_record, make_store, step1_rows

from scrfd_search.cli import main
from scrfd_search.flops.report import COMPONENTS
from scrfd_search.search.constraint import derive_constraint
from scrfd_search.search.driver import DriverLease
from scrfd_search.search.tuner import mark_unfinished_pending


def status(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the status command; (exit code, stdout, stderr)."""
    code = main(["status", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def mixed_rows():
    """Four finished trials, one running with a first result, one failed, one not started."""
    space, rows = step1_rows(6)
    rows[4] = rows[4].updated(state="RUNNING", epochs_run=1)
    rows[5] = make_record("t05", rows[5].arch, space, None, state="ERROR")
    return space, rows


def test_status_ranks_by_hard_ap_and_counts_progress(tmp_path, capsys):
    space, rows = mixed_rows()
    make_store(tmp_path, "s1", rows, trials=8)
    with DriverLease(tmp_path / "s1", "launch"):  # a live search: its RUNNING row is running
        code, out, err = status(capsys, "s1", "--results-dir", str(tmp_path))
    assert code == 0 and err == ""
    assert "trials: 4 of 8 done, 1 running, 1 failed, 2 pending" in out
    best = max(rows[:5], key=lambda r: r.hard)
    assert f"best hard AP {100 * best.hard:.2f}% (trial {best.trial_id}" in out
    table = out[out.index("rank") :].splitlines()
    header, body = table[0], [line for line in table[2:] if line.strip() and not line.startswith(("errors", "  t"))]
    for comp in COMPONENTS:
        assert comp in header
    ids = [line.split()[1] for line in body]
    assert ids[:5] == [r.trial_id for r in sorted(rows[:5], key=lambda r: -r.hard)]
    assert ids[5] == "t05" and body[5].split()[0] == "-" and body[5].rstrip().endswith("ERROR")
    first = body[0].split()
    assert first[0] == "1" and float(first[2]) == round(best.flops.total_gflops, 3)
    shares = [float(x) for x in first[4:11]]
    assert abs(sum(shares) - 100) < 0.5
    assert float(first[-3]) == round(100 * best.hard, 2) and first[-1] == best.state
    assert "t05: ValueError: loss is nan" in out


def test_status_json_matches_the_table(tmp_path, capsys):
    space, rows = mixed_rows()
    make_store(tmp_path, "s1", rows, trials=8)
    with DriverLease(tmp_path / "s1", "launch"):
        code, out, _ = status(capsys, "s1", "--results-dir", str(tmp_path), "--json")
    data = json.loads(out)
    assert data["progress"] == {
        "total": 8,
        "done": 4,
        "running": 1,
        "failed": 1,
        "pending": 2,
        "best_trial": max(rows[:5], key=lambda r: r.hard).trial_id,
        "best_hard": max(r.hard for r in rows[:5]),
    }
    assert [t["rank"] for t in data["trials"]] == [1, 2, 3, 4, 5, None]
    assert abs(sum(data["trials"][0]["shares"].values()) - 1) < 1e-9


def test_status_of_a_step2_search_shows_its_constraint(tmp_path, capsys):
    space, rows = step1_rows(5)
    c = derive_constraint(rows, from_experiment="s1", top_k=3)
    make_store(tmp_path, "s2", rows[:2], step=2, trials=4, constraint=c.to_dict(), from_experiment="s1")
    code, out, _ = status(capsys, "s2", "--results-dir", str(tmp_path))
    line = next(x for x in out.splitlines() if x.startswith("constraint:"))
    lo, hi = c.ranges["c3"]
    assert "top 3 of s1" in line and f"c3 {100 * lo:.1f}-{100 * hi:.1f}%" in line


def test_status_of_an_unknown_experiment_is_one_line(tmp_path, capsys):
    code, out, err = status(capsys, "nope", "--results-dir", str(tmp_path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "nope" in err and "launch one first" in err


def test_trials_cut_off_by_an_interruption_show_as_pending(tmp_path, capsys):
    space, rows = mixed_rows()
    store = make_store(tmp_path, "s1", rows, trials=8)
    assert mark_unfinished_pending(store) == 5  # 4 done + 1 failed
    after = {r.trial_id: r for r in store.read_trials()}
    assert after["t04"].state == "PENDING" and after["t04"].extra["interrupted"] is True
    assert after["t04"].hard == rows[4].hard  # what it reached is kept
    code, out, _ = status(capsys, "s1", "--results-dir", str(tmp_path))
    assert "trials: 4 of 8 done, 0 running, 1 failed, 3 pending" in out
