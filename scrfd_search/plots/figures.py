"""The computation-ratio figures of the SCRFD paper (figs 5-9) plus an EDF of hard AP, drawn from stores."""

from __future__ import annotations

import functools
import statistics
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from scrfd_search.flops.report import BACKBONE_COMPONENTS, COMPONENTS
from scrfd_search.plots.data import (
    BEST_FRACTION,
    DETECTOR_PARTS,
    StoreView,
    backbone_shares,
    budget_text,
    detector_shares,
    edf,
    mean_shares,
    pareto_front,
    published_comparable,
    shallow_share,
)
from scrfd_search.plots.style import (
    COLUMN_WIDTH_IN,
    COMPONENT_LABELS,
    LEGEND_LINE_IN,
    PAGE_WIDTH_IN,
    PALETTE,
    Drawn,
    axes_with_legend_below,
    caption,
    legend_in,
    new_figure,
    store_color,
    store_marker,
    style_context,
)
from scrfd_search.recipe import OPTIMIZER_NAMES
from scrfd_search.search.store import TrialRecord, ranked
from scrfd_search.space.published import PUBLISHED_GFLOPS, PUBLISHED_HARD_AP

AP_LABEL = "hard AP (%)"
OPTIMIZER_ORDER = {name: i for i, name in enumerate(OPTIMIZER_NAMES)}
SEGMENT_LABEL_MIN = 7.0  # % of a bar: smaller segments are not labelled inside
# Published models are drawn when their GFLOPs lie within this factor of the searched range, so that
# a 0.5 GF search is not squeezed into a corner by the 34 GF model.
PUBLISHED_RANGE_FACTOR = 3.0
CAPTION_CHARS = 64  # characters per caption line at 8 pt across one column
# Every file `plot` writes starts with one of these stems; a second `plot` into the same folder accepts
# exactly those files (plots.check_plot_folder), so the stems come from the figure functions themselves.
FIGURE_STEMS: list[str] = []


def figure_stem(stem: str) -> Callable[[Callable[..., Drawn]], Callable[..., Drawn]]:
    """Declare the file stem (per-experiment figures: its prefix) of what a figure function draws."""

    def declare(draw: Callable[..., Drawn]) -> Callable[..., Drawn]:
        FIGURE_STEMS.append(stem)

        @functools.wraps(draw)
        def drawn_with_stem(*args: Any, **kwargs: Any) -> Drawn:
            drawn = draw(*args, **kwargs)
            if not drawn.stem.startswith(stem):
                raise AssertionError(f"{draw.__name__} drew {drawn.stem!r}, declared {stem!r}")
            return drawn

        return drawn_with_stem

    return declare


PUBLISHED_LABELS = {
    "scrfd_500m": "SCRFD-0.5GF",
    "scrfd_2.5g": "SCRFD-2.5GF",
    "scrfd_10g": "SCRFD-10GF",
    "scrfd_34g": "SCRFD-34GF",
}


def pct(x: float) -> float:
    """Fraction to percent."""
    return 100.0 * x


def _counts_caption(views: Sequence[StoreView]) -> str:
    """'n = 31 trials plotted; 2 failed or unfinished trials left out'."""
    plotted = sum(len(v.trials) for v in views)
    left_out = sum(v.failed for v in views)
    text = f"n = {plotted} trial{'s' * (plotted != 1)} plotted"
    if left_out:
        text += f"; {left_out} failed or unfinished trial{'s' * (left_out != 1)} left out"
    return text


def _best_legend_handles(color: str) -> list[Line2D]:
    """Legend entries telling apart ordinary trials and the highlighted best models."""
    best_pct = round(pct(BEST_FRACTION))
    return [
        Line2D([], [], ls="", marker="o", ms=3.5, color=color, alpha=0.45, mec="none", label="trial"),
        Line2D([], [], ls="", marker="o", ms=5, color=color, mec="black", mew=0.6, label=f"best {best_pct}%"),
    ]


