"""Training one candidate: the `train` command's input checks, result.json, resume, NaN guard, and
(slow) that a few epochs on demo data clearly beat the untrained model on hard AP."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from search_helpers import TINY_ARCH

from scrfd_search.cli import main
from scrfd_search.config_builder import DataSettings, Schedule
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.errors import UserError
from scrfd_search.recipe import Recipe
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec
from scrfd_search.training.candidate import train_candidate
from scrfd_search.training.files import RESULT_FILE
from scrfd_search.training.monitor import HISTORY_FILE, LossDivergedError, StopTraining

# The acceptance candidate: a small ResNet-style detector (0.58 GFLOPs at 640x480).
SMALL_ARCH = ArchSpec(
    block="basic",
    stem_width=16,
    stages=(StageSpec(1, 16), StageSpec(1, 32), StageSpec(1, 32), StageSpec(1, 64)),
    neck=NeckSpec(32),
    head=HeadSpec(num_convs=2, width=32, norm="gn", gn_groups=8),
)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tiny models here gain nothing from more, and a busy machine loses a lot."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A very small demo data set (8 train, 4 val images) for the fast tests."""
    root = tmp_path_factory.mktemp("tiny") / "demo"
    write_demo_dataset(root, DemoConfig(num_train=8, num_val=4, seed=3, min_width=96, max_width=128))
    return root


def _settings(root: Path, **overrides) -> DataSettings:
    """DataSettings for a demo folder: its own gt files, 64 px, no worker processes."""
    values = dict(data_root=str(root), gt_dir=str(root / "wider_face_split"), img_size=64, batch_size=4, num_workers=0)
    values.update(overrides)
    return DataSettings(**values)


def _quick(epochs: int, **overrides) -> Schedule:
    """A short schedule with a two-iteration warm-up, validating every epoch."""
    values = dict(epochs=epochs, warmup_iters=2, val_interval=1)
    values.update(overrides)
    return Schedule(**values)


