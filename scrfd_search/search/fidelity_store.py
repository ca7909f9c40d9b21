"""Where `fidelity` keeps its runs and report (results/NAME/fidelity/), and the readers status/plot/export use.

Layout of results/NAME/fidelity/:
  plan.json       the request (--sample, --epochs, --seeds, --seed), the picked trials and every run's config
  runs/KEY/       one work folder per retrain (KEY = TRIAL-short-sSEED or TRIAL-long-sSEED), as a trial's
  ray/            Ray Tune's records of each driver run
  fidelity.json   the report, written atomically once every run trained to its end
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.search.store import TrialRecord, ranked

FIDELITY_DIR = "fidelity"
PLAN_FILE = "plan.json"
REPORT_FILE = "fidelity.json"
RUNS_DIR = "runs"


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