def _scatter_highlighted(ax: Axes, view: StoreView, x_of: Callable[[TrialRecord], float], color: str) -> None:
    """Scatter hard AP against x for all trials, the best models larger and outlined, drawn on top."""
    best_ids = {t.trial_id for t in view.best}
    rest = [t for t in view.trials if t.trial_id not in best_ids]
    ax.scatter([x_of(t) for t in rest], [pct(t.hard) for t in rest], s=9, color=color, alpha=0.45, lw=0)
    ax.scatter(
        [x_of(t) for t in view.best],
        [pct(t.hard) for t in view.best],
        s=22,
        color=color,
        edgecolors="black",
        linewidths=0.6,
        zorder=3,
    )


def _trial_row(view: StoreView, rank: int, trial: TrialRecord) -> dict[str, Any]:
    """Columns every per-trial CSV starts with."""
    return {
        "store": view.name,
        "rank": rank,
        "trial_id": trial.trial_id,
        "hard_ap_pct": pct(trial.hard),
        "backbone_gflops": trial.flops.backbone_gflops,
        "total_gflops": trial.flops.total_gflops,
        "best": rank <= len(view.best),
    }


TRIAL_COLUMNS = ("store", "rank", "trial_id", "hard_ap_pct", "backbone_gflops", "total_gflops", "best")


@figure_stem("backbone_shares_")
def backbone_share_figure(view: StoreView) -> Drawn:
    """Paper fig. 5: hard AP against each backbone part's share of backbone GFLOPs, one panel per part."""
    columns = (*TRIAL_COLUMNS, *(f"{c}_pct_of_backbone" for c in BACKBONE_COMPONENTS))
    with style_context():
        fig = new_figure(PAGE_WIDTH_IN, 2.2)
        axes = fig.subplots(1, len(BACKBONE_COMPONENTS), sharey=True)
        for ax, comp in zip(axes, BACKBONE_COMPONENTS, strict=True):
            _scatter_highlighted(ax, view, lambda t, c=comp: pct(backbone_shares(t)[c]), PALETTE[comp])
            ax.set_xlabel(f"{COMPONENT_LABELS[comp]} share (%)")
        axes[0].set_ylabel(AP_LABEL)
        fig.legend(handles=_best_legend_handles("#777777"), loc="outside lower right", ncols=2)
        fig.suptitle(f"{view.title}: hard AP vs share of backbone GFLOPs", x=0.0, ha="left")
        caption(fig, _counts_caption([view]))
    rows = []
    for rank, t in enumerate(view.trials, 1):
        shares = backbone_shares(t)
        rows.append(
            {**_trial_row(view, rank, t), **{f"{c}_pct_of_backbone": pct(shares[c]) for c in BACKBONE_COMPONENTS}}
        )
    return Drawn(f"backbone_shares_{view.name}", fig, columns, rows)


@figure_stem("shallow_share_")
def shallow_share_figure(view: StoreView) -> Drawn:
    """Paper fig. 6: hard AP against the shallow (stem + C2 + C3) share of backbone GFLOPs."""
    best_mean = pct(sum(shallow_share(t) for t in view.best) / len(view.best))
    with style_context():
        fig = new_figure(COLUMN_WIDTH_IN, 2.7)
        ax = fig.subplots()
        _scatter_highlighted(ax, view, lambda t: pct(shallow_share(t)), PALETTE["shallow"])
        ax.axvline(best_mean, color="#444444", ls="--", lw=0.8)
        left, right = ax.get_xlim()
        on_right = (best_mean - left) > 0.6 * (right - left)  # put the label on the side with room
        ax.annotate(
            f"best {round(pct(BEST_FRACTION))}% mean {best_mean:.1f}%",
            xy=(best_mean, 0.0),
            xycoords=("data", "axes fraction"),
            xytext=(-3 if on_right else 3, 3),
            textcoords="offset points",
            ha="right" if on_right else "left",
            va="bottom",
            fontsize=8,
            color="#444444",
        )
        ax.set_xlabel("stem + C2 + C3 share of backbone (%)")
        ax.set_ylabel(AP_LABEL)
        ax.legend(handles=_best_legend_handles(PALETTE["shallow"]), loc="best")
        ax.set_title(f"{view.title}\nshallow-stage computation", loc="left")
        caption(fig, _counts_caption([view]))
    columns = (*TRIAL_COLUMNS, "shallow_pct_of_backbone")
    rows = [
        {**_trial_row(view, r, t), "shallow_pct_of_backbone": pct(shallow_share(t))}
        for r, t in enumerate(view.trials, 1)
    ]
    return Drawn(f"shallow_share_{view.name}", fig, columns, rows)


