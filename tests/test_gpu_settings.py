"""GPU-path settings that this CPU machine can check: a trial's device choice when Ray's GPU is not
usable, loader workers from --cpus-per-trial, where `status` says trials ran, and the GPU config
(mixed precision, cuDNN autotuning, pinned memory)."""

from __future__ import annotations

import pytest
from search_helpers import make_store, step1_rows

from scrfd_search.cli import main
from scrfd_search.config_builder import DataSettings, Schedule, build_config
from scrfd_search.errors import UserError
from scrfd_search.search.checks import check_trial_resources
from scrfd_search.search.ray_callback import with_result
from scrfd_search.search.trial import append_event, choose_device, data_workers
from scrfd_search.space.published import PUBLISHED
from scrfd_search.training.device import amp_dtype_for

DATA = DataSettings("data", "gt", num_workers=4)
PLACED = {
    "node_id": "a1b2c3d4e5f6",
    "node_ip": "10.0.0.7",
    "gpu_ids": ["3"],
    "cuda_visible_devices": "3",
    "device": "cpu",
    "device_note": "Ray assigned GPU 3 but torch sees no CUDA device: training on the CPU",
    "workers": 4,
}


def test_a_trial_on_an_unusable_gpu_trains_on_the_cpu_and_says_why() -> None:
    device, note = choose_device("cuda", ["3"], cuda_available=False)
    assert device == "cpu" and note == "Ray assigned GPU 3 but torch sees no CUDA device: training on the CPU"
    assert choose_device("cuda", ["3"], cuda_available=True) == ("cuda", None)
    assert choose_device("cpu", [], cuda_available=False) == ("cpu", None)


def test_loader_workers_are_the_trials_cores_but_one() -> None:
    assert [data_workers(c) for c in (0.5, 1, 2, 5, 5.5)] == [0, 0, 1, 4, 4]


def test_a_trial_needing_more_gpus_than_the_largest_node_is_refused() -> None:
    with pytest.raises(UserError, match=r"5 requested but the largest node has 4 GPUs \(a trial runs on one node\)"):
        check_trial_resources(1, 5, node_cpus=40, node_gpus=4)
    with pytest.raises(UserError, match="a fraction must be below 1"):
        check_trial_resources(1, 1.5, node_cpus=40, node_gpus=8)
    check_trial_resources(1, 0.5, node_cpus=40, node_gpus=8)


def test_status_shows_node_gpu_device_and_workers_of_each_trial(tmp_path, capsys) -> None:
    space, rows = step1_rows(2)
    reported = with_result(rows[0].updated(state="RUNNING"), {"epoch": 1, "hard": 0.2, "placement": PLACED})
    assert reported.extra["placement"] == PLACED
    # the second trial has not reported yet: its placement comes from its start event
    work_dir = tmp_path / "trials" / rows[1].trial_id
    work_dir.mkdir(parents=True)
    append_event(work_dir, "start", resume=False, placement={**PLACED, "gpu_ids": ["5"], "device_note": None})
    started = rows[1].updated(state="RUNNING", extra={"work_dir": str(work_dir)})
    make_store(tmp_path, "s", [reported, started], cpus_per_trial=5, gpus_per_trial=1, amp=True)
    assert main(["status", "s", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "each trial: 5 CPUs (4 data-loader workers), 1 GPUs, mixed precision" in out
    lines = {line.split()[0]: line for line in out.splitlines() if " node 10.0.0.7 " in line}
    assert (
        "GPU 3 " in lines[rows[0].trial_id] and "! Ray assigned GPU 3 but torch sees no CUDA" in lines[rows[0].trial_id]
    )
    assert "GPU 5 " in lines[rows[1].trial_id] and "!" not in lines[rows[1].trial_id]
    assert "(a1b2c3d4)" in lines[rows[1].trial_id] and "4 workers" in lines[rows[1].trial_id]


def test_gpu_config_autotunes_pins_memory_and_mixes_precision() -> None:
    arch = PUBLISHED["scrfd_500m"]
    gpu = build_config(arch, data=DATA, schedule=Schedule.search(4), device="cuda", amp_dtype="bfloat16")
    assert gpu["env_cfg"]["cudnn_benchmark"] is True
    assert gpu["train_dataloader"]["pin_memory"] is True and gpu["train_dataloader"]["persistent_workers"] is True
    assert gpu["optim_wrapper"]["type"] == "AmpOptimWrapper" and gpu["optim_wrapper"]["dtype"] == "bfloat16"
    assert gpu["optim_wrapper"]["loss_scale"] == 1.0  # bf16 has fp32's range: no scaling
    fp16 = build_config(arch, data=DATA, schedule=Schedule.search(4), device="cuda", amp_dtype="float16")
    assert fp16["optim_wrapper"]["loss_scale"] == "dynamic"
    cpu = build_config(arch, data=DATA, schedule=Schedule.search(4), device="cpu")
    assert cpu["env_cfg"]["cudnn_benchmark"] is False and "pin_memory" not in cpu["train_dataloader"]
    assert cpu["optim_wrapper"]["type"] == "OptimWrapper"
    with pytest.raises(UserError, match="mixed precision needs a CUDA GPU"):
        amp_dtype_for("cpu", True)
    assert amp_dtype_for("cpu", False) is None


def test_launch_refuses_amp_without_gpus(tmp_path, capsys, search_spaces_dir) -> None:
    code = main(
        ["launch", "--space", str(search_spaces_dir / "scrfd_0.5gf_step1.yaml"), "--data", str(tmp_path),
         "--name", "a", "--results-dir", str(tmp_path), "--gpus-per-trial", "0", "--amp"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "scrfd-search launch: error: --amp: mixed precision needs GPUs, and --gpus-per-trial is 0"
    ]
