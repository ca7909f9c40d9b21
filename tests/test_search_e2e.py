"""End-to-end searches on generated demo data: real Ray Tune trials training real (tiny) detectors.

Each search runs `scrfd-search` in this process (its entry point, then Ray shut down as at its exit),
on 128x128 images, 1-2 epochs, the shared demo images; a search that is interrupted runs as its own
process, and so does the one joining a cluster (Ray fixes its auth mode when a process first imports it).
Every launch draws its candidates by the closed form (each trial confirms its own with fvcore when it
starts), starts a local Ray and trains; on 2 busy cores one launch takes about a minute.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from search_helpers import STEP1_SPACE, STEP2_SPACE, cli, cli_command, end_session

from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.search.checks import local_cpus
from scrfd_search.search.constraint import ShareConstraint
from scrfd_search.search.store import ExperimentStore
from scrfd_search.search.trial import read_events
from scrfd_search.space.search_space import SearchSpace

pytestmark = pytest.mark.slow
TINY = ["--img-size", "128", "--batch-size", "4", "--cpus-per-trial", "1", "--gpus-per-trial", "0"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """The results dir shared by the searches of this module (step 2 reads step 1)."""
    return tmp_path_factory.mktemp("search_results")


def trial_intervals(store: ExperimentStore) -> dict[str, list[tuple[float, float]]]:
    """Per trial, the (start, last event) times of each of its training runs.

    A run ends with an 'end' event, or (when ASHA stops the trial at a report) with its last 'validation'.
    """
    out: dict[str, list[tuple[float, float]]] = {}
    for row in store.read_trials():
        runs: list[tuple[float, float]] = []
        for event in read_events(store.path / row.extra["work_dir"]):
            if event["event"] == "start":
                runs.append((event["time"], event["time"]))
            elif runs:
                runs[-1] = (runs[-1][0], event["time"])
        out[row.trial_id] = runs
    return out


def overlapped(intervals: dict[str, list[tuple[float, float]]]) -> bool:
    """Whether two trials trained at the same time."""
    spans = [span for runs in intervals.values() for span in runs]
    return any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])


def test_random_search_trains_the_seeded_candidates_two_at_a_time(demo_data, results):
    base = ["--data", str(demo_data), "--results-dir", str(results), "--seed", "3", *TINY]
    start = time.time()
    done = cli("launch", "--space", str(STEP1_SPACE), "--name", "s1", "--trials", "2", "--epochs", "2", *base)
    elapsed = time.time() - start
    assert done.returncode == 0, done.stderr[-3000:]
    store = ExperimentStore(results / "s1")
    rows = store.read_trials()
    assert len(rows) == 2 and all(r.state == "TERMINATED" and r.epochs_run == 2 for r in rows)
    assert all(r.hard is not None and 0.0 <= r.hard <= 1.0 for r in rows)
    # trial i trains candidate i of sample_candidates(space, N, seed): same seed, same candidates
    expected = sample_candidates(SearchSpace.load(STEP1_SPACE), 2, 3)
    by_index = {r.extra["candidate"]: r.arch for r in rows}
    assert by_index == {i: c.arch for i, c in enumerate(expected)}
    intervals = trial_intervals(store)
    assert all(len(runs) == 1 for runs in intervals.values())
    record = store.read_experiment()
    assert record.step == 1 and record.constraint is None
    if local_cpus() >= 2:  # 1 core per trial: both at once
        assert record.settings.max_concurrent == 2 and overlapped(intervals), intervals
    status = cli("status", "s1", "--results-dir", str(results))
    assert status.returncode == 0 and "trials: 2 of 2 done, 0 running, 0 failed, 0 pending" in status.stdout
    print(f"2-trial CPU search: {elapsed:.1f}s; runs {intervals}")


def test_step2_optuna_asha_search_keeps_the_step1_shares(demo_data, results):
    if not (results / "s1" / "leaderboard.json").is_file():
        pytest.skip("needs the step-1 search of the previous test")
    base = ["--data", str(demo_data), "--results-dir", str(results), *TINY]
    done = cli(
        "launch", "--space", str(STEP2_SPACE), "--name", "s2", "--from", "s1", "--top-k", "2",
        "--trials", "2", "--epochs", "2", "--searcher", "optuna", "--scheduler", "asha", *base,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    store = ExperimentStore(results / "s2")
    constraint = ShareConstraint.from_dict(json.loads((results / "s2" / "constraint.json").read_text()))
    assert store.read_experiment().constraint == constraint.to_dict()
    assert constraint.from_experiment == "s1" and len(constraint.trial_ids) == 2
    rows = store.read_trials()
    assert len(rows) == 2 and all(r.state == "TERMINATED" for r in rows)
    assert all(constraint.accepts(r.flops) for r in rows)
    low, high = SearchSpace.load(STEP2_SPACE).budget_range()
    assert all(low <= r.flops.total_gflops <= high for r in rows)
    # the Optuna study (SQLite) holds exactly the trained trials, with their hard AP
    import optuna

    study = optuna.load_study(study_name="s2", storage=f"sqlite:///{results / 's2' / 'optuna.db'}")
    assert sorted(t.user_attrs["ray_trial_id"] for t in study.trials) == sorted(r.extra["ray_trial_id"] for r in rows)
    assert sorted(f"o{t.number:04d}" for t in study.trials) == sorted(r.trial_id for r in rows)  # stable keys
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert sorted(t.value for t in study.trials) == sorted(r.hard for r in rows)
    # ray issue 46965: OptunaSearch must not serialise the trials
    assert local_cpus() < 2 or overlapped(trial_intervals(store))
    status = cli("status", "s2", "--results-dir", str(results))
    assert "constraint: backbone shares from the top 2 of s1" in status.stdout


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll until predicate() holds."""
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def finished_rows(store: ExperimentStore) -> list:
    """Rows in TERMINATED state (empty while the leaderboard does not exist yet)."""
    try:
        return [r for r in store.read_trials() if r.state == "TERMINATED"]
    except Exception:  # the file may not exist yet
        return []


