"""Latency tables and budgets: a table for a tiny space builds and predicts, is refused on another
machine, bounds what `sample` draws, and bad input is one line each with nothing written.

Everything runs at 64x64 with two timed runs: these tests check behaviour, never speed (the
predictor's accuracy is benchmarks/bench_latency_predictor.py's job).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from scrfd_search.builders import build_model
from scrfd_search.cli import main
from scrfd_search.latency.blocks import arch_parts
from scrfd_search.latency.build import build_table
from scrfd_search.latency.modules import part_module
from scrfd_search.latency.table import load_latency_table
from scrfd_search.sampling.sampler import reachable_gflops, sample_candidates
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

SHAPE = ["--input-shape", "64", "64"]
QUICK = ["--runs", "2", "--warmup", "1"]


def tiny_space(block: str = "basic") -> dict:
    """A step-2 space of small detectors at 64x64, its FLOPs budget in the middle of what it reaches."""
    data = {
        "name": f"tiny-{block}",
        "step": 2,
        "block": block,
        "budget_gflops": 1.0,
        "tolerance": 0.5,
        "input_shape": [64, 64],
        "stem_width": {"min": 8, "max": 16, "step": 8},
        "depth": {"min": 1, "max": 2},
        "width": {"min": 8, "max": 32, "step": 8},
        "neck": {"channels": {"min": 8, "max": 16, "step": 8}},
        "head": {"num_convs": {"min": 1, "max": 2}, "width": {"min": 16, "max": 32, "step": 16}, "gn_groups": 8},
    }
    low, high = reachable_gflops(SearchSpace.from_dict(data))
    return {**data, "budget_gflops": (low + high) / 2}


def write_space(path: Path, data: dict) -> Path:
    """The space as a YAML file."""
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A latency table of the tiny space, measured here with torch (two grid points per axis, two runs)."""
    folder = tmp_path_factory.mktemp("latency")
    space = write_space(folder / "tiny.yaml", tiny_space())
    out = folder / "table.json"
    argv = ["--space", str(space), "--out", str(out), "--grid-points", "2", "--fit-models", "3", "--passes", "1"]
    assert main(["latency-table", *argv, *QUICK, "--backend", "torch"]) == 0
    return out


def test_an_onnxruntime_table_times_every_kind_of_part(tmp_path, capsys):
    """Each part kind exports to ONNX and runs; the prediction of the space's one detector is positive."""
    fixed = {**tiny_space(), "stem_width": 8, "depth": 1, "width": 16, "neck": {"channels": 8}}
    fixed["head"] = {**fixed["head"], "num_convs": 1, "width": 16}  # repeats and further units: as first ones
    space = write_space(tmp_path / "fixed.yaml", fixed)
    out = tmp_path / "table.json"
    argv = ["--space", str(space), "--out", str(out), "--grid-points", "2", "--fit-models", "0", "--passes", "1"]
    assert main(["latency-table", *argv, *QUICK]) == 0
    loaded = load_latency_table(out)
    assert loaded.fingerprint["backend"] == "onnxruntime" and not loaded.correction
    kinds = {k.split("/")[0] for k in loaded.grids}
    assert kinds == {"stem", "first", "lateral", "neck_body", "head_first", "head_pred"}
    assert loaded.predict_ms(SearchSpace.from_dict(fixed).extreme_archs()[0]) > 0


def sampled(space: dict, n: int, seed: int = 0) -> list:
    """n architectures of the space within its FLOPs budget."""
    return [c.arch for c in sample_candidates(SearchSpace.from_dict(space), n, seed, confirm=False)]


