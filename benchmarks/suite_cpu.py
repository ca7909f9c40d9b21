"""A pytest plugin: the machine's CPU time (every process's, from /proc/stat) and the wall time of each test.

A test that starts Ray, trial workers or a driver spends most of its CPU in other processes, which
pytest's durations cannot see; the machine's counters can, provided nothing else runs. At the end it
prints the suite's wall time, its CPU time in core-seconds, and what that CPU time means on the
machine's cores: the shortest the suite could take if it kept every core busy (CPU / cores), however
it is split between processes. Then the tests with the most CPU, and it writes every test's figures to
the CSV named by SCRFD_SUITE_CPU_CSV (default suite_cpu.csv).

    PYTHONPATH=benchmarks .venv/bin/pytest -p suite_cpu [pytest options]

Linux only (/proc/stat). Run it with nothing else on the machine: other work counts as the tests'.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
TOP = 25


def busy_seconds() -> float:
    """Core-seconds every process of the machine has spent on a CPU since boot (idle and iowait excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    guest = sum(fields[8:10])  # already counted in user and nice
    return (sum(fields) - idle - guest) / TICKS_PER_S


class SuiteCpu:
    """Per-test wall and machine CPU time, from setup to teardown."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []
        self.start = (time.perf_counter(), busy_seconds())

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> object:
        """Time one test, its fixtures' setup and teardown included."""
        wall, cpu = time.perf_counter(), busy_seconds()
        yield
        self.rows.append((item.nodeid, time.perf_counter() - wall, busy_seconds() - cpu))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """The totals, the lower bound on this machine's cores, the heaviest tests; the CSV."""
        wall = time.perf_counter() - self.start[0]
        cpu = busy_seconds() - self.start[1]
        cores = os.cpu_count() or 1
        write = terminalreporter.write_line
        write(f"suite: {wall:.0f} s wall, {cpu:.0f} core-s of CPU ({cpu / wall:.2f} of {cores} cores busy on average)")
        write(f"  with all {cores} cores busy from start to end it would still take at least {cpu / cores:.0f} s")
        write(f"the {TOP} tests with the most CPU (core-s, wall s, cores busy):")
        for nodeid, seconds, used in sorted(self.rows, key=lambda r: -r[2])[:TOP]:
            write(f"  {used:7.1f} {seconds:7.1f} {used / max(seconds, 1e-9):5.2f}  {nodeid}")
        out = Path(os.environ.get("SCRFD_SUITE_CPU_CSV", "suite_cpu.csv"))
        with out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["test", "wall_s", "cpu_core_s"])
            writer.writerows((n, f"{s:.3f}", f"{c:.3f}") for n, s, c in self.rows)
        write(f"every test's figures: {out}")


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin (once, in the controlling process)."""
    config.pluginmanager.register(SuiteCpu(), "suite-cpu-recorder")
