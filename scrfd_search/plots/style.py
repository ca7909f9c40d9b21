"""One look for every figure: the component palette, fonts sized for a printed column, and rendering."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402  (after choosing the backend)
from matplotlib.figure import Figure  # noqa: E402

# Paul Tol's colour-blind-safe "muted" scheme; every figure uses these colours for these parts.
PALETTE: dict[str, str] = {
    "stem": "#332288",
    "c2": "#88CCEE",
    "c3": "#44AA99",
    "c4": "#117733",
    "c5": "#999933",
    "neck": "#DDCC77",
    "head": "#CC6677",
    "backbone": "#882255",
    "shallow": "#AA4499",
}
COMPONENT_LABELS: dict[str, str] = {
    "stem": "stem",
    "c2": "C2",
    "c3": "C3",
    "c4": "C4",
    "c5": "C5",
    "neck": "neck",
    "head": "head",
    "backbone": "backbone",
    "shallow": "stem+C2+C3",
}
# Experiments (EDF, Pareto plot): Okabe-Ito colours and distinct markers, in store order.
STORE_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
STORE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<")

COLUMN_WIDTH_IN = 3.5  # one column of a two-column paper
PAGE_WIDTH_IN = 7.16  # both columns
STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.5,
    "axes.axisbelow": True,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "savefig.dpi": 300,
    "svg.fonttype": "none",  # keep text as text in SVG
    "legend.frameon": False,
}
FORMATS = ("png", "svg", "pdf")


def store_color(index: int) -> str:
    """Colour of the index-th experiment."""
    return STORE_COLORS[index % len(STORE_COLORS)]


def store_marker(index: int) -> str:
    """Marker of the index-th experiment."""
    return STORE_MARKERS[index % len(STORE_MARKERS)]


@dataclass
class Drawn:
    """A finished figure, its file stem, and the numbers it plots (CSV rows)."""

    stem: str
    figure: Figure
    columns: Sequence[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def csv_text(self) -> str:
        """The plotted numbers as CSV text (floats with 6 significant digits)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.columns), lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _cell(row[k]) for k in self.columns})
        return buf.getvalue()

    def image_bytes(self, fmt: str) -> bytes:
        """The figure rendered in fmt (png, svg or pdf)."""
        buf = io.BytesIO()
        with matplotlib.rc_context(STYLE):
            self.figure.savefig(buf, format=fmt, bbox_inches="tight", pad_inches=0.03)
        return buf.getvalue()


def _cell(value: Any) -> Any:
    """Format one CSV cell: floats to 6 significant digits, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure of the given size in inches, drawn with STYLE (call inside style_context())."""
    return Figure(figsize=(width_in, height_in), layout="constrained")


def style_context() -> Any:
    """Context manager applying STYLE while axes and artists are created."""
    return matplotlib.rc_context(STYLE)


def caption(fig: Figure, text: str) -> None:
    """A small caption line at the bottom of the figure (counts of plotted and left-out trials)."""
    fig.supxlabel(text, fontsize=8, color="#444444", x=0.0, ha="left")


LEGEND_LINE_IN = 0.17  # height of one legend line at 8 pt, in inches


def axes_with_legend_below(fig: Figure, plot_height_in: float, legend_lines: int) -> tuple[Axes, Axes]:
    """A plot axes and, under it, an empty axes sized to hold a legend of legend_lines lines.

    A separate axes (rather than an 'outside' figure legend) keeps the legend inside the constrained
    layout together with the caption, so the two never overlap.
    """
    ax, legend_ax = fig.subplots(2, 1, height_ratios=[plot_height_in, LEGEND_LINE_IN * legend_lines])
    legend_ax.axis("off")
    return ax, legend_ax


def legend_in(legend_ax: Axes, handles: list, labels: list[str]) -> None:
    """Draw a legend filling legend_ax from its top-left corner."""
    legend_ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(0, 1), borderaxespad=0, ncols=1)
