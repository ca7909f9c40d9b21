"""Shared fixtures; also makes an empty collection a failure instead of pytest's silent exit 5."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_GT = REPO.parent / "shared" / "widerface_gt"
# 1 epoch of 64 px images, 2 per batch, one core per trial: the smallest real training a search does
TINY_TRAINING = ["--epochs", "1", "--img-size", "64", "--batch-size", "2", "--cpus-per-trial", "1"]
TINY_TRAINING += ["--gpus-per-trial", "0"]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail loudly when nothing was collected (a broken test tree must not pass)."""
    if not session.items and not session.config.getoption("collectonly"):
        pytest.exit("no tests were collected: the test tree is broken", returncode=1)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def search_spaces_dir() -> Path:
    """The shipped search spaces."""
    return REPO / "search_spaces"


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real search, trained once per session: 3 step-1 trials, 1 epoch of 4 demo images at 64 px.

    Returns (results dir, data dir); a test that writes into the store works on a copy (`copy_store`).
    """
    import subprocess
    import sys

    from scrfd_search.data.demo import DemoConfig, write_demo_dataset

    root = tmp_path_factory.mktemp("tiny_search")
    data = root / "demo"
    write_demo_dataset(data, DemoConfig(num_train=4, num_val=2, seed=1, min_width=64, max_width=96))
    argv = [
        sys.executable, "-m", "scrfd_search.cli", "launch", "--space",
        str(REPO / "search_spaces" / "scrfd_0.5gf_step1.yaml"), "--name", "tiny", "--data", str(data),
        "--results-dir", str(root / "results"), "--trials", "3", *TINY_TRAINING, "--quiet",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "results", data
