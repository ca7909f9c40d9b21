"""`scrfd-search doctor` on this CPU machine: a clean table for demo data, one failing row for a
missing data folder and for an unreachable cluster."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from search_helpers import DEMO

from scrfd_search.cli import main


def doctor(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run doctor; (exit code, {check: (status, rest of the row)}, full output)."""
    code = main(["doctor", *argv])
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(.+?)\s{2,}(ok|warn|fail)\s{2,}(.*)$", line)
        if match:
            rows[match.group(1).strip()] = (match.group(2), match.group(3))
    return code, rows, out


def test_doctor_on_demo_data_passes_and_estimates_a_search(demo_data: Path, tmp_path: Path, capsys, search_spaces_dir):
    code, rows, out = doctor(
        capsys, "--data", str(demo_data), "--results-dir", str(tmp_path / "results"),
        "--space", str(search_spaces_dir / "demo_0.5gf_step1.yaml"), "--img-size", "64", "--batch-size", "2",
        "--probe-iters", "3", "--trials", "10", "--epochs", "4",
    )  # fmt: skip
    assert code == 0, out
    assert not [name for name, (status, _) in rows.items() if status == "fail"], out
    assert rows["GPUs"] == ("warn", rows["GPUs"][1]) and rows["GPUs"][1].startswith("none")
    assert rows["cuDNN"][1].startswith("none")
    assert rows["torchvision NMS cpu"][0] == "ok" and "kept [0, 2]" in rows["torchvision NMS cpu"][1]
    assert rows["mmcv"][0] == "ok" and "CPU kernels only" in rows["mmcv"][1]
    assert rows["data"] == ("ok", f"{demo_data}: {DEMO.num_train} training, {DEMO.num_val} validation images")
    assert rows["disk"][0] == "ok" and "GiB free under" in rows["disk"][1]
    probe = r"3 iterations of a 0\.(49|5)\d* GF candidate on cpu, 64 px, batch 2: [\d.]+ images/s"
    assert re.search(probe, rows["probe"][1])
    assert re.search(rf"10 trials x 4 epochs x {DEMO.num_train} images, \d+ at once: about \d+", rows["estimate"][1])
    assert "Ray resources" in rows and "CPUs" in rows["Ray resources"][1]


def test_missing_data_folder_is_one_failing_row(tmp_path: Path, capsys):
    code, rows, out = doctor(capsys, "--data", str(tmp_path / "nope"), "--results-dir", str(tmp_path))
    assert code == 1
    assert [name for name, (status, _) in rows.items() if status == "fail"] == ["data"]
    assert rows["data"][1].startswith(f"--data: {tmp_path / 'nope'}: no such folder")
    assert "point --data at a WIDER FACE folder" in rows["data"][1]
    assert rows["probe"][0] == "warn" and "skipped" in rows["probe"][1]
    assert out.rstrip().endswith("1 check(s) failed: data")


def test_unreachable_cluster_is_one_failing_row(tmp_path: Path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, rows, out = doctor(capsys, "--address", f"127.0.0.1:{port}", "--results-dir", str(tmp_path), "--no-probe")
    assert code == 1
    assert [name for name, (status, _) in rows.items() if status == "fail"] == ["Ray cluster"]
    assert f"--address 127.0.0.1:{port}: nothing answers there" in rows["Ray cluster"][1]
    assert "ray start --head" in rows["Ray cluster"][1]
