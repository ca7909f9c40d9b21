"""What a search optimises: hard AP alone, or hard AP against a cost (predicted latency or GFLOPs).

`launch --objectives hard,latency` (or `hard,gflops`) makes the Optuna searcher multi-objective
(metric and mode lists through Ray Tune's OptunaSearch) and marks the non-dominated trials. The
costs are known before training (a latency table's prediction, the counted GFLOPs), so every trial
config carries them and every trial reports them beside its APs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scrfd_search.errors import UserError

DEFAULT_OBJECTIVES = "hard"


@dataclass(frozen=True)
class Objective:
    """One objective: its name on the command line, the key trials report it under, and its direction."""

    name: str
    metric: str
    mode: str  # "max" or "min", as Ray Tune's searchers take it
    label: str
    unit: str


HARD = Objective("hard", "hard", "max", "hard AP", "")
LATENCY = Objective("latency", "latency_ms", "min", "predicted latency", "ms")
GFLOPS = Objective("gflops", "gflops", "min", "GFLOPs", "GFLOPs")
OBJECTIVES = {o.name: o for o in (HARD, LATENCY, GFLOPS)}
ACCEPTED = ("hard", "hard,latency", "hard,gflops")


def parse_objectives(text: str, flag: str = "--objectives") -> tuple[Objective, ...]:
    """'hard,latency' -> (HARD, LATENCY); a UserError naming what is accepted otherwise."""
    names = tuple(part.strip() for part in str(text).split(","))
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise UserError(f"{flag}: unknown objective {unknown[0]!r} (expected one of: {', '.join(ACCEPTED)})")
    if ",".join(names) not in ACCEPTED:
        raise UserError(f"{flag}: {text!r} is not a supported combination (expected one of: {', '.join(ACCEPTED)})")
    return tuple(OBJECTIVES[n] for n in names)


def is_multi(objectives: Sequence[Objective]) -> bool:
    """Whether there is a cost beside hard AP."""
    return len(objectives) > 1


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """Whether point a is at least as good as b in every objective and better in one."""
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    ge = all(s * x >= s * y for s, x, y in zip(signs, a, b, strict=True))
    return ge and any(s * x > s * y for s, x, y in zip(signs, a, b, strict=True))


def non_dominated(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[bool]:
    """For each point, whether no other point dominates it (exact duplicates of a front point stay on it)."""
    return [not any(dominates(q, p, modes) for q in points) for p in points]


def objective_value(trial: Any, objective: Objective) -> float | None:
    """A leaderboard row's value of one objective (None when the row does not have it)."""
    if objective.metric == "gflops":
        return float(trial.flops.total_gflops)
    value = getattr(trial, objective.metric)
    return None if value is None else float(value)


def pareto_ids(trials: Sequence[Any], objectives: Sequence[Objective]) -> list[str]:
    """Ids of the finished trials (TERMINATED, every objective recorded) that no other finished trial dominates.

    Takes leaderboard rows (store.TrialRecord), in their order.
    """
    finished = []
    for trial in trials:
        values = [objective_value(trial, o) for o in objectives]
        if trial.state == "TERMINATED" and all(v is not None for v in values):
            finished.append((trial.trial_id, values))
    marks = non_dominated([v for _, v in finished], [o.mode for o in objectives])
    return [trial_id for (trial_id, _), on_front in zip(finished, marks, strict=True) if on_front]


def reported_costs(config: dict[str, Any]) -> dict[str, float]:
    """What a trial reports beside its APs: its GFLOPs and (when predicted) latency, for multi-objective Optuna."""
    costs = {"gflops": float(config["flops"]["total_gflops"])} if isinstance(config.get("flops"), dict) else {}
    if config.get("latency_ms") is not None:
        costs["latency_ms"] = float(config["latency_ms"])
    return costs
