"""Computation-ratio figures (SCRFD paper figs 5-9) and hard-AP EDFs drawn from experiment stores.

Every figure is written in each requested format with a CSV of the numbers it plots beside it.
Everything is drawn in memory first, so a failure leaves no partial set of files behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from scrfd_search.errors import UserError
from scrfd_search.io_utils import atomic_write_bytes, atomic_write_text, check_writable
from scrfd_search.plots.data import BEST_FRACTION, StoreView, load_views, pareto_front
from scrfd_search.plots.fidelity_figure import fidelity_figure
from scrfd_search.plots.figures import (
    FIGURE_STEMS,
    backbone_share_figure,
    budget_distribution_figure,
    detector_share_figure,
    edf_figure,
    optimizer_figure,
    pareto_figure,
    shallow_share_figure,
)
from scrfd_search.plots.latency_figure import has_latency, latency_pareto_figure
from scrfd_search.plots.style import FORMATS, PALETTE, Drawn
from scrfd_search.search.store import store_path

__all__ = [
    "BEST_FRACTION",
    "FORMATS",
    "PALETTE",
    "Drawn",
    "StoreView",
    "draw_all",
    "pareto_front",
    "parse_formats",
    "plot_experiments",
]


def parse_formats(text: str) -> tuple[str, ...]:
    """'png,svg' -> ('png', 'svg'); UserError naming a format that is not supported."""
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    for fmt in formats:
        if fmt not in FORMATS:
            raise UserError(f"--format: {fmt!r} is not supported (expected a comma list of {', '.join(FORMATS)})")
    if not formats:
        raise UserError(f"--format: {text!r} names no format (expected e.g. png,svg)")
    return formats


def draw_all(views: Sequence[StoreView], store_dirs: Sequence[Path] | None = None) -> list[Drawn]:
    """Every figure for these experiments: three per experiment with trials (a fourth, hard AP by optimizer,
    where the search sampled a recipe; hard AP against predicted latency where it recorded latencies; trial
    vs long-run AP where `fidelity` reported on it), then the cross-experiment ones."""
    drawn: list[Drawn] = []
    for i, view in enumerate(views):
        if view.trials:
            drawn += [backbone_share_figure(view), shallow_share_figure(view), detector_share_figure(view)]
            if view.settings.recipe_space:
                drawn.append(optimizer_figure(view))
            if has_latency(view):
                drawn.append(latency_pareto_figure(view))
        fidelity = fidelity_figure(view, store_dirs[i]) if store_dirs is not None else None
        if fidelity is not None:
            drawn.append(fidelity)
    drawn += [edf_figure(views), budget_distribution_figure(views), pareto_figure(views)]
    return drawn


def _is_our_figure(name: str) -> bool:
    """Whether a file name is one `plot` writes (a figure or its CSV)."""
    stem, _, ext = name.rpartition(".")
    return ext in ("csv", *FORMATS) and stem.startswith(tuple(FIGURE_STEMS))


def check_plot_folder(out: Path, force: bool) -> None:
    """Refuse an --out that is a file, cannot be written, or holds files that are not figures of ours (unless force)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file, expected a folder")
    check_writable(out, "--out")
    if out.is_dir() and not force:
        strangers = sorted(p.name for p in out.iterdir() if not _is_our_figure(p.name))
        if strangers:
            raise UserError(
                f"--out: {out} holds other files ({', '.join(strangers[:3])}{', ...' if len(strangers) > 3 else ''}); "
                "choose an empty folder or use --force to write beside them"
            )


def plot_experiments(
    names: Sequence[str],
    out_dir: str | os.PathLike | None = None,
    formats: Sequence[str] = ("png",),
    results_dir: str | os.PathLike | None = None,
    force: bool = False,
) -> list[Path]:
    """Draw all figures for the named experiments into out_dir (default results/<first>/plots); the paths."""
    if not names:
        raise UserError("expected at least one experiment name")
    views = load_views(names, results_dir)
    out = Path(out_dir) if out_dir is not None else store_path(names[0], results_dir) / "plots"
    check_plot_folder(out, force)
    drawn = draw_all(views, [store_path(n, results_dir) for n in names])
    rendered = [(d, {fmt: d.image_bytes(fmt) for fmt in formats}, d.csv_text()) for d in drawn]
    written: list[Path] = []
    for d, images, csv_text in rendered:
        for fmt, data in images.items():
            atomic_write_bytes(out / f"{d.stem}.{fmt}", data)
            written.append(out / f"{d.stem}.{fmt}")
        atomic_write_text(out / f"{d.stem}.csv", csv_text)
        written.append(out / f"{d.stem}.csv")
    return written
