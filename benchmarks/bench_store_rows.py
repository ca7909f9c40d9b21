"""One trial event's write and `status` on a store of N rows, without Ray (issue 19).

Writes N leaderboard rows (real step-1 architectures, closed-form FLOPs, a placement each, about 1 KB
as JSON) with the store's own code, then times five upserts of one row (as the driver's callback
does on every event) and `scrfd-search status` in-process. It uses only what every version of the
store has, so it measures an older checkout too (put that checkout first on PYTHONPATH).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_store_rows.py --rows 10000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from search_helpers import make_store, step1_rows  # noqa: E402  (the tests' store builder)

from scrfd_search.cli import main as cli_main  # noqa: E402
from scrfd_search.search.store import ExperimentStore  # noqa: E402

PLACEMENT = {"node_ip": "10.0.0.1", "node_id": "f" * 48, "gpu_ids": ["0"], "device": "cuda", "workers": 3}


def main() -> int:
    """Build the store, time the writes and status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    args = parser.parse_args()
    _, base = step1_rows(50)
    rows = [
        base[i % len(base)].updated(
            trial_id=f"c{i:05d}", extra={"work_dir": f"trials/c{i:05d}", "placement": PLACEMENT}
        )
        for i, key in ((i, f"c{i:05d}") for i in range(args.rows))
    ]
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = make_store(Path(tmp), "s", rows)
        writer = ExperimentStore(store.path)
        times = []
        for k in range(5):
            start = time.perf_counter()
            writer.upsert(rows[args.rows // 2].updated(epochs_run=k))
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["status", "s", "--results-dir", tmp])
        status_s = time.perf_counter() - start
        print(
            f"{args.rows} rows: one upsert median {1e3 * statistics.median(times):.2f} ms "
            f"(each: {', '.join(f'{1e3 * t:.1f}' for t in times)} ms); status {status_s:.2f} s (exit {code})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