def _copy_data(src: Path, dst: Path) -> Path:
    """A private copy of a demo folder (keeping its symlinks), to break on purpose."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ---------------------------------------------------------------- the command's input checks


def test_train_command_names_a_missing_arch_file(tiny_data: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.json"
    code = main(["train", "--arch", str(missing), "--data", str(tiny_data), "--work-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing) in err and err.startswith("scrfd-search train: error:")
    assert not (tmp_path / "w").exists()


def test_train_command_names_a_bad_arch_key(tiny_data: Path, tmp_path: Path, capsys) -> None:
    arch_file = tmp_path / "bad.json"
    data = TINY_ARCH.to_dict()
    data["stem_width"] = 12
    arch_file.write_text(json.dumps(data))
    code = main(["train", "--arch", str(arch_file), "--data", str(tiny_data), "--work-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(arch_file) in err and "stem_width" in err


@pytest.mark.parametrize(
    ("piece", "is_dir"),
    [
        ("WIDER_train/images", True),
        ("WIDER_val/images", True),
        ("wider_face_split/wider_face_train_bbx_gt.txt", False),
        ("wider_face_split/wider_face_val_bbx_gt.txt", False),
        ("wider_face_split/wider_hard_val.mat", False),
    ],
)
def test_train_command_names_the_missing_data_piece(
    tiny_data: Path, tmp_path: Path, capsys, piece: str, is_dir: bool
) -> None:
    root = _copy_data(tiny_data, tmp_path / "data")
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(TINY_ARCH.to_json())
    if is_dir:
        shutil.rmtree(root / piece)
    else:
        (root / piece).unlink()
    code = main(["train", "--arch", str(arch_file), "--data", str(root), "--work-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(root / piece) in err, err
    assert not (tmp_path / "w").exists()


def test_train_command_names_a_missing_data_folder_and_gt_folder(tiny_data: Path, tmp_path: Path, capsys) -> None:
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(TINY_ARCH.to_json())
    assert main(["train", "--arch", str(arch_file), "--data", str(tmp_path / "absent")]) == 2
    assert str(tmp_path / "absent") in capsys.readouterr().err
    gt = tmp_path / "no_gt"
    assert main(["train", "--arch", str(arch_file), "--data", str(tiny_data), "--gt", str(gt)]) == 2
    assert str(gt) in capsys.readouterr().err


def test_train_command_rejects_bad_numbers_before_training(tiny_data: Path, tmp_path: Path, capsys) -> None:
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(TINY_ARCH.to_json())
    base = ["train", "--arch", str(arch_file), "--data", str(tiny_data), "--work-dir", str(tmp_path / "w")]
    assert main([*base, "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert main([*base, "--img-size", "100"]) == 2
    assert "img_size" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------- training runs (tiny)


def test_train_command_writes_result_json_and_prints_ap(tiny_data: Path, tmp_path: Path, capsys) -> None:
    arch_file = tmp_path / "tiny.json"
    arch_file.write_text(TINY_ARCH.to_json())
    work = tmp_path / "work"
    args = ["train", "--arch", str(arch_file), "--data", str(tiny_data), "--work-dir", str(work)]
    args += ["--epochs", "1", "--img-size", "64", "--batch-size", "4", "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    result = json.loads((work / RESULT_FILE).read_text())
    assert set(result) >= {"easy", "medium", "hard", "epochs_run", "checkpoint", "history", "seconds"}
    assert result["epochs_run"] == 1
    assert all(0.0 <= result[s] <= 1.0 for s in ("easy", "medium", "hard"))
    assert Path(result["checkpoint"]).is_file()
    assert [h["epoch"] for h in result["history"]] == [1]
    assert ArchSpec.from_dict(result["arch"]) == TINY_ARCH
    # the printed AP is result.json's, in percent; the path of result.json is printed
    assert f"hard {100 * result['hard']:.2f}" in out
    assert str(work / RESULT_FILE) in out
    assert "epoch 1/1" in err  # the per-epoch progress line
    assert "INFO" not in out  # mmengine's log goes to the work dir, not the console
    assert list(work.glob("*/*.log"))


def test_resume_continues_without_repeating_epochs(tiny_data: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    data, schedule = _settings(tiny_data), _quick(2)

    def stop_after_first(epoch: int, aps: dict[str, float]) -> None:
        raise StopTraining

    lines: list[str] = []
    first = train_candidate(
        TINY_ARCH, data, schedule, work, device="cpu", on_validation=stop_after_first, progress=lines.append
    )
    assert first.epochs_run == 1 and [h["epoch"] for h in first.history] == [1]
    assert (work / HISTORY_FILE).is_file()
    assert json.loads((work / RESULT_FILE).read_text())["epochs_run"] == 1

    seen: list[int] = []
    lines.clear()
    second = train_candidate(
        TINY_ARCH,
        data,
        schedule,
        work,
        device="cpu",
        resume=True,
        on_validation=lambda epoch, aps: seen.append(epoch),
        progress=lines.append,
    )
    assert second.epochs_run == 2
    assert seen == [2]  # epoch 1 was neither trained nor validated again
    assert [line.split()[1] for line in lines] == ["2/2"]
    assert [h["epoch"] for h in second.history] == [1, 2]  # the first run's validation is kept
    assert second.history[0] == first.history[0]
    assert second.seconds >= first.seconds
    assert json.loads((work / RESULT_FILE).read_text())["epochs_run"] == 2

    other = ArchSpec.from_dict({**TINY_ARCH.to_dict(), "stem_width": 16})
    with pytest.raises(UserError, match="different architecture"):
        train_candidate(other, data, schedule, work, device="cpu", resume=True, progress=None)


def test_a_run_killed_between_its_last_checkpoint_and_its_validation_is_validated_on_resume(
    tiny_data: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    data, schedule = _settings(tiny_data), _quick(1)
    first = train_candidate(TINY_ARCH, data, schedule, work, device="cpu", progress=None)
    # what a kill right after the last epoch's checkpoint leaves: the checkpoint, no validation, no result
    (work / HISTORY_FILE).unlink()
    (work / RESULT_FILE).unlink()
    seen: list[int] = []
    second = train_candidate(
        TINY_ARCH,
        data,
        schedule,
        work,
        device="cpu",
        resume=True,
        on_validation=lambda e, aps: seen.append(e),
        progress=None,
    )
    assert seen == [1]  # validated (and reported) from the checkpoint, nothing trained again
    assert second.epochs_run == 1 and [h["epoch"] for h in second.history] == [1]
    assert second.hard == first.hard and second.easy == first.easy  # the same weights, the same AP
    assert json.loads((work / RESULT_FILE).read_text())["hard"] == first.hard


def test_same_seed_gives_the_same_run_on_cpu(tiny_data: Path, tmp_path: Path) -> None:
    data, schedule = _settings(tiny_data), _quick(1)
    runs = [
        train_candidate(TINY_ARCH, data, schedule, tmp_path / f"run{i}", device="cpu", seed=7, progress=None)
        for i in range(2)
    ]
    keys = ("easy", "medium", "hard", "loss")
    assert [{k: h[k] for k in keys} for h in runs[0].history] == [{k: h[k] for k in keys} for h in runs[1].history]


def test_nan_loss_stops_training_with_a_clear_error(tiny_data: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    schedule = Schedule(epochs=3, recipe=Recipe(lr=1e12), base_batch_size=None, warmup_iters=0, val_interval=1)
    with pytest.raises(LossDivergedError, match=r"loss became (NaN|infinite) at epoch \d+ iteration \d+"):
        train_candidate(TINY_ARCH, _settings(tiny_data), schedule, work, device="cpu", progress=None)
    assert not (work / RESULT_FILE).exists()


def test_cuda_without_a_gpu_is_a_user_error(tiny_data: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(UserError, match="cuda"):
        train_candidate(TINY_ARCH, _settings(tiny_data), _quick(1), tmp_path / "w", device="cuda")
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------- acceptance (slow)


@pytest.mark.slow
def test_training_clearly_beats_the_untrained_model_on_hard_ap(tmp_path: Path) -> None:
    # Clear demo faces at least 20 px: the test is about the training path learning, not about hard faces.
    root = tmp_path / "demo"
    demo = DemoConfig(num_train=96, num_val=24, seed=0, min_width=192, max_width=256, min_face_px=20, clear_faces=True)
    write_demo_dataset(root, demo)
    data = _settings(root, img_size=192, batch_size=4)
    # 720 iterations; a warm-up of a tenth of them (a 12-iteration warm-up sometimes stalls the head).
    schedule = Schedule(epochs=30, recipe=Recipe(lr=0.01), base_batch_size=None, warmup_iters=72, val_interval=30)
    start = time.perf_counter()
    result = train_candidate(
        SMALL_ARCH, data, schedule, tmp_path / "work", device="cpu", seed=0, validate_before_train=True
    )
    elapsed = time.perf_counter() - start
    untrained = next(h for h in result.history if h["epoch"] == 0)
    print(f"hard AP untrained {untrained['hard']:.3f} -> trained {result.hard:.3f} in {elapsed:.0f} s")
    assert result.epochs_run == 30
    assert [h["epoch"] for h in result.history] == [0, 30]
    assert result.hard >= untrained["hard"] + 0.3
