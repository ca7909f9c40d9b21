"""Speed of the two FLOPs counters: closed-form evaluations per second and fvcore seconds per trace.

Run: .venv/bin/python benchmarks/flops_speed.py
Targets: the closed form >= 1,000 evaluations/s (the sampler's prefilter). The fvcore trace time is
what confirming one sampled candidate costs (building the model comes on top); it runs the real
forward pass, so it is shown with one thread (measure_flops's default) and with torch's own thread
count (on a few cores shared by other jobs, OpenMP's spinning threads make small convolutions slow).
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


def fvcore_times(threads: int | None, repeats: int = 3) -> None:
    """Build and trace time of each published architecture at 640x480 (best of repeats)."""
    import torch

    from scrfd_search.builders import build_model
    from scrfd_search.flops.measure import measure_flops_timed

    print(f"fvcore, {threads or torch.get_num_threads()} torch thread(s):")
    for name, arch in PUBLISHED.items():
        builds, traces = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.no_grad():
                model = build_model(arch, init_weights=False)
            builds.append(time.perf_counter() - start)
            report, seconds = measure_flops_timed(model, threads=threads)
            traces.append(seconds)
        print(f"  {name:<11} {report.total_gflops:8.4f} GFLOPs  build {min(builds):.3f} s  trace {min(traces):.3f} s")


def main() -> None:
    """Print the closed-form rate, then fvcore timings with the default and with one thread."""
    print(f"closed form: {analytic_rate():,.0f} evaluations/s (target >= 1,000)")
    fvcore_times(1)  # measure_flops's default
    fvcore_times(None)  # torch's own thread count


if __name__ == "__main__":
    main()
