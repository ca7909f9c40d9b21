"""`fidelity`'s figure: each retrained trial's hard AP against its long runs' hard AP, seed spread as error bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scrfd_search.plots.data import StoreView
from scrfd_search.plots.figures import figure_stem
from scrfd_search.plots.style import COLUMN_WIDTH_IN, Drawn, caption, new_figure, store_color, style_context
from scrfd_search.search.fidelity_store import read_report

COLUMNS = (
    "trial_id",
    "trial_hard_pct",
    "short_hard_pct",
    "long_mean_hard_pct",
    "long_min_hard_pct",
    "long_max_hard_pct",
    "long_epochs",
)


def _pct_list(values: list[float]) -> str:
    """APs as percentages joined by ';' (one CSV cell)."""
    return ";".join(f"{100 * v:.4g}" for v in values)


def fidelity_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per retrained trial, APs in percent."""
    return [
        {
            "trial_id": c["trial_id"],
            "trial_hard_pct": 100 * c["trial_hard"],
            "short_hard_pct": _pct_list(c["short_hard"]),
            "long_mean_hard_pct": 100 * c["long_mean"],
            "long_min_hard_pct": 100 * min(c["long_hard"]),
            "long_max_hard_pct": 100 * max(c["long_hard"]),
            "long_epochs": data["long_epochs"],
        }
        for c in data["candidates"]
    ]


def fidelity_figure(view: StoreView, store_dir: Path) -> Drawn | None:
    """The fidelity figure of a search (None when `fidelity` has not reported on it)."""
    data = read_report(store_dir)
    return None if data is None else trial_vs_long_run_figure(view, data)


@figure_stem("fidelity_")
def trial_vs_long_run_figure(view: StoreView, data: dict[str, Any]) -> Drawn:
    """Trial hard AP (x) against the mean long-run hard AP (y), bars from the lowest to the highest seed;
    tau in the title."""
    rows = fidelity_rows(data)
    ranking = data["report"]["ranking"]
    with style_context():
        fig = new_figure(COLUMN_WIDTH_IN, 2.8)
        ax = fig.subplots()
        x = [r["trial_hard_pct"] for r in rows]
        y = [r["long_mean_hard_pct"] for r in rows]
        low = [r["long_mean_hard_pct"] - r["long_min_hard_pct"] for r in rows]
        high = [r["long_max_hard_pct"] - r["long_mean_hard_pct"] for r in rows]
        ax.errorbar(x, y, yerr=[low, high], fmt="o", color=store_color(0), capsize=3, markersize=4)
        for r in rows:
            ax.annotate(r["trial_id"], (r["trial_hard_pct"], r["long_mean_hard_pct"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        ax.set_xlabel(f"trial hard AP (%), {data['trial_epochs']} epochs")
        ax.set_ylabel(f"hard AP (%), {data['long_epochs']} epochs")
        ax.set_title(
            f"{view.name}: Kendall tau {ranking['tau']:.2f} [{ranking['tau_low']:.2f}, {ranking['tau_high']:.2f}]",
            loc="left",
        )
        caption(
            fig,
            f"{len(rows)} trials, {len(data['seeds'])} seeds each: mean and range over seeds; "
            f"bootstrap 95 % interval in brackets",
        )
    return Drawn(f"fidelity_{view.name}", fig, COLUMNS, rows)
