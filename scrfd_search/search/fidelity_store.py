"""Where `fidelity` keeps its runs and report (results/NAME/fidelity/), and the readers status/plot/export use.

Layout of results/NAME/fidelity/:
  plan.json       the request (--sample, --epochs, --seeds, --seed), the picked trials and every run's config
  runs/KEY/       one work folder per retrain (KEY = TRIAL-short-sSEED or TRIAL-long-sSEED), as a trial's
  ray/            Ray Tune's records of each driver run
  fidelity.json   the report, written atomically once every run trained to its end
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError, check_seed
from scrfd_search.search.store import TrialRecord, ranked

FIDELITY_DIR = "fidelity"
PLAN_FILE = "plan.json"
REPORT_FILE = "fidelity.json"
RUNS_DIR = "runs"
DEFAULT_SEEDS = 2
LONGER = 4  # default long-run length: this many times the trial's epochs


@dataclass(frozen=True)
class FidelityRequest:
    """What the user asked for: K trials, E epochs for the long runs (None: 4x the trial's), S seeds."""

    sample: int
    epochs: int | None = None
    seeds: int = DEFAULT_SEEDS
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse values no fidelity run can use."""
        for flag, value in (("--sample", self.sample), ("--epochs", self.epochs), ("--seeds", self.seeds)):
            if value is not None and value < 1:
                raise UserError(f"{flag}: {value} must be at least 1")
        if self.sample < 3:
            raise UserError(f"--sample: {self.sample} must be at least 3 (rank agreement needs three trials)")
        check_seed(self.seed)


def fidelity_dir(store_dir: Path) -> Path:
    """results/NAME/fidelity."""
    return Path(store_dir) / FIDELITY_DIR


def read_report(store_dir: Path) -> dict[str, Any] | None:
    """The fidelity report of a search (None when `fidelity` has not finished for it)."""
    path = fidelity_dir(store_dir) / REPORT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        raise UserError(f"{path}: not the report `scrfd-search fidelity` writes; run it again") from None
    if not isinstance(data, dict) or not isinstance(data.get("report"), dict) or "verdict" not in data["report"]:
        raise UserError(f"{path}: not the report `scrfd-search fidelity` writes; run it again")
    return data


def verdict_line(store_dir: Path) -> str | None:
    """'fidelity (K trials, E epochs, S seeds): VERDICT' when a report exists."""
    data = read_report(store_dir)
    if data is None:
        return None
    request = data.get("request", {})
    return (
        f"fidelity ({len(data.get('candidates', []))} trials retrained for {data.get('long_epochs')} epochs, "
        f"{request.get('seeds')} seeds): {data['report']['verdict']}"
    )


def measured_noise(store_dir: Path) -> float | None:
    """The smallest resolvable hard AP difference (fraction) fidelity measured for this search, if any."""
    data = read_report(store_dir)
    return None if data is None else float(data["report"]["resolvable"])


def ties_with_best(store_dir: Path, rows: list[TrialRecord]) -> dict[str, Any] | None:
    """The trials whose hard AP lies within the measured noise of the best's (None without a fidelity report):
    {'noise': fraction, 'best': trial id, 'ties': [trial ids, leaderboard order]}."""
    noise = measured_noise(store_dir)
    board = [t for t in ranked(rows) if t.state != "ERROR"]
    if noise is None or not board:
        return None
    best = board[0]
    ties = [t.trial_id for t in board[1:] if best.hard - t.hard < noise]  # type: ignore[operator]
    return {"noise": noise, "best": best.trial_id, "ties": ties}


def ties_text(ties: dict[str, Any]) -> str:
    """One line naming the trials fidelity cannot tell apart from the best."""
    points = f"{100 * ties['noise']:.2f} points"
    if not ties["ties"]:
        return f"no trial is within {points} (the seed noise `fidelity` measured) of the best, {ties['best']}"
    return (
        f"ties: {', '.join(ties['ties'])} within {points} of the best, {ties['best']} (the seed noise "
        f"`fidelity` measured): their order is not resolved"
    )
