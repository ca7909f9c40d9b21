"""What the dynamic batch axis of exported ONNX files costs, and what batching gains, in onnxruntime.

For each released architecture (configs/scrfd/*_bnkps.json and the others asked for), it exports the
detector (random weights: weights change no layer's cost) twice with the project's exporter: once
as `export --onnx` writes it (batch, height and width dynamic) and once with the batch fixed at 1 (the
released files' convention), and times, interleaved run by run in one process:
  fixed_b1      the batch-1 file on one image
  dynamic_b1    the dynamic file on one image            (ratio dynamic_b1 / fixed_b1: the axis' cost)
  dynamic_b3    the dynamic file on three images, per image (ratio to fixed_b1: what batching gains)
Median ms over --runs after --warmup, with p10-p90, at --threads intra-op threads, --input-shape H W.
On a shared machine the spread is wide: the ratios, measured in the same rounds, are what to read.

    .venv/bin/python benchmarks/bench_onnx_batch.py [--archs scrfd_500m_bnkps scrfd_2.5g_bnkps]
        [--runs 15] [--warmup 3] [--threads 1] [--input-shape 480 640]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from scrfd_search.builders import build_model
from scrfd_search.export.onnx_file import export_onnx_bytes
from scrfd_search.export.released_format import released_head_module
from scrfd_search.latency.measure import Timing, interleaved_samples
from scrfd_search.latency.modules import ort_session
from scrfd_search.space.arch import ArchSpec

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "scrfd"


def main() -> None:
    """Export, time interleaved, print one line per architecture."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["scrfd_500m_bnkps", "scrfd_2.5g_bnkps"])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input-shape", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    args = parser.parse_args()
    hw = (args.input_shape[0], args.input_shape[1])
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 3, *hw)).astype(np.float32)
    three = rng.standard_normal((3, 3, *hw)).astype(np.float32)
    print(f"onnxruntime, {args.threads} thread(s), {hw[0]}x{hw[1]}, {args.runs} runs; load {os.getloadavg()[0]:.2f}")
    header = ["fixed_b1", "dynamic_b1", "dynamic_b3/img"]
    print(f"{'arch':<20} " + " ".join(f"{h:>18}" for h in header) + f" {'axis cost':>9} {'batch gain':>10}")
    for name in args.archs:
        arch = ArchSpec.load(CONFIGS / f"{name}.json")
        module = released_head_module(build_model(arch))
        fixed = ort_session(
            export_onnx_bytes(module, arch.head.keypoints, hw, dynamic_batch=False), args.threads, "cpu"
        )
        dynamic = ort_session(export_onnx_bytes(module, arch.head.keypoints, hw), args.threads, "cpu")
        runs = [(fixed, one), (dynamic, one), (dynamic, three)]
        samples = interleaved_samples(
            [lambda s=session, x=batch: s.run(None, {"input": x}) for session, batch in runs], args.runs, args.warmup
        )
        f, d1 = Timing.of(samples[0]), Timing.of(samples[1])
        d3 = Timing.of([s / 3 for s in samples[2]])
        cells = [f"{t.median_ms:7.2f} ({t.p10_ms:.1f}-{t.p90_ms:.1f})" for t in (f, d1, d3)]
        print(
            f"{name:<20} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18} "
            f"{d1.median_ms / f.median_ms:>9.3f} {f.median_ms / d3.median_ms:>10.3f}"
        )
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
