"""Hard AP against predicted latency, with the non-dominated front, for a search that recorded latencies."""

from __future__ import annotations

from scrfd_search.plots.data import StoreView
from scrfd_search.plots.figures import AP_LABEL, TRIAL_COLUMNS, _counts_caption, _trial_row, figure_stem, pct
from scrfd_search.plots.style import COLUMN_WIDTH_IN, Drawn, caption, new_figure, store_color, style_context
from scrfd_search.search.objectives import HARD, LATENCY, pareto_ids


def has_latency(view: StoreView) -> bool:
    """Whether the search recorded a predicted latency for its trials (a space with a latency table)."""
    return any(t.latency_ms is not None for t in view.trials)


@figure_stem("pareto_hard_ap_latency_")
def latency_pareto_figure(view: StoreView) -> Drawn:
    """Hard AP against each trial's predicted latency; the finished trials no other beats in both, joined."""
    trials = [t for t in view.trials if t.latency_ms is not None]
    front = set(pareto_ids(trials, (HARD, LATENCY)))
    with style_context():
        fig = new_figure(COLUMN_WIDTH_IN, 2.8)
        ax = fig.subplots()
        ax.scatter(
            [t.latency_ms for t in trials],
            [pct(t.hard) for t in trials],
            s=12,
            color=store_color(0),
            alpha=0.6,
            lw=0,
            label="trial",
        )
        on_front = sorted((t.latency_ms, pct(t.hard)) for t in trials if t.trial_id in front)
        fx, fy = [p[0] for p in on_front], [p[1] for p in on_front]
        ax.step(fx, fy, where="post", color="black", lw=1.0, label="Pareto front (finished trials)")
        ax.scatter(fx, fy, s=26, facecolors="none", edgecolors="black", linewidths=0.8, zorder=3)
        h, w = trials[0].flops.input_shape
        ax.set_xlabel(f"predicted latency (ms, at {w}x{h}, the space's latency table)")
        ax.set_ylabel(AP_LABEL)
        ax.set_title(f"{view.title}\nhard AP against latency", loc="left")
        ax.legend(loc="best")
        caption(fig, _counts_caption([view]))
    columns = (*TRIAL_COLUMNS, "latency_ms", "pareto")
    rows = [
        {**_trial_row(view, rank, t), "latency_ms": t.latency_ms, "pareto": t.trial_id in front}
        for rank, t in enumerate(view.trials, 1)
        if t.latency_ms is not None
    ]
    return Drawn(f"pareto_hard_ap_latency_{view.name}", fig, columns, rows)
