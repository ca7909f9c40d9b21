"""The trial rows in trials.db: one row per event, readers during writes, the leaderboard.json snapshot
rebuilt from the database, a damaged database, and stores from before the database."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from search_helpers import REPO, make_store, step1_rows

from scrfd_search.cli import main
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.errors import UserError
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.search.store import CANDIDATES_FILE, ExperimentStore, TrialRecord


def test_an_event_writes_its_row_in_place_and_the_order_of_first_record_is_kept(tmp_path):
    _, rows = step1_rows(4)
    store = make_store(tmp_path, "s", rows[:3])
    store.upsert(rows[1].updated(state="RUNNING", hard=None, epochs_run=1))
    store.upsert(rows[3].updated(state="PENDING"))
    got = store.read_trials()
    assert [r.trial_id for r in got] == ["t00", "t01", "t02", "t03"]
    assert got[1].state == "RUNNING" and got[1].hard is None and got[1].epochs_run == 1
    assert store.read_trial("t03") == rows[3].updated(state="PENDING") and store.read_trial("nope") is None
    assert store.count_trials(("TERMINATED",)) == 2 and store.count_trials(("RUNNING", "PENDING")) == 2
    # a store travels to Ray as its path (its open connection stays behind) and works on the other side
    again = pickle.loads(pickle.dumps(store))
    assert again.read_trials() == got
    # a fresh reader (another command) sees the same rows
    assert ExperimentStore(store.path).read_trials() == got


WRITER = textwrap.dedent(
    """
    import sys
    from scrfd_search.search.store import ExperimentStore
    store = ExperimentStore(sys.argv[1])
    rows = store.read_trials()
    print("ready", flush=True)
    for k in range(1, int(sys.argv[2]) + 1):
        for row in rows:
            # every field of a row moves together; the error's length changes, so a torn row would show
            ap = k / 1e4
            store.upsert(row.updated(epochs_run=k, easy=ap, medium=ap, hard=ap, error="x" * (k % 97) * 20))
    store.flush()
    """
)


def consistent(row: TrialRecord) -> int:
    """The round a row was written in, after checking its fields were written together."""
    k = row.epochs_run
    assert row.easy == row.medium == row.hard, row
    if k:
        assert row.hard == k / 1e4 and row.error == "x" * (k % 97) * 20, row
    return k


def test_a_reader_during_writes_never_sees_a_torn_row(tmp_path):
    _, rows = step1_rows(6)
    store = make_store(tmp_path, "s", [r.updated(easy=0.0, medium=0.0, hard=0.0, epochs_run=0) for r in rows])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store.path), "400"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "ready"
    reader = ExperimentStore(store.path)
    seen_db, seen_snapshot = set(), set()
    while writer.poll() is None:
        got = reader.read_trials()  # trials.db, while the writer commits row after row
        assert [r.trial_id for r in got] == [r.trial_id for r in rows]
        seen_db |= {consistent(r) for r in got}
        snapshot = json.loads(store.leaderboard_file.read_text())  # the snapshot is replaced whole, never torn
        seen_snapshot |= {consistent(TrialRecord.from_dict(r)) for r in snapshot["trials"]}
    assert writer.wait() == 0
    assert len(seen_db) > 2, seen_db  # the reads really happened while rows changed
    assert {consistent(r) for r in reader.read_trials()} == {400}
    final = json.loads(store.leaderboard_file.read_text())["trials"]
    assert {consistent(TrialRecord.from_dict(r)) for r in final} == {400}  # flushed at the end


def test_leaderboard_json_is_rebuilt_from_the_database(tmp_path):
    _, rows = step1_rows(5)
    store = make_store(tmp_path, "s", rows)
    store.leaderboard_file.unlink()
    writer = ExperimentStore(store.path)
    for i, row in enumerate(rows):  # a burst of events: the first rewrites the snapshot, the rest wait their turn
        writer.upsert(row.updated(epochs_run=10 + i))
    on_disk = json.loads(store.leaderboard_file.read_text())["trials"]
    assert [r["epochs_run"] for r in on_disk] == [10, 2, 2, 2, 2]
    writer.flush()  # at the end of a run: everything
    on_disk = json.loads(store.leaderboard_file.read_text())["trials"]
    assert [TrialRecord.from_dict(r) for r in on_disk] == store.read_trials()
    # a damaged snapshot changes nothing that commands read, and is written again from the database
    store.leaderboard_file.write_text('{"trials": [')
    assert [r.epochs_run for r in store.read_trials()] == [10, 11, 12, 13, 14]
    store.write_snapshot()
    assert [TrialRecord.from_dict(r) for r in json.loads(store.leaderboard_file.read_text())["trials"]] == (
        store.read_trials()
    )


def legacy_store(root: Path, name: str, rows: list[TrialRecord]) -> ExperimentStore:
    """A store as scrfd-search wrote it before trials.db: its rows in leaderboard.json alone."""
    store = make_store(root, name, [], trials=len(rows))
    store.close()
    store.database_file.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{store.database_file}{suffix}").unlink(missing_ok=True)
    atomic_write_json(store.leaderboard_file, {"trials": [r.to_dict() for r in rows]})
    return ExperimentStore(store.path)


def test_an_old_store_is_read_as_it_is_and_migrated_once(tmp_path, capsys):
    _, rows = step1_rows(3)
    store = legacy_store(tmp_path, "old", rows)
    assert store.read_trials() == rows and store.needs_migration()
    assert main(["status", "old", "--results-dir", str(tmp_path)]) == 0
    assert "trials: 3 of 3 done" in capsys.readouterr().out
    assert not store.database_file.exists()  # reading changes nothing
    assert store.migrate() == 3 and store.migrate() == 0
    assert store.database_file.is_file() and not store.needs_migration()
    assert ExperimentStore(store.path).read_trials() == rows


def test_an_event_on_an_old_store_keeps_its_rows(tmp_path):
    _, rows = step1_rows(3)
    store = legacy_store(tmp_path, "old", rows[:2])
    store.upsert(rows[2])  # the first write moves the old rows into trials.db
    assert store.read_trials() == rows


def test_a_damaged_database_is_one_line(tmp_path, capsys):
    _, rows = step1_rows(2)
    store = make_store(tmp_path, "s", rows)
    store.close()
    store.database_file.write_bytes(b"not a database at all" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{store.database_file}{suffix}").unlink(missing_ok=True)
    with pytest.raises(UserError, match="trials.db: not a readable trials database"):
        ExperimentStore(store.path).read_trials()
    assert main(["status", "s", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trials.db: not a readable trials database" in err, err
    # rewriting every row (what a rebuild does) replaces the damaged file
    ExperimentStore(store.path).write_trials(rows)
    assert ExperimentStore(store.path).read_trials() == rows


def test_resume_moves_an_old_stores_rows_into_the_database_once_and_says_so(tmp_path, capsys):
    _, rows = step1_rows(2)
    store = legacy_store(tmp_path, "old", rows)
    configs = [{"trial_key": r.trial_id, "arch": r.arch.to_dict(), "flops": r.flops.to_dict()} for r in rows]
    atomic_write_json(store.path / CANDIDATES_FILE, {"candidates": configs})
    data = tmp_path / "demo"
    write_demo_dataset(data, DemoConfig(num_train=2, num_val=1, seed=0, min_width=96, max_width=128))
    argv = ["resume", "old", "--results-dir", str(tmp_path), "--data", str(data)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "moved 2 trial rows from leaderboard.json into trials.db" in err and "all 2 trials already finished" in err
    assert store.database_file.is_file() and ExperimentStore(store.path).read_trials() == rows
    assert main(argv) == 0
    assert "moved" not in capsys.readouterr().err  # once