def test_a_table_for_a_tiny_space_builds_and_predicts(table, tmp_path, capsys):
    loaded = load_latency_table(table)
    assert loaded.fingerprint["threads"] == 1 and loaded.fingerprint["input_shape"] == [64, 64]
    assert loaded.fingerprint["backend"] == "torch" and loaded.fingerprint["cpu"]
    assert len(loaded.fit) == 3 and set(loaded.correction) == {"basic"}
    for arch in sampled(tiny_space(), 4, seed=5):
        parts = loaded.predict_components(arch)
        assert all(ms > 0 for ms in parts.values())
        assert sum(parts.values()) == pytest.approx(loaded.predict_ms(arch))
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(sampled(tiny_space(), 1)[0].to_json())
    capsys.readouterr()
    assert main(["latency", "--table", str(table), str(arch_file), *SHAPE, "--backend", "torch", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["predicted"]["ms"] == pytest.approx(loaded.predict_ms(sampled(tiny_space(), 1)[0]))
    assert "network" not in result  # predicted, not run


def test_the_table_parts_are_the_detectors_layers():
    """The parts a prediction sums hold exactly the detector's parameters (same layers, none missed)."""
    for block in ("basic", "bottleneck", "depthwise"):
        arch = sampled(tiny_space(block), 1)[0]
        total = 0
        for parts in arch_parts(arch).values():
            for part in parts:
                module, _ = part_module(part.kind, part.coords, (64, 64), 1)
                total += part.count * sum(p.numel() for p in module.parameters())
        assert total == sum(p.numel() for p in build_model(arch, init_weights=False).parameters()), block


def test_latency_measures_network_and_end_to_end(tmp_path, capsys):
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(sampled(tiny_space(), 1)[0].to_json())
    for backend in ("onnxruntime", "torch"):
        capsys.readouterr()
        assert main(["latency", str(arch_file), *SHAPE, *QUICK, "--backend", backend, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["machine"]["backend"] == backend and out["machine"]["threads"] == 1
        result = out["results"][0]
        assert result["target"] == str(arch_file) and result["input_shape"] == [64, 64] and result["batch"] == 1
        for key in ("network", "end_to_end"):
            timing = result[key]
            assert timing["runs"] == 2 and 0 < timing["p10_ms"] <= timing["median_ms"] <= timing["p90_ms"]


def test_a_foreign_table_is_refused_naming_both_fingerprints(table, tmp_path, capsys):
    data = json.loads(table.read_text())
    data["fingerprint"] = {**data["fingerprint"], "cpu": "Some Other CPU", "device_name": "Some Other CPU"}
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(data))
    space = write_space(
        tmp_path / "s.yaml", {**tiny_space(), "max_latency_ms": 1000.0, "latency_table": "foreign.json"}
    )
    err = error_line(capsys, "sample", ["--space", str(space), "--n", "1", "--no-confirm"], "Some Other CPU")
    assert load_latency_table(table).fingerprint["cpu"] in err
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(sampled(tiny_space(), 1)[0].to_json())
    argv = ["--table", str(table), str(arch_file), *SHAPE, "--backend", "torch", "--threads", "4"]
    err = error_line(capsys, "latency", argv, "threads")
    assert "4 thread(s)" in err and "1 thread(s)" in err


def test_a_latency_ceiling_keeps_only_candidates_predicted_under_it(table, tmp_path, capsys):
    loaded = load_latency_table(table)
    predictions = sorted(loaded.predict_ms(a) for a in sampled(tiny_space(), 12, seed=1))
    ceiling = predictions[len(predictions) // 2]
    space = write_space(
        tmp_path / "s.yaml", {**tiny_space(), "max_latency_ms": ceiling, "latency_table": str(table.name)}
    )
    (tmp_path / table.name).write_bytes(table.read_bytes())  # a relative table path is read beside the YAML
    out = tmp_path / "drawn"
    capsys.readouterr()
    assert main(["sample", "--space", str(space), "--n", "4", "--no-confirm", "--out", str(out)]) == 0
    assert "predicted ms" in capsys.readouterr().out
    rows = json.loads((out / "candidates.json").read_text())["candidates"]
    assert len(rows) == 4
    for row in rows:
        assert row["predicted_latency_ms"]["total"] <= ceiling
        # the total written is the prediction held against the ceiling, to the last bit (the components'
        # sum can round one bit above it: a candidate exactly at the ceiling would then read as over it)
        assert row["predicted_latency_ms"]["total"] == loaded.predict_ms(_arch(row)) <= ceiling


def _arch(row: dict) -> ArchSpec:
    """The ArchSpec of a candidates.json row."""
    return ArchSpec.from_dict(row["arch"])


def test_a_ceiling_nobody_meets_gives_the_fastest_prediction(table, tmp_path, capsys):
    space = write_space(tmp_path / "s.yaml", {**tiny_space(), "max_latency_ms": 1e-6, "latency_table": str(table)})
    out = tmp_path / "drawn"
    err = error_line(capsys, "sample", ["--space", str(space), "--n", "1", "--no-confirm", "--out", str(out)])
    assert "max_latency_ms 1e-06: the fastest prediction seen was" in err
    assert not out.exists()


def test_bad_latency_input_is_one_line_and_writes_nothing(table, tmp_path, capsys):
    no_table = write_space(tmp_path / "a.yaml", {**tiny_space(), "max_latency_ms": 5.0})
    error_line(capsys, "sample", ["--space", str(no_table), "--n", "1"], "max_latency_ms", "latency_table")
    not_a_table = tmp_path / "not_a_table.json"
    not_a_table.write_text('{"hello": 1}')
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(sampled(tiny_space(), 1)[0].to_json())
    error_line(capsys, "latency", ["--table", str(not_a_table), str(arch_file)], "not a latency table")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    error_line(capsys, "latency", [str(notes)], "notes.txt", "ArchSpec JSON")
    error_line(capsys, "latency", ["nosuchexperiment/c0001", "--results-dir", str(tmp_path)], "nosuchexperiment")
    out = tmp_path / "t.json"
    error_line(capsys, "latency-table", ["--space", str(no_table), "--out", str(out)], "latency_table")
    assert not out.exists()
    error_line(
        capsys,
        "latency-table",
        [
            "--space",
            str(write_space(tmp_path / "b.yaml", tiny_space())),
            "--out",
            str(out),
            "--input-shape",
            "60",
            "64",
        ],
        "multiples of 32",
    )
    assert not out.exists()


def error_line(capsys, command: str, argv: list[str], *needles: str) -> str:
    """Run the command; assert exit 2 and one `scrfd-search COMMAND: error:` line holding every needle."""
    capsys.readouterr()
    code = main([command, *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    err = err.splitlines(keepends=True)[-1]  # after what the command announced it starts (sample does)
    assert err.startswith(f"scrfd-search {command}: error: ") and err.endswith("\n"), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_the_optuna_searcher_proposes_only_candidates_under_the_ceiling(table, tmp_path):
    from scrfd_search.search.searchers import BudgetedOptunaSearch  # optuna, ray: only this test needs them

    loaded = load_latency_table(table)
    predictions = sorted(loaded.predict_ms(a) for a in sampled(tiny_space(), 12, seed=2))
    ceiling = predictions[len(predictions) // 2]
    space = SearchSpace.from_dict({**tiny_space(), "max_latency_ms": ceiling, "latency_table": str(table)})
    searcher = BudgetedOptunaSearch(
        space, storage_url=f"sqlite:///{tmp_path / 's'}.db", study_name="s", seed=3, confirm=False
    )
    for i in range(3):
        assert loaded.predict_ms(ArchSpec.from_dict(searcher.suggest(f"t{i}")["arch"])) <= ceiling


def test_a_latency_ceiling_instead_of_a_flops_budget_bounds_sample_and_optuna(table, tmp_path, capsys):
    from scrfd_search.search.searchers import BudgetedOptunaSearch  # optuna, ray: only this test needs them

    loaded = load_latency_table(table)
    unbudgeted = {k: v for k, v in tiny_space().items() if k != "budget_gflops"}
    rng = np.random.default_rng(4)
    drawn = SearchSpace.from_dict({**tiny_space(), "tolerance": 0.99})  # ranges only: draws ignore the budget
    predictions = sorted(loaded.predict_ms(drawn.sample_arch(rng)) for _ in range(40))
    ceiling = predictions[len(predictions) // 2]
    latency = {"max_latency_ms": ceiling, "latency_table": str(table)}
    space_file = write_space(tmp_path / "s.yaml", {**unbudgeted, **latency})
    out = tmp_path / "drawn"
    capsys.readouterr()
    assert main(["sample", "--space", str(space_file), "--n", "4", "--no-confirm", "--out", str(out)]) == 0
    low, high = reachable_gflops(SearchSpace.load(space_file))
    assert f"within {low * 0.5:.3f}-{high * 1.5:.3f} GFLOPs" in capsys.readouterr().err  # all it reaches
    rows = json.loads((out / "candidates.json").read_text())["candidates"]
    assert len(rows) == 4 and all(loaded.predict_ms(_arch(r)) <= ceiling for r in rows)
    space = SearchSpace.load(space_file)
    searcher = BudgetedOptunaSearch(space, storage_url=f"sqlite:///{tmp_path / 's'}.db", study_name="s", seed=3)
    for i in range(3):
        assert loaded.predict_ms(ArchSpec.from_dict(searcher.suggest(f"t{i}")["arch"])) <= ceiling
    neither = write_space(tmp_path / "n.yaml", unbudgeted)
    error_line(capsys, "sample", ["--space", str(neither), "--n", "1"], "budget_gflops", "unless max_latency_ms")


def test_the_correction_models_are_timed_before_the_parts():
    """Timed after the hundreds of parts, whole detectors ran 9-15 % slower than in a fresh process (onnxruntime,
    0.5 GF): the correction must be fitted on models timed as `latency` times them."""
    events: list[str] = []
    space = SearchSpace.from_dict(tiny_space())
    fit = sampled(tiny_space(), 2, seed=5)

    def time_whole(archs):
        events.append("whole detectors")
        return [1.0 + i for i in range(len(archs))]

    def progress(message: str) -> None:
        if message.startswith("timing") and "parts" in message:
            events.append("parts")

    table = build_table(
        [space], "torch", "cpu", 1, 1, (64, 64), grid_points=2, runs=1, warmup=0, passes=1,
        fit_archs=fit, time_whole=time_whole, progress=progress,
    )  # fmt: skip
    assert events == ["whole detectors", "parts"]
    assert [row["measured_ms"] for row in table.fit] == [1.0, 2.0]
