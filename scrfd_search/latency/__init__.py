"""Latency on a named device: measured per block (a lookup table), predicted per architecture.

- `blocks`: the parts a detector is made of (stem, first and repeated blocks per stage, neck laterals
  and body, head tower and predictors), each a table kind with one or two channel coordinates.
- `table`: LatencyTable (what `latency-table` writes), its loader, its fingerprint check, and the
  prediction (sum of interpolated parts, then the fitted whole-model correction).
- `measure`: the machine fingerprint and the timing statistics (median, p10, p90 over timed runs).
- `modules`: the torch module of each table part and the runners (onnxruntime, torch) that time it.
- `build`: measuring a table for search spaces and fitting its correction.
- `budget`: a space's latency ceiling, as the samplers apply it.

Whole detectors and ONNX files are timed by scrfd_search.latency_targets (it needs the export and
inference code, a later layer).
"""
