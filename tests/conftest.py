"""Shared fixtures; also makes an empty collection a failure instead of pytest's silent exit 5."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_GT = REPO.parent / "shared" / "widerface_gt"


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
