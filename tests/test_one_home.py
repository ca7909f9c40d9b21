"""Facts with one home: a `train` trains as its trial did, an ArchSpec is taken in every form a user holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from search_helpers import TINY_ARCH, make_store, step1_rows

from scrfd_search.cli import build_parser, main
from scrfd_search.commands.train import training_plan
from scrfd_search.config_builder import build_config
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.store import load_arch_ref
from scrfd_search.search.trial import trial_settings
from scrfd_search.space.arch import ArchSpec


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few demo images in the WIDER FACE layout."""
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root, DemoConfig(num_train=5, num_val=2, seed=3, min_width=96, max_width=128))
    return root


def test_train_with_a_trials_flags_trains_as_the_trial_did(demo_root: Path, tmp_path: Path) -> None:
    search = SearchSettings(
        name="s",
        results_dir=str(tmp_path),
        space_file="unused.yaml",
        data_root=str(demo_root),
        trials=2,
        epochs=7,
        img_size=256,
        batch_size=2,
        optimizer="adamw",
        lr=0.002,
        val_interval=3,
        cpus_per_trial=3,
    )
    trial = trial_settings(search)
    flags = ["--data", str(demo_root), "--epochs", "7", "--img-size", "256", "--batch-size", "2"]
    flags += ["--workers", "2", "--optimizer", "adamw", "--lr", "0.002", "--val-interval", "3"]
    data, schedule = training_plan(build_parser().parse_args(["train", "--arch", "a.json", *flags]))
    assert (data, schedule) == (trial.data, trial.schedule)
    assert build_config(TINY_ARCH, data=data, schedule=schedule, seed=4) == build_config(
        TINY_ARCH, data=trial.data, schedule=trial.schedule, seed=4
    )


def test_an_arch_is_taken_from_a_runs_candidate_json_and_from_a_trial(tmp_path: Path) -> None:
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({"arch": TINY_ARCH.to_dict(), "epochs": 2, "img_size": 256}))
    assert ArchSpec.load(candidate) == TINY_ARCH
    _, rows = step1_rows(3)
    make_store(tmp_path, "s1", rows)
    assert load_arch_ref("s1/t01", tmp_path) == rows[1].arch
    with pytest.raises(Exception, match=r"s1/t09: search s1 has no trial 't09' \(its trials: t00, t01, t02\)"):
        load_arch_ref("s1/t09", tmp_path)
    with pytest.raises(Exception, match="no search 'nope'"):
        load_arch_ref("nope/t00", tmp_path)


def test_flops_of_a_trial_by_name(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    _, rows = step1_rows(2)
    make_store(tmp_path, "s1", rows)
    monkeypatch.setenv("SCRFD_SEARCH_RESULTS", str(tmp_path))
    assert main(["flops", "s1/t00", "--analytic", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_gflops"] == pytest.approx(rows[0].flops.total_gflops)


def test_commands_print_no_pkg_resources_warning(tmp_path: Path) -> None:
    """mmengine's import of pkg_resources warns on every command; the entry point keeps it from users."""
    arch = tmp_path / "a.json"
    arch.write_text(TINY_ARCH.to_json())
    run = subprocess.run(
        [sys.executable, "-m", "scrfd_search.cli", "flops", str(arch), "--input-shape", "64", "64"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "GFLOPs" in run.stdout
    assert "pkg_resources" not in run.stderr
