"""The costs a trial carries from its suggestion on: predicted latency (the space's latency table) and GFLOPs.

Both are known before training, so the searchers put them in each trial config (`latency_ms`, and
`flops` as before); trials report them beside their APs and the leaderboard records them. With
`--objectives hard,latency` the space must name a latency table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.latency.budget import space_latency
from scrfd_search.search.objectives import LATENCY, Objective
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

LatencyPredictor = Callable[[ArchSpec], float]


def check_objectives(objectives: tuple[Objective, ...], space: SearchSpace, flag_value: str) -> None:
    """Refuse latency as an objective when the space has no latency table to predict it from."""
    if LATENCY in objectives and space.latency_table is None:
        raise UserError(
            f"--objectives {flag_value}: {space.source} sets no latency_table "
            "(add `latency_table: TABLE.json`, built by `scrfd-search latency-table`)"
        )


def latency_predictor(space: SearchSpace | None) -> LatencyPredictor | None:
    """Predicted milliseconds of an architecture by the space's latency table (None without a table).

    The table is checked against this machine as for a latency budget (latency.budget.space_latency):
    a table from another device is refused, naming both fingerprints.
    """
    budget = space_latency(space) if space is not None else None
    return budget.table.predict_ms if budget is not None else None


def with_latency(configs: list[dict[str, Any]], predict: LatencyPredictor | None) -> list[dict[str, Any]]:
    """Trial configs with each architecture's predicted latency added (unchanged without a predictor)."""
    if predict is None:
        return configs
    return [{**c, "latency_ms": predict(ArchSpec.from_dict(c["arch"], "trial config"))} for c in configs]
