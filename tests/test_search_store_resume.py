"""The experiment store around resume, without Ray: the typed record, relocation, driver liveness,
a broken leaderboard, and the rows rebuilt or reconciled from the trials' own folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from search_helpers import make_store, step1_rows

from scrfd_search.cli import main
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.errors import UserError
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.search.driver import DRIVER_FILE, DriverLease, live_driver
from scrfd_search.search.experiment import VERSION
from scrfd_search.search.resume import rebuilt_rows, reconcile
from scrfd_search.search.store import ExperimentStore, record_from_config
from scrfd_search.search.trial import EVENTS_FILE, TRIAL_FILE
from scrfd_search.training.files import RESULT_FILE


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run a command in-process; (exit code, stdout, stderr)."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(command: str, code: int, err: str, *needles: str) -> None:
    """Exit 2 with exactly one `scrfd-search COMMAND: error:` line holding every needle."""
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"scrfd-search {command}: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)


def snapshot(folder) -> dict[str, bytes]:
    """Every file under folder with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_experiment_json_is_versioned_and_holds_no_path_into_the_store(tmp_path):
    _, rows = step1_rows(3)
    store = make_store(tmp_path / "a", "s1", rows)
    raw = json.loads(store.experiment_file.read_text())
    assert raw["version"] == VERSION
    assert not any(isinstance(v, str) and str(store.path) in v for v in raw.values()), raw
    # copied elsewhere under another name: every store path follows the copy
    moved = tmp_path / "b" / "s1-copy"
    shutil.copytree(store.path, moved)
    shutil.rmtree(store.path)
    record = ExperimentStore(moved).read_experiment()
    assert record.settings.path == moved and record.settings.ray_dir == moved / "ray"
    assert record.settings.trials_root == moved / "trials" and str(moved) in record.settings.optuna_url
    assert record.study_name == "s1" and record.trials == 3


def test_an_older_store_is_read_by_status_and_refused_by_resume(tmp_path, capsys):
    _, rows = step1_rows(2)
    store = make_store(tmp_path, "old", rows)
    legacy = {k: v for k, v in json.loads(store.experiment_file.read_text()).items() if k != "version"}
    legacy.update(results_dir="/somewhere/else", ray_experiment="/somewhere/else/old/ray/old")
    atomic_write_json(store.experiment_file, legacy)
    code, out, _ = run(capsys, "status", "old", "--results-dir", str(tmp_path))
    assert code == 0 and "trials: 2 of 2 done" in out
    code, _, err = run(capsys, "resume", "old", "--results-dir", str(tmp_path))
    one_line_error("resume", code, err, "experiment.json", "older scrfd-search", "version 1")


def test_a_newer_or_mistyped_experiment_json_is_one_line(tmp_path, capsys):
    _, rows = step1_rows(2)
    store = make_store(tmp_path, "s", rows)
    raw = json.loads(store.experiment_file.read_text())
    atomic_write_json(store.experiment_file, {**raw, "version": VERSION + 1})
    code, _, err = run(capsys, "status", "s", "--results-dir", str(tmp_path))
    one_line_error("status", code, err, "experiment.json", f"version {VERSION + 1}", "newer")
    atomic_write_json(store.experiment_file, {**raw, "epochs": "many"})
    code, _, err = run(capsys, "resume", "s", "--results-dir", str(tmp_path))
    one_line_error("resume", code, err, "experiment.json", "epochs", "whole number")


def test_status_of_a_dead_driver_says_not_running_and_how_to_resume(tmp_path, capsys):
    _, rows = step1_rows(3)
    rows[2] = rows[2].updated(state="RUNNING", hard=None)
    store = make_store(tmp_path, "s1", rows, trials=4)
    now = time.time()
    atomic_write_json(
        store.path / DRIVER_FILE,
        {
            "pid": dead_pid(),
            "host": __import__("socket").gethostname(),
            "command": "launch",
            "started": now,
            "heartbeat": now,
        },
    )
    assert live_driver(store.path) is None
    code, out, _ = run(capsys, "status", "s1", "--results-dir", str(tmp_path))
    assert code == 0
    assert "not running (no live driver)" in out and f"scrfd-search resume s1 --results-dir {tmp_path}" in out
    assert "0 running" in out and "RUNNING" not in out


def test_status_of_a_live_driver_and_a_second_driver_refused(tmp_path, capsys):
    _, rows = step1_rows(2)
    rows[1] = rows[1].updated(state="RUNNING", hard=None)
    store = make_store(tmp_path, "s1", rows)
    with DriverLease(store.path, "resume", heartbeat_s=0.05):
        info = live_driver(store.path)
        assert info is not None and info.command == "resume"
        time.sleep(0.2)
        assert live_driver(store.path).heartbeat > info.heartbeat  # the heartbeat goes on
        code, out, _ = run(capsys, "status", "s1", "--results-dir", str(tmp_path))
        assert "driver: running, resume (pid" in out and "1 running" in out
        with pytest.raises(UserError, match="being driven by resume"), DriverLease(store.path, "launch"):
            pass
    assert live_driver(store.path) is None and not (store.path / DRIVER_FILE).exists()