@figure_stem("detector_shares_")
def detector_share_figure(view: StoreView) -> Drawn:
    """Paper fig. 9: hard AP against backbone, neck and head shares of the whole detector's GFLOPs."""
    with style_context():
        fig = new_figure(PAGE_WIDTH_IN, 2.3)
        axes = fig.subplots(1, len(DETECTOR_PARTS), sharey=True)
        for ax, part in zip(axes, DETECTOR_PARTS, strict=True):
            _scatter_highlighted(ax, view, lambda t, p=part: pct(detector_shares(t)[p]), PALETTE[part])
            ax.set_xlabel(f"{COMPONENT_LABELS[part]} share (%)")
        axes[0].set_ylabel(AP_LABEL)
        fig.legend(handles=_best_legend_handles("#777777"), loc="outside lower right", ncols=2)
        fig.suptitle(f"{view.title}: hard AP vs share of detector GFLOPs", x=0.0, ha="left")
        caption(fig, _counts_caption([view]))
    columns = (*TRIAL_COLUMNS, *(f"{p}_pct_of_detector" for p in DETECTOR_PARTS))
    rows = []
    for rank, t in enumerate(view.trials, 1):
        shares = detector_shares(t)
        rows.append({**_trial_row(view, rank, t), **{f"{p}_pct_of_detector": pct(shares[p]) for p in DETECTOR_PARTS}})
    return Drawn(f"detector_shares_{view.name}", fig, columns, rows)


@figure_stem("edf_hard_ap")
def edf_figure(views: Sequence[StoreView]) -> Drawn:
    """RegNet-style empirical distribution of hard AP, one curve per experiment."""
    columns = ("store", "budget_gflops", "step", "searcher", "trial_id", "hard_ap_pct", "edf")
    rows: list[dict[str, Any]] = []
    shown = [v for v in views if v.trials]
    with style_context():
        fig = new_figure(COLUMN_WIDTH_IN, 2.6 + 2 * LEGEND_LINE_IN * len(shown))
        ax, legend_ax = axes_with_legend_below(fig, 2.2, 2 * len(shown))
        for i, view in enumerate(views):
            if not view.trials:
                continue
            aps = [pct(t.hard) for t in view.trials]
            xs, fs = edf(aps)
            label = f"{view.label}\nn={len(aps)}, min {min(aps):.1f}, mean {sum(aps) / len(aps):.1f}"
            ax.step([xs[0], *xs], [0.0, *fs], where="post", color=store_color(i), label=label)
            by_ap = sorted(view.trials, key=lambda t: t.hard)
            for t, f in zip(by_ap, fs, strict=True):
                row = {"store": view.name, "budget_gflops": view.budget_gflops, "step": view.step}
                row["searcher"] = view.searcher
                rows.append({**row, "trial_id": t.trial_id, "hard_ap_pct": pct(t.hard), "edf": f})
        ax.set_xlabel(AP_LABEL)
        ax.set_ylabel("cumulative fraction of models")
        ax.set_ylim(0, 1.02)
        ax.set_title("Empirical distribution of hard AP", loc="left")
        legend_in(legend_ax, *ax.get_legend_handles_labels())
        caption(fig, _counts_caption(views))
    return Drawn("edf_hard_ap", fig, columns, rows)


