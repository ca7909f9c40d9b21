"""Helpers the tests share: the repository's paths, the shared demo data set's config, `scrfd-search`
run in-process (or its command line for a test about the process), the tools as modules, and
hand-built experiment stores for the search tests (real ArchSpecs, closed-form FLOPs, chosen APs)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from scrfd_search.cli import main
from scrfd_search.data.demo import DemoConfig
from scrfd_search.flops.analytic import count_flops
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.fidelity_stats import BOOTSTRAP_RESAMPLES
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.store import ExperimentStore, TrialRecord
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec
from scrfd_search.space.search_space import SearchSpace

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # data beside the checkout: the WIDER FACE gt, the released models
SHARED_GT = SHARED / "widerface_gt"
RELEASED_DIR = SHARED / "released_scrfd"
# The demo data set the tests share (conftest's demo_data): 8 training and 4 validation images, 96-128 px.
DEMO = DemoConfig(num_train=8, num_val=4, seed=0, min_width=96, max_width=128)
# A smaller one for tests that train every image an epoch (conftest's demo_factory(SMALL_DEMO)).
SMALL_DEMO = DemoConfig(num_train=4, num_val=2, seed=1, min_width=64, max_width=96)
# A tiny detector that trains an epoch on a few demo images in seconds (tests that run training).
TINY_ARCH = ArchSpec(
    block="basic",
    stem_width=8,
    stages=tuple(StageSpec(1, w) for w in (8, 16, 16, 32)),
    neck=NeckSpec(16),
    head=HeadSpec(num_convs=1, width=16, norm="gn", gn_groups=4),
)
STEP1_SPACE = REPO / "search_spaces" / "scrfd_0.5gf_step1.yaml"
STEP2_SPACE = REPO / "search_spaces" / "scrfd_0.5gf_step2.yaml"


def in_budget_archs(space: SearchSpace, n: int, seed: int) -> list:
    """n distinct architectures of the space inside its budget (closed-form FLOPs, no fvcore)."""
    from scrfd_search.sampling.sampler import sample_candidates

    return [c.arch for c in sample_candidates(space, n, seed, confirm=False)]


def make_record(trial_id: str, arch, space: SearchSpace, hard: float | None, state: str = "TERMINATED") -> TrialRecord:
    """A leaderboard row with APs derived from hard (easy > medium > hard, as on WIDER FACE)."""
    flops = count_flops(arch, space.input_shape)
    aps = {} if hard is None else {"easy": min(1.0, hard + 0.2), "medium": min(1.0, hard + 0.1), "hard": hard}
    return TrialRecord(
        trial_id=trial_id,
        arch=arch,
        flops=flops,
        state=state,
        epochs_run=0 if hard is None else 2,
        error="ValueError: loss is nan" if state == "ERROR" else None,
        **aps,
    )


RECORD_RECIPE_FIELDS = ("recipe", "recipe_space", "recipe_from", "arch", "input_shape")


def make_store(
    root: Path,
    name: str,
    rows: list[TrialRecord],
    *,
    step: int = 1,
    trials: int | None = None,
    constraint: dict | None = None,
    from_experiment: str | None = None,
    **options: Any,
) -> ExperimentStore:
    """An experiment folder with experiment.json and leaderboard.json as `launch` writes them
    (options: other SearchSettings fields, e.g. cpus_per_trial, or the record's recipe fields)."""
    recipe = {k: options.pop(k) for k in RECORD_RECIPE_FIELDS if k in options}
    space_file = STEP1_SPACE if step == 1 else STEP2_SPACE
    space = SearchSpace.load(space_file)
    settings = SearchSettings(
        name=name,
        results_dir=str(root),
        space_file=str(space_file),
        data_root=str(root / "no-data"),
        trials=trials if trials is not None else len(rows),
        epochs=2,
        from_experiment=from_experiment,
        **options,
    )
    store = ExperimentStore(root / name)
    store.write_experiment(
        ExperimentRecord.for_launch(
            settings, space.to_dict(), step, space.budget_gflops, space.tolerance, constraint, **recipe
        )
    )
    store.write_trials(rows)
    store.close()  # checkpoints the database's write-ahead log now, not whenever the collector closes it
    return store


def step1_rows(n: int = 8, seed: int = 0) -> tuple[SearchSpace, list[TrialRecord]]:
    """n finished step-1 trials with distinct hard APs (trial t00 worst ... last best)."""
    space = SearchSpace.load(STEP1_SPACE)
    archs = in_budget_archs(space, n, seed)
    rng = np.random.default_rng(seed)
    hards = np.sort(rng.uniform(0.05, 0.6, size=n))
    return space, [
        make_record(f"t{i:02d}", a, space, float(h)) for i, (a, h) in enumerate(zip(archs, hards, strict=True))
    ]


@dataclass(frozen=True)
class CliResult:
    """What an in-process `scrfd-search` command returned and printed (subprocess.CompletedProcess's names)."""

    returncode: int
    stdout: str
    stderr: str


def in_process(entry: Callable[[list[str]], int], argv: Sequence[str]) -> CliResult:
    """Call a command's entry point with argv in this process, capturing what it prints.

    Afterwards the process is as a fresh command would find it: a Ray the command started is shut down
    (as its exit would) and os.environ is restored (launch may set RAY_AUTH_MODE, tools LOCAL_RANK).
    """
    environ = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = entry(list(argv))
            except SystemExit as exc:  # argparse's usage errors, a tool's sys.exit("message")
                if not isinstance(exc.code, int | None):
                    print(exc.code, file=sys.stderr)
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    finally:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()
        os.environ.clear()
        os.environ.update(environ)
    return CliResult(int(code or 0), out.getvalue(), err.getvalue())


def cli(*argv: str) -> CliResult:
    """Run `scrfd-search ARGV` in this process as its entry point does (see in_process)."""
    return in_process(main, argv)


def run_tool(name: str, *argv: str) -> CliResult:
    """Run tools/<name>.py ARGV in this process (its main(argv), as its `__main__` calls it)."""
    return in_process(load_tool(name).main, argv)


def cli_command(*argv: str) -> list[str]:
    """The command line of `scrfd-search ARGV` with this interpreter, for tests about the process itself
    (signals, kills, a fresh interpreter); other tests call `cli`."""
    return [sys.executable, "-m", "scrfd_search.cli", *argv]


def load_tool(name: str) -> ModuleType:
    """tools/<name>.py as a module (call its main(argv) in-process)."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_options(data: Path, epochs: int = 1) -> list[str]:
    """--cfg-options pointing an exported config at demo data: 2 training and 1 validation/test image,
    batches of 2 (one iteration an epoch), no workers, checkpoint, validate and log every epoch."""
    options = [
        f"train_cfg.max_epochs={epochs}",
        "train_cfg.val_interval=1",
        "default_hooks.checkpoint.interval=1",
        "default_hooks.logger.interval=1",
    ]
    options += ["train_dataloader.dataset.indices=2", "val_dataloader.dataset.indices=1"]
    options += ["test_dataloader.dataset.indices=1"]
    for split in ("train", "val", "test"):
        loader = f"{split}_dataloader"
        options += [f"{loader}.dataset.data_root={data}", f"{loader}.batch_size=2", f"{loader}.num_workers=0"]
        options += [f"{loader}.persistent_workers=False"]
    return options + [f"{m}_evaluator.gt_dir={data / 'wider_face_split'}" for m in ("val", "test")]


# Ray's per-node agents outlive a killed driver by half a minute or more (measured: still running 20 s
# after the raylet and the trial workers had gone) and never write into a store, so waiting for them to
# follow their driver only idles the test: they are ended with the stragglers instead.
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def session_processes(sid: int) -> dict[int, str]:
    """Live processes of a session (a driver's or `ray start`'s: Ray's processes and trial workers stay in
    it), with their command names; zombies, which are already dead, are left out."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found[int(entry.name)] = name
    return found


def kill_session(sid: int, wait_s: float = 0.0) -> None:
    """SIGKILL every process of the session, the leader first (a node that is lost); with wait_s, again
    until none is left or wait_s has passed."""
    deadline = time.time() + wait_s
    while pids := session_processes(sid):
        for pid in sorted(pids, key=lambda p: p != sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.time() >= deadline:
            return
        time.sleep(0.1)


def end_session(proc: subprocess.Popen, sig: int = signal.SIGKILL, grace_s: float = 15.0) -> None:
    """End a process started with start_new_session=True and all of its session: send sig to it if it still
    runs, wait up to grace_s for the session's processes to follow (Ray's agents excepted: see RAY_AGENTS),
    then SIGKILL what is left."""
    if proc.poll() is None:
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    deadline = time.time() + grace_s
    while set(session_processes(proc.pid).values()) - set(RAY_AGENTS) and time.time() < deadline:
        time.sleep(0.1)
    kill_session(proc.pid, wait_s=grace_s)
    proc.wait()


def folder_snapshot(folder: Path) -> dict[str, Any]:
    """Every file under folder with its bytes; a SQLite database by its contents (its -wal and -shm files
    come and go with open connections, so they are read through the database, not compared as files)."""
    import sqlite3

    out: dict[str, Any] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if name.endswith(("-wal", "-shm")):
            continue
        if path.suffix == ".db":
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                out[name] = list(db.iterdump())
        else:
            out[name] = path.read_bytes()
    return out


def gflops_front_by_brute_force(rows: list[TrialRecord]) -> list[str]:
    """Trial ids no other row dominates in (hard AP up, total GFLOPs down), in row order: the reference
    the project's Pareto marks are checked against."""
    return [
        a.trial_id
        for a in rows
        if not any(
            b.hard >= a.hard
            and b.flops.total_gflops <= a.flops.total_gflops
            and (b.hard > a.hard or b.flops.total_gflops < a.flops.total_gflops)
            for b in rows
        )
    ]


def scipy_rank_statistic(a: np.ndarray, b: np.ndarray, which: str) -> float:
    """scipy's Kendall tau ("tau") or Spearman rho ("rho") of a against b; a constant sample scores 0."""
    from scipy import stats  # deferred: heavy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = (stats.kendalltau if which == "tau" else stats.spearmanr)(a, b).statistic
    return 0.0 if np.isnan(value) else float(value)


def scipy_rank_interval(x: Sequence[float], y: Sequence[float], which: str, seed: int) -> tuple[float, float]:
    """scipy.stats.bootstrap's percentile interval of tau or rho, paired over trials: the reference that
    fidelity's own bootstrap (fidelity_stats) is held against."""
    from scipy import stats  # deferred: heavy

    ci = stats.bootstrap(
        (np.array(x), np.array(y)),
        lambda a, b: scipy_rank_statistic(a, b, which),
        paired=True,
        vectorized=False,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return ci.low, ci.high
