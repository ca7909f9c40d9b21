"""Shared fixtures: the repository's paths and the demo data sets, each written once per session.

Also makes an empty collection a failure instead of pytest's exit 5, and (with SCRFD_MIN_TESTS, as
.ci/run sets it) a collection smaller than the floor, so a tree that silently lost tests cannot pass.

Demo data sets are shared read-only: a test that changes files copies one first (`demo_copy`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from search_helpers import DEMO, REPO, SMALL_DEMO, STEP1_SPACE, cli

from scrfd_search.data.demo import DemoConfig, write_demo_dataset

# 1 epoch of 64 px images, 2 per batch, one core per trial: the smallest real training a search does
TINY_TRAINING = ["--epochs", "1", "--img-size", "64", "--batch-size", "2", "--cpus-per-trial", "1"]
TINY_TRAINING += ["--gpus-per-trial", "0"]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail loudly when nothing, or fewer tests than SCRFD_MIN_TESTS, were collected."""
    if session.config.getoption("collectonly"):
        return
    if not session.items:
        pytest.exit("no tests were collected: the test tree is broken", returncode=1)
    floor = int(os.environ.get("SCRFD_MIN_TESTS", "0"))
    if len(session.items) < floor:
        pytest.exit(f"{len(session.items)} tests collected, fewer than SCRFD_MIN_TESTS={floor}", returncode=1)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def search_spaces_dir() -> Path:
    """The shipped search spaces."""
    return REPO / "search_spaces"


@pytest.fixture(scope="session")
def demo_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[DemoConfig], Path]:
    """make(config): the folder of the demo data set drawn with config, written once per session (read-only)."""
    written: dict[DemoConfig, Path] = {}

    def make(config: DemoConfig) -> Path:
        if config not in written:
            root = tmp_path_factory.mktemp("demo") / "demo"
            write_demo_dataset(root, config)
            written[config] = root
        return written[config]

    return make


@pytest.fixture(scope="session")
def demo_data(demo_factory: Callable[[DemoConfig], Path]) -> Path:
    """The shared demo data set (search_helpers.DEMO: 8 training, 4 validation images, 96-128 px); read-only."""
    return demo_factory(DEMO)


@pytest.fixture
def demo_copy(demo_data: Path, tmp_path: Path) -> Path:
    """A private copy of the shared demo data set, for a test that changes or breaks files."""
    return Path(shutil.copytree(demo_data, tmp_path / "demo", symlinks=True))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test (as OMP_NUM_THREADS=1 gives a process): tiny models gain nothing
    from more, and on a busy machine threads fighting for cores cost several times the run."""
    import torch  # deferred: most tests never import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real search, trained once per session: 3 step-1 trials, 1 epoch of 4 demo images at 64 px.

    Returns (results dir, data dir); a test that writes into the store works on a copy (`copy_store`).
    """
    root = tmp_path_factory.mktemp("tiny_search")
    data = root / "demo"
    write_demo_dataset(data, SMALL_DEMO)
    done = cli(
        "launch", "--space", str(STEP1_SPACE), "--name", "tiny", "--data", str(data),
        "--results-dir", str(root / "results"), "--trials", "3", *TINY_TRAINING, "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "results", data


@pytest.fixture(autouse=True)
def ray_auth_mode_kept() -> Iterator[None]:
    """Each test finds Ray's auth mode as the run started: in os.environ and in Ray's cached config.

    A local `ray.init()` (every in-process `launch` without --address) switches this process to token
    auth by itself, in os.environ (RAY_AUTH_MODE=token) and in the config Ray's C++ core cached when it
    was imported; restoring the variable alone leaves the cache in token mode. A later test's driver would
    then join its no-auth test cluster in token mode, and Ray cancels every trial's actor before it runs
    (measured, Ray 2.60). Ray's own tests refresh the cache the same way (authentication_test_utils).
    """
    before = os.environ.get("RAY_AUTH_MODE")
    yield
    if os.environ.get("RAY_AUTH_MODE") != before:
        os.environ.pop("RAY_AUTH_MODE", None)
        if before is not None:
            os.environ["RAY_AUTH_MODE"] = before
    refresh_ray_auth_mode()


@pytest.fixture
def ray_auth_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process, the Ray test clusters it starts and the drivers it runs in one auth mode: off.

    `ray start --head` turns token auth on by itself where ~/.ray/auth_token exists (a local ray.init()
    writes one), so the mode is set explicitly for the cluster's processes and the drivers they serve.
    """
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    refresh_ray_auth_mode()


def refresh_ray_auth_mode() -> None:
    """Make Ray's cached config read RAY_AUTH_MODE again (when Ray is imported and not running)."""
    ray = sys.modules.get("ray")
    if ray is not None and "ray._raylet" in sys.modules and not ray.is_initialized():
        from ray._private.authentication_test_utils import reset_auth_token_state

        reset_auth_token_state()