def _budget_groups(views: Sequence[StoreView]) -> list[tuple[float | None, list[StoreView]]]:
    """Experiments grouped by budget, smallest budget first (unknown budgets last)."""
    groups: dict[float | None, list[StoreView]] = {}
    for view in views:
        if view.trials:
            groups.setdefault(view.budget_gflops, []).append(view)
    return sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0.0))


def _group_best(group: list[StoreView]) -> tuple[list[TrialRecord], int]:
    """The best models of all experiments of one budget pooled, and how many trials were pooled."""
    pooled = ranked([t for v in group for t in v.trials])
    best = StoreView("pooled", {}, tuple(pooled), 0).best
    return list(best), len(pooled)


def _stacked_bars(ax: Axes, labels: list[str], shares: list[dict[str, float]], keys: Sequence[str]) -> None:
    """Horizontal stacked bars of percentage shares, labelled inside where a segment is wide enough."""
    for y, share in enumerate(shares):
        left = 0.0
        for key in keys:
            width = pct(share[key])
            ax.barh(y, width, left=left, color=PALETTE[key], edgecolor="white", linewidth=0.5, height=0.7)
            if width >= SEGMENT_LABEL_MIN:
                dark = key in ("stem", "c4", "backbone")
                ax.text(
                    left + width / 2,
                    y,
                    f"{width:.0f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
            left += width
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlim(0, 100)
    ax.grid(axis="y", visible=False)


@figure_stem("budget_distribution")
def budget_distribution_figure(views: Sequence[StoreView]) -> Drawn:
    """Paper figs 7/8: mean computation shares of each budget's best models, as stacked bars."""
    groups = _budget_groups(views)
    labels, backbone_rows, detector_rows, rows = [], [], [], []
    for budget, group in groups:
        best, pooled = _group_best(group)
        steps = "+".join(sorted({str(v.step or "?") for v in group}))
        labels.append(f"{budget_text(budget)}, step {steps}\nbest {len(best)} of {pooled}")
        backbone_rows.append(mean_shares(best, "backbone"))
        detector_rows.append(mean_shares(best, "detector"))
        common = {"budget_gflops": budget, "steps": steps, "stores": " ".join(v.name for v in group)}
        common |= {"n_best": len(best), "n_trials": pooled}
        for panel, shares in (("backbone", backbone_rows[-1]), ("detector", detector_rows[-1])):
            rows += [{**common, "panel": panel, "component": k, "mean_pct": pct(s)} for k, s in shares.items()]
    with style_context():
        fig = new_figure(PAGE_WIDTH_IN, 1.3 + 0.5 * len(groups))
        ax_bb, ax_det = fig.subplots(1, 2, sharey=True)
        _stacked_bars(ax_bb, labels, backbone_rows, BACKBONE_COMPONENTS)
        _stacked_bars(ax_det, labels, detector_rows, COMPONENTS)
        ax_bb.invert_yaxis()  # smallest budget on top (the axes share y, so once)
        ax_bb.set_xlabel("share of backbone GFLOPs (%)")
        ax_det.set_xlabel("share of detector GFLOPs (%)")
        ax_bb.set_title("backbone (fig. 7)", loc="left")
        ax_det.set_title("whole detector (fig. 8)", loc="left")
        handles = [
            Line2D([], [], ls="", marker="s", ms=6, color=PALETTE[c], label=COMPONENT_LABELS[c]) for c in COMPONENTS
        ]
        fig.legend(handles=handles, loc="outside right upper", ncols=1)
        fig.suptitle(
            f"Computation distribution of the best {round(pct(BEST_FRACTION))}% models per budget", x=0.0, ha="left"
        )
        caption(fig, _counts_caption(views) + "; bars: mean over each budget's best models")
    columns = ("budget_gflops", "steps", "stores", "n_best", "n_trials", "panel", "component", "mean_pct")
    return Drawn("budget_distribution", fig, columns, rows)


Published = list[tuple[str, float, float]]  # the paper's models shown: (name, GFLOPs, hard AP %)


def _comparable_published(views: Sequence[StoreView], gflops: list[float]) -> tuple[Published, str]:
    """The paper's models (name, GFLOPs, hard AP) within range of the searched GFLOPs, and a caption note.

    The paper's APs are WIDER FACE val's: beside a search validated on other data they would mislead, so
    they are left out then and the note says why.
    """
    low, high = min(gflops) / PUBLISHED_RANGE_FACTOR, max(gflops) * PUBLISHED_RANGE_FACTOR
    published = [(name, g, PUBLISHED_HARD_AP[name]) for name, g in PUBLISHED_GFLOPS.items() if low <= g <= high]
    not_comparable = published_comparable(views) if published else None
    if not not_comparable:
        return published, ""
    return [], "\n" + textwrap.fill(f"published SCRFD APs left out: {not_comparable}", CAPTION_CHARS)


def _draw_published(ax: Axes, published: Published) -> None:
    """The paper's models as labelled stars."""
    ax.scatter(
        [g for _, g, _ in published],
        [ap for _, _, ap in published],
        s=60,
        marker="*",
        color="#DDCC77",  # sand: apart from the store colours
        edgecolors="black",
        linewidths=0.5,
        zorder=4,
        label="published SCRFD (paper, WIDER val)",
    )
    for name, g, ap in published:
        ax.annotate(PUBLISHED_LABELS[name], (g, ap), xytext=(4, -8), textcoords="offset points", fontsize=6)


def _gflops_axis(ax: Axes, gflops: list[float], input_shape: tuple[int, int]) -> None:
    """A GFLOPs x axis, logarithmic when the points span more than 4x."""
    if max(gflops) / min(gflops) > 4:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    h, w = input_shape
    ax.set_xlabel(f"detector GFLOPs (at {w}x{h})")


def _pareto_rows(
    points: list[tuple[StoreView, TrialRecord]], front: list[bool], published: Published
) -> list[dict[str, Any]]:
    """The Pareto figure's CSV rows: every trial (front marked), then the paper's models shown."""
    rows = [
        {
            "source": "search",
            "store": v.name,
            "budget_gflops": v.budget_gflops,
            "step": v.step,
            "trial_id": t.trial_id,
            "total_gflops": t.flops.total_gflops,
            "hard_ap_pct": pct(t.hard),
            "pareto": f,
        }
        for (v, t), f in zip(points, front, strict=True)
    ]
    return rows + [
        {"source": "paper", "store": "", "budget_gflops": None, "step": None, "trial_id": name, "total_gflops": g}
        | {"hard_ap_pct": ap, "pareto": None}
        for name, g, ap in published
    ]


@figure_stem("pareto_hard_ap_gflops")
def pareto_figure(views: Sequence[StoreView]) -> Drawn:
    """Hard AP against total GFLOPs over all experiments, with the Pareto front (max AP at <= GFLOPs)."""
    points = [(view, t) for view in views for t in view.trials]
    front = pareto_front([(t.flops.total_gflops, pct(t.hard)) for _, t in points])
    gflops = [t.flops.total_gflops for _, t in points]
    published, note = _comparable_published(views, gflops)
    with style_context():
        legend_rows = sum(bool(v.trials) for v in views) + 1 + bool(published)
        fig = new_figure(COLUMN_WIDTH_IN, 2.6 + LEGEND_LINE_IN * (legend_rows + note.count("\n")))
        ax, legend_ax = axes_with_legend_below(fig, 2.2, legend_rows)
        for i, view in enumerate(views):
            if view.trials:
                xs, ys = [t.flops.total_gflops for t in view.trials], [pct(t.hard) for t in view.trials]
                ax.scatter(
                    xs, ys, s=12, color=store_color(i), marker=store_marker(i), alpha=0.6, lw=0, label=view.label
                )
        front_points = sorted((t.flops.total_gflops, pct(t.hard)) for (_, t), f in zip(points, front, strict=True) if f)
        fx, fy = [p[0] for p in front_points], [p[1] for p in front_points]
        ax.step(fx, fy, where="post", color="black", lw=1.0, label="Pareto front")
        ax.scatter(fx, fy, s=26, facecolors="none", edgecolors="black", linewidths=0.8, zorder=3)
        if published:
            _draw_published(ax, published)
        for budget in sorted({v.budget_gflops for v in views if v.trials and v.budget_gflops}):
            ax.axvline(budget, color="#999999", ls=":", lw=0.8, zorder=0)
        _gflops_axis(ax, gflops + [g for _, g, _ in published], points[0][1].flops.input_shape)
        ax.set_ylabel(AP_LABEL)
        ax.set_title("Hard AP against computation (dotted: budgets)", loc="left")
        legend_in(legend_ax, *ax.get_legend_handles_labels())
        caption(fig, _counts_caption(views) + note)
    columns = ("source", "store", "budget_gflops", "step", "trial_id", "total_gflops", "hard_ap_pct", "pareto")
    return Drawn("pareto_hard_ap_gflops", fig, columns, _pareto_rows(points, front, published))


def recipe_of(view: StoreView, trial: TrialRecord) -> dict[str, Any]:
    """The recipe a trial trained with: its own (searched), else the experiment's (fixed)."""
    return trial.recipe or view.settings.recipe or {}


@figure_stem("optimizers_")
def optimizer_figure(view: StoreView) -> Drawn:
    """Hard AP by optimizer (one column of trials per optimizer, its median marked) and against lr.

    Drawn for searches with a `recipe:` section: the left panel answers "which optimizer", the right
    one "at which learning rate" (log scale), each trial coloured by its optimizer in both.
    """
    recipes = [recipe_of(view, t) for t in view.trials]
    names = sorted({r.get("optimizer", "?") for r in recipes}, key=lambda n: (OPTIMIZER_ORDER.get(n, 99), n))
    with style_context():
        fig = new_figure(PAGE_WIDTH_IN, 2.6)
        ax_opt, ax_lr = fig.subplots(1, 2, sharey=True, width_ratios=[1, 1.4])
        for i, name in enumerate(names):
            aps = [pct(t.hard) for t, r in zip(view.trials, recipes, strict=True) if r.get("optimizer") == name]
            lrs = [r["lr"] for r in recipes if r.get("optimizer") == name]
            # spread the points of one column evenly (deterministic, no random jitter)
            offsets = [0.0] if len(aps) == 1 else [-0.2 + 0.4 * k / (len(aps) - 1) for k in range(len(aps))]
            ax_opt.scatter([i + o for o in offsets], aps, s=14, color=store_color(i), alpha=0.75, lw=0)
            median = statistics.median(aps)
            ax_opt.plot([i - 0.3, i + 0.3], [median, median], color="black", lw=1.0)
            ax_lr.scatter(lrs, aps, s=14, color=store_color(i), marker=store_marker(i), alpha=0.75, lw=0, label=name)
        ax_opt.set_xticks(range(len(names)), names)
        ax_opt.set_xlim(-0.6, len(names) - 0.4)
        ax_opt.set_ylabel(AP_LABEL)
        ax_opt.set_title("by optimizer (bar: median)", loc="left")
        ax_lr.set_xscale("log")
        ax_lr.set_xlabel("learning rate (for the base batch)")
        ax_lr.set_title("against learning rate", loc="left")
        ax_lr.legend(loc="best")
        fig.suptitle(f"{view.title}: hard AP by optimizer", x=0.0, ha="left")
        caption(fig, _counts_caption([view]))
    columns = (*TRIAL_COLUMNS, "optimizer", "lr", "weight_decay", "momentum")
    rows = [
        {**_trial_row(view, rank, t), **{k: r.get(k) for k in ("optimizer", "lr", "weight_decay", "momentum")}}
        for rank, (t, r) in enumerate(zip(view.trials, recipes, strict=True), 1)
    ]
    return Drawn(f"optimizers_{view.name}", fig, columns, rows)
