"""Each trial confirms its candidate's FLOPs with fvcore: both figures recorded, a disagreement above the
space's tolerance fails that trial with one line (and the search goes on)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from search_helpers import TINY_ARCH, cli, make_store

from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.report import FlopsReport
from scrfd_search.search.flops_check import FlopsMismatchError
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.store import CANDIDATES_FILE, ExperimentStore
from scrfd_search.search.trial import confirm_flops, read_events, trial_settings

SHAPE = (128, 160)


def inflated(report: FlopsReport, factor: float) -> FlopsReport:
    """The report with every component's GFLOPs scaled (a closed form gone wrong)."""
    return replace(report, gflops={k: v * factor for k, v in report.gflops.items()})


def settings(tmp_path: Path, tolerance: float):
    """Trial settings that confirm FLOPs at SHAPE to the tolerance (on a tiny demo data set)."""
    data = tmp_path / "data"
    if not data.exists():
        write_demo_dataset(data, DemoConfig(num_train=2, num_val=1, seed=0, min_width=96, max_width=128))
    search = SearchSettings("s", str(tmp_path), "space.yaml", str(data), trials=1, epochs=1)
    return trial_settings(search, input_shape=SHAPE, flops_tolerance=tolerance)


def test_a_trial_records_both_figures_and_a_disagreement_fails_it_with_one_line(tmp_path):
    closed = count_flops(TINY_ARCH, SHAPE)
    good = {"arch": TINY_ARCH.to_dict(), "flops": closed.to_dict()}
    check = confirm_flops("c0000", good, settings(tmp_path, 0.02), tmp_path / "c0000")
    assert check["closed_form_gflops"] == closed.total_gflops
    assert check["fvcore_gflops"] == pytest.approx(closed.total_gflops, rel=1e-9)  # the closed form is exact
    logged = [e for e in read_events(tmp_path / "c0000") if e["event"] == "flops_check"]
    assert logged[-1]["agrees"] is True and logged[-1]["check"] == check
    # a resumed trial trusts its earlier confirmation (no second fvcore trace)
    assert confirm_flops("c0000", good, settings(tmp_path, 0.02), tmp_path / "c0000") == check

    bad = {"arch": TINY_ARCH.to_dict(), "flops": inflated(closed, 1.05).to_dict()}
    with pytest.raises(FlopsMismatchError) as info:
        confirm_flops("c0001", bad, settings(tmp_path, 0.02), tmp_path / "c0001")
    message = str(info.value)
    assert "\n" not in message and message.startswith("trial c0001: fvcore counts")
    assert "4.76% apart, above the space's 2% tolerance" in message and "not trained" in message
    [logged] = [e for e in read_events(tmp_path / "c0001") if e["event"] == "flops_check"]
    assert logged["agrees"] is False
    assert logged["check"]["fvcore_gflops"] < logged["check"]["closed_form_gflops"]  # both figures recorded
    # within a looser tolerance the same figures pass
    assert confirm_flops("c0002", bad, settings(tmp_path, 0.1), tmp_path / "c0002")["disagreement"] < 0.1


@pytest.mark.slow
def test_a_search_trial_whose_fvcore_figure_disagrees_fails_alone_with_one_line(tmp_path):
    data = tmp_path / "demo"
    write_demo_dataset(data, DemoConfig(num_train=2, num_val=1, seed=0, min_width=96, max_width=128))
    store = make_store(tmp_path, "s", [], trials=1, img_size=64, batch_size=2, cpus_per_trial=1.0, gpus_per_trial=0)
    shape = tuple(store.read_experiment().input_shape or (480, 640))
    wrong = inflated(count_flops(TINY_ARCH, shape), 1.10)
    config = {"trial_key": "c0000", "candidate": 0, "arch": TINY_ARCH.to_dict(), "flops": wrong.to_dict()}
    (store.path / CANDIDATES_FILE).write_text(json.dumps({"candidates": [config]}))
    done = cli("resume", "s", "--results-dir", str(tmp_path), "--data", str(data))
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = ExperimentStore(store.path).read_trials()
    assert row.state == "ERROR" and row.epochs_run == 0, row
    assert "\n" not in row.error and "trial c0000: fvcore counts" in row.error and "9.09% apart" in row.error
    assert "1 failed" in done.stderr
    assert not (store.path / "trials" / "c0000" / "result.json").exists()  # nothing was trained
