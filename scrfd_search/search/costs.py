"""The costs a trial carries from its suggestion on: predicted latency (the space's latency table) and GFLOPs.

Both are known before training, so the searchers put them in each trial config (`latency_ms`, and
`flops` as before); trials report them beside their APs and the leaderboard records them. With
`--objectives hard,latency` the space must name a latency table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.latency.table import load_latency_table
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
    """Predicted milliseconds of an architecture by the space's latency table (None without a table)."""
    if space is None or space.latency_table is None:
        return None
    return load_latency_table(space.latency_table).predict_ms


def with_latency(configs: list[dict[str, Any]], predict: LatencyPredictor | None) -> list[dict[str, Any]]:
    """Trial configs with each architecture's predicted latency added (unchanged without a predictor)."""
    if predict is None:
        return configs
    return [{**c, "latency_ms": predict(ArchSpec.from_dict(c["arch"], "trial config"))} for c in configs]