def test_interrupted_search_resumes_without_rerunning_finished_trials(demo_data, tmp_path):
    args = ["--data", str(demo_data), "--results-dir", str(tmp_path), *TINY]
    launch = subprocess.Popen(
        cli_command(
            "launch",
            "--space",
            str(STEP1_SPACE),
            "--name",
            "r",
            "--trials",
            "3",
            "--epochs",
            "1",
            "--max-concurrent",
            "1",
            *args,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = ExperimentStore(tmp_path / "r")
    try:
        wait_for(lambda: finished_rows(store) or launch.poll() is not None, 400, "a first finished trial")
        launch.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = launch.communicate(timeout=180)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode == 130, err[-3000:]
    assert "resume r" in err
    before = {r.trial_id for r in finished_rows(store)}
    assert 1 <= len(before) < 3
    assert not any(r.state == "RUNNING" for r in store.read_trials())  # cut-off trials show as pending
    status = cli("status", "r", "--results-dir", str(tmp_path))
    assert f"trials: {len(before)} of 3 done, 0 running, 0 failed, {3 - len(before)} pending" in status.stdout
    done = cli("resume", "r", "--results-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = store.read_trials()
    assert len(rows) == 3 and all(r.state == "TERMINATED" for r in rows)
    assert sorted(r.extra["candidate"] for r in rows) == [0, 1, 2]
    for row in rows:
        events = read_events(store.path / row.extra["work_dir"])
        assert sum(e["event"] == "end" for e in events) == 1, (row.trial_id, events)
        if row.trial_id in before:
            assert sum(e["event"] == "start" for e in events) == 1, (row.trial_id, events)


def test_a_diverging_trial_is_recorded_as_error_and_the_search_goes_on(demo_data, tmp_path):
    args = ["--data", str(demo_data), "--results-dir", str(tmp_path), *TINY, "--max-concurrent", "1"]
    done = cli(
        "launch", "--space", str(STEP1_SPACE), "--name", "nan", "--trials", "2", "--epochs", "2", "--lr", "1e9", *args
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = ExperimentStore(tmp_path / "nan").read_trials()
    # both trials ran (the second after the first had failed) and each kept its error
    assert len(rows) == 2 and all(r.state == "ERROR" for r in rows)
    assert all("loss became NaN" in r.error or "loss became infinite" in r.error for r in rows), rows
    status = cli("status", "nan", "--results-dir", str(tmp_path))
    assert "0 of 2 done, 0 running, 2 failed" in status.stdout and "LossDivergedError" in status.stdout


def test_launch_joins_a_running_ray_cluster_with_address(demo_data, tmp_path):
    import socket

    with socket.socket() as s:  # a free port for the cluster's head
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = Path(sys.executable).parent / "ray"
    head = [str(ray_bin), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2"]
    log = tmp_path / "ray_start.log"
    # the cluster in a session of its own, ended below with its processes (`ray stop` would end every
    # Ray on the machine, other users' too)
    with log.open("w") as out:
        cluster = subprocess.Popen(
            [*head, "--include-dashboard", "false"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: "block forever" in log.read_text() or cluster.poll() is not None, 300, "the Ray head")
        assert cluster.poll() is None, log.read_text()[-2000:]
        # a process of its own: since Ray 2.59 a head started while ~/.ray/auth_token exists requires the
        # token from drivers, and the driver must choose its auth mode before it first imports Ray
        argv = cli_command(
            "launch", "--space", str(STEP1_SPACE), "--name", "joined", "--trials", "2", "--epochs", "1",
            "--data", str(demo_data), "--results-dir", str(tmp_path), "--address", f"127.0.0.1:{port}", *TINY,
        )  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    finally:
        end_session(cluster, signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
    assert done.returncode == 0, done.stderr[-3000:]
    store = ExperimentStore(tmp_path / "joined")
    assert store.read_experiment().settings.address == f"127.0.0.1:{port}"
    assert [r.state for r in store.read_trials()] == ["TERMINATED", "TERMINATED"]