def test_resume_of_a_truncated_leaderboard_changes_nothing_and_offers_a_rebuild(tmp_path, capsys):
    _, rows = step1_rows(3)
    store = make_store(tmp_path, "s1", rows)
    text = store.leaderboard_file.read_text()
    store.leaderboard_file.write_text(text[: len(text) // 2])
    before = snapshot(store.path)
    code, _, err = run(capsys, "resume", "s1", "--results-dir", str(tmp_path))
    one_line_error("resume", code, err, "leaderboard.json", "not valid JSON", "nothing was changed")
    assert "resume s1 --rebuild-leaderboard" in err
    assert snapshot(store.path) == before


def trial_folder(store: ExperimentStore, key: str, row, events: list[str], result: bool) -> None:
    """A trial work folder as run_trial leaves it: trial.json, the event log, result.json when trained."""
    folder = store.path / "trials" / key
    folder.mkdir(parents=True)
    config = {"trial_key": key, "candidate": int(key[1:]), "arch": row.arch.to_dict(), "flops": row.flops.to_dict()}
    atomic_write_json(folder / TRIAL_FILE, {"config": config})
    lines = [json.dumps({"event": e, "time": 1.0 + i, "pid": 1, "host": "h"}) for i, e in enumerate(events)]
    (folder / EVENTS_FILE).write_text("".join(line + "\n" for line in lines))
    if result:
        atomic_write_json(
            folder / RESULT_FILE,
            {"easy": 0.5, "medium": 0.4, "hard": 0.25, "epochs_run": 2, "checkpoint": f"/old/place/{key}/epoch_2.pth"},
        )
        (folder / "epoch_2.pth").write_bytes(b"weights")


def test_rows_are_rebuilt_and_reconciled_from_the_trials_own_folders(tmp_path):
    _, rows = step1_rows(3)
    store = make_store(tmp_path, "s1", [], trials=3)
    trial_folder(store, "c0000", rows[0], ["start", "validation", "end"], result=True)  # trained to its end
    trial_folder(store, "c0001", rows[1], ["start"], result=False)  # cut off
    trial_folder(store, "c0002", rows[2], ["start", "end", "start"], result=True)  # its rerun was cut off
    rebuilt = {r.trial_id: r for r in rebuilt_rows(store)}
    assert set(rebuilt) == {"c0000", "c0001", "c0002"}
    done = rebuilt["c0000"]
    assert done.state == "TERMINATED" and done.hard == 0.25 and done.epochs_run == 2
    assert done.checkpoint == "trials/c0000/epoch_2.pth"  # relative to the store, wherever it came from
    assert rebuilt["c0001"].state == "PENDING" and rebuilt["c0002"].state == "PENDING"
    # the rows a killed driver left RUNNING: the finished one is recorded, the others wait for resume
    running = [
        record_from_config(k, {"arch": r.arch.to_dict(), "flops": r.flops.to_dict()})
        for k, r in zip(("c0000", "c0001"), rows, strict=False)
    ]
    store.write_trials([r.updated(state="RUNNING") for r in running])
    fixed = {r.trial_id: r for r in reconcile(store, store.read_trials())}
    assert fixed["c0000"].state == "TERMINATED" and fixed["c0000"].hard == 0.25
    assert fixed["c0001"].state == "PENDING" and fixed["c0001"].extra["interrupted"] is True
    assert {r.trial_id: r.state for r in store.read_trials()} == {"c0000": "TERMINATED", "c0001": "PENDING"}


def test_rebuild_leaderboard_restores_the_rows_and_resume_goes_on(tmp_path, capsys):
    _, rows = step1_rows(2)
    store = make_store(tmp_path, "s1", [], trials=2)
    keys = ("c0000", "c0001")
    for key, row in zip(keys, rows, strict=True):
        trial_folder(store, key, row, ["start", "validation", "end"], result=True)
    configs = [json.loads((store.path / "trials" / k / TRIAL_FILE).read_text())["config"] for k in keys]
    atomic_write_json(store.path / "candidates.json", {"candidates": configs})
    store.leaderboard_file.write_text('{"trials": [')
    data = tmp_path / "demo"
    write_demo_dataset(data, DemoConfig(num_train=2, num_val=1, seed=0, min_width=96, max_width=128))
    # the data moved since the launch (make_store points at a folder that does not exist): --data
    argv = ["resume", "s1", "--results-dir", str(tmp_path), "--rebuild-leaderboard"]
    code, _, err = run(capsys, *argv)
    one_line_error("resume", code, err, "no-data", "--data PATH")
    code, _, err = run(capsys, *argv, "--data", str(data))
    assert code == 0 and "all 2 trials already finished" in err, err
    rebuilt = store.read_trials()
    assert [r.trial_id for r in rebuilt] == list(keys) and all(r.state == "TERMINATED" for r in rebuilt)
    assert [r.arch for r in rebuilt] == [r.arch for r in rows] and all(r.hard == 0.25 for r in rebuilt)
