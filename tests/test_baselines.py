"""configs/baselines/: SCRFD's neck and head on mmdet's ResNet-50 and Res2Net-101, current and measurable."""

from __future__ import annotations

import json

import pytest
from search_helpers import REPO, load_tool

from scrfd_search.cli import main

BASELINES = REPO / "configs" / "baselines"

pytest.importorskip("mmcv.ops", reason="mmcv with its ops is needed to build detectors")


def test_baseline_configs_are_current_and_say_where_their_weights_come_from() -> None:
    assert load_tool("make_baseline_configs").main(["--check"]) == 0, (
        "run: .venv/bin/python tools/make_baseline_configs.py"
    )
    for name in ("scrfd_resnet50", "scrfd_res2net101"):
        text = (BASELINES / f"{name}.py").read_text()
        assert "from scratch" in text and "init_cfg=None" in text  # no ImageNet weights were at hand


def test_resnet50_baseline_flops_split_by_component(capsys: pytest.CaptureFixture) -> None:
    assert main(["flops", str(BASELINES / "scrfd_resnet50.py"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    gflops = report["components"]
    # mmdet's ResNet keeps its stem as conv1 + bn1: counted as the stem, not lost
    assert gflops["stem"] > 0.5
    assert report["total_gflops"] == pytest.approx(32.82, abs=0.01)
