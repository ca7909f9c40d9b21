"""Speed of the two FLOPs counters: closed-form evaluations per second and fvcore seconds per trace.

Run: .venv/bin/python benchmarks/flops_speed.py
Targets: the closed form >= 1,000 evaluations/s (the sampler's prefilter); fvcore trace time is what
confirming one sampled candidate costs (plus building the model).
"""

from __future__ import annotations

import time

from scrfd_search.flops.analytic import count_flops
from scrfd_search.space.published import PUBLISHED


def analytic_rate(seconds: float = 2.0) -> float:
    """Closed-form evaluations per second over the published architectures."""
    archs = list(PUBLISHED.values())
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for arch in archs:
            count_flops(arch)
        n += len(archs)
    return n / (time.perf_counter() - start)


def fvcore_times(repeats: int = 3) -> None:
    """Build and trace time of each published architecture (best of repeats)."""
    import torch
    from scrfd_search.detector import build_model

    from scrfd_search.flops.measure import measure_flops_timed

    for name, arch in PUBLISHED.items():
        builds, traces = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.no_grad():
                model = build_model(arch)
            builds.append(time.perf_counter() - start)
            report, seconds = measure_flops_timed(model)
            traces.append(seconds)
        print(
            f"{name:<11} {report.total_gflops:8.4f} GFLOPs  build {min(builds):.3f} s  "
            f"fvcore trace {min(traces):.3f} s"
        )


def main() -> None:
    """Print both figures."""
    rate = analytic_rate()
    print(f"closed form: {rate:,.0f} evaluations/s (target >= 1,000)")
    fvcore_times()


if __name__ == "__main__":
    main()
