"""Draw the computation-ratio figures from one or more experiment stores.

Per experiment: hard AP against each backbone part's share of backbone GFLOPs (paper fig. 5), against
the shallow share stem+C2+C3 (fig. 6), and against the backbone / neck / head shares of the detector
(fig. 9). Across experiments: the empirical distribution of hard AP (RegNet style), the computation
distribution of each budget's best models (figs 7/8), and hard AP against GFLOPs with the Pareto front;
per experiment whose trials carry a predicted latency (a space with a latency_table), hard AP
against latency with its front.
Where `fidelity` reported on an experiment: its trials' hard AP against their long runs' mean hard AP
(seed range as error bars, Kendall's tau in the title). Failed or unfinished trials are left out and
counted in each caption. Every figure is written with a
CSV of the numbers it plots. Default output folder: results/<first NAME>/plots/; a folder holding
other files is refused unless --force.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument("names", nargs="+", metavar="NAME", help="experiment names (folders under the results dir)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/<first NAME>/plots)")
    parser.add_argument("--format", default="png", help="comma-separated image formats: png, svg, pdf (default: png)")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where experiments live (default: $SCRFD_SEARCH_RESULTS or results)",
    )
    parser.add_argument("--force", action="store_true", help="write into an --out folder that holds other files")


def run(args: argparse.Namespace) -> int:
    """Draw and list the files written."""
    from scrfd_search.plots import parse_formats, plot_experiments  # matplotlib: keeps --help fast

    formats = parse_formats(args.format)
    written = plot_experiments(args.names, args.out, formats, args.results_dir, force=args.force)
    for path in written:
        print(path)
    print(f"{len(written)} files written to {written[0].parent}")
    return 0
