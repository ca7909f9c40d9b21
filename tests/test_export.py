"""The export command: full-schedule configs, metadata, ONNX, and training from an exported config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from search_helpers import demo_options, run_tool

from scrfd_search.cli import main
from scrfd_search.config_builder import model_config
from scrfd_search.errors import UserError
from scrfd_search.export.released_format import released_output_names
from scrfd_search.export.writer import export_experiment
from scrfd_search.flops.analytic import count_flops
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.search.store import ExperimentStore, TrialRecord
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec

LARGE_CROPS = [0.3, 0.45, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]

pytest.importorskip("mmcv.ops", reason="mmcv with its ops is needed to build detectors")


def small_arch(rng: np.random.Generator, keypoints: bool = False) -> ArchSpec:
    """A random small basic-block detector (fast to build, trace and run on a CPU)."""
    widths = np.sort(rng.integers(1, 5, size=4) * 8)
    stages = tuple(StageSpec(int(d), int(w)) for d, w in zip(rng.integers(1, 3, size=4), widths, strict=True))
    head = HeadSpec(
        num_convs=int(rng.integers(1, 3)),
        width=16 * int(rng.integers(1, 3)),
        norm="bn" if keypoints else "gn",
        gn_groups=8,
        shared=not keypoints,
        keypoints=keypoints,
    )
    return ArchSpec("basic", 8 * int(rng.integers(1, 3)), stages, NeckSpec(16), head)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TrialRecord]]:
    """A finished search, written once: three scored trials, one failed, one still running (read-only)."""
    rng = np.random.default_rng(7)
    archs = [small_arch(rng) for _ in range(5)]
    root = tmp_path_factory.mktemp("export")
    store = ExperimentStore(root / "results" / "exp")
    atomic_write_json(store.experiment_file, {"name": "exp", "step": 2, "budget_gflops": 0.5, "epochs": 10})
    trials = [
        TrialRecord("a", archs[0], count_flops(archs[0]), "TERMINATED", 0.81, 0.75, 0.52, 10),
        TrialRecord("b", archs[1], count_flops(archs[1]), "TERMINATED", 0.85, 0.80, 0.61, 10),
        TrialRecord("c", archs[2], count_flops(archs[2]), "ERROR", 0.9, 0.9, 0.99, 3, error="boom"),
        TrialRecord("d", archs[3], count_flops(archs[3]), "TERMINATED", 0.80, 0.70, 0.40, 5),
        TrialRecord("e", archs[4], count_flops(archs[4]), "RUNNING"),
    ]
    store.write_trials(trials)
    return root / "results", trials


@pytest.fixture()
def experiment(finished_search: tuple[Path, list[TrialRecord]], tmp_path: Path) -> tuple[Path, list[TrialRecord]]:
    """This test's own copy of the finished search (tests export into it and change its rows)."""
    results, trials = finished_search
    return Path(shutil.copytree(results, tmp_path / "results")), trials


def load_config(path: Path) -> Config:
    """An exported config, read the way mmdet's tools/train.py reads it."""
    return Config.fromfile(str(path))


def test_export_top_k_writes_loadable_full_schedule_configs(experiment: tuple[Path, list[TrialRecord]]) -> None:
    results, trials = experiment
    assert main(["export", "exp", "--top", "2", "--results-dir", str(results)]) == 0
    out = results / "exp" / "export"
    index = json.loads((out / "export.json").read_text())
    assert [m["trial_id"] for m in index["models"]] == ["b", "a"]  # by hard AP; the failed 'c' is skipped
    by_id = {t.trial_id: t for t in trials}
    for rank, trial_id in enumerate(["b", "a"], 1):
        folder = out / f"{rank:02d}_{trial_id}"
        stem = f"exp_{rank:02d}_{trial_id}"
        trial = by_id[trial_id]
        assert ArchSpec.load(folder / f"{stem}.json") == trial.arch
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["trial_id"] == trial_id and metrics["rank"] == rank
        assert (metrics["easy"], metrics["medium"], metrics["hard"]) == (trial.easy, trial.medium, trial.hard)
        assert (metrics["experiment"], metrics["step"], metrics["epochs"]) == ("exp", 2, 10)
        flops = json.loads((folder / "flops.json").read_text())
        assert flops["components"] == pytest.approx(trial.flops.to_dict()["components"])
        assert flops["params"] == trial.flops.to_dict()["params"]
        assert flops["total_gflops"] == pytest.approx(trial.flops.total_gflops)

        cfg = load_config(folder / f"{stem}.py")
        assert cfg.train_cfg.max_epochs == 640
        assert cfg.train_dataloader.dataset.data_root == "data/widerface/"
        assert cfg.val_evaluator.type == "WiderFaceMetric"
        crop = [s for s in cfg.train_dataloader.dataset.pipeline if s.type == "RandomSquareCrop"]
        assert [list(s.crop_choice) for s in crop] == [LARGE_CROPS]
        assert "scrfd_search.models" in cfg.custom_imports.imports
        assert cfg.model.to_dict() == Config(dict(model=model_config(trial.arch))).model.to_dict()
    assert not (out / "03_d").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "staging folders left behind"


def test_exported_config_builds_the_architecture(tmp_path: Path) -> None:
    from mmdet.registry import MODELS

    from scrfd_search.builders import register_modules
    from scrfd_search.flops.measure import measure_flops

    arch = small_arch(np.random.default_rng(3))
    (tmp_path / "arch.json").write_text(arch.to_json())
    assert main(["export", "--arch", str(tmp_path / "arch.json"), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "_base_",
        "arch.json",
        "arch.py",
        "export.json",
        "flops.json",
    ]  # a single ArchSpec: its files straight in --out, no search metrics
    cfg = load_config(tmp_path / "out" / "arch.py")
    register_modules()
    model = MODELS.build(cfg.model)
    expected = count_flops(arch)
    assert sum(p.numel() for p in model.parameters()) == round(expected.params_m * 1e6)
    measured = measure_flops(model, (480, 640))
    assert measured.total_gflops == pytest.approx(expected.total_gflops, rel=1e-6)


def test_export_refuses_to_overwrite_without_force(experiment: tuple[Path, list[TrialRecord]]) -> None:
    results, _ = experiment
    out = results / "mine"
    export_experiment("exp", 1, out, results_dir=results)
    (out / "note.txt").write_text("keep me")
    with pytest.raises(UserError, match="--force"):
        export_experiment("exp", 2, out, results_dir=results)
    assert (out / "note.txt").is_file()
    export_experiment("exp", 2, out, results_dir=results, force=True)
    assert not (out / "note.txt").exists()
    assert len(json.loads((out / "export.json").read_text())["models"]) == 2
    with pytest.raises(UserError, match="no earlier export"):  # never replace a folder that is not an export
        export_experiment("exp", 1, results / "exp", results_dir=results, force=True)
    assert (results / "exp" / "experiment.json").is_file()


def test_failed_export_leaves_nothing(experiment: tuple[Path, list[TrialRecord]]) -> None:
    """The second model's checkpoint does not fit its architecture: no half export may remain."""
    import torch

    from scrfd_search.builders import build_model

    results, trials = experiment
    store = ExperimentStore(results / "exp")
    wrong = results / "wrong.pth"
    torch.save({"state_dict": build_model(trials[3].arch).state_dict()}, wrong)
    store.upsert(trials[0].updated(checkpoint=str(wrong)))  # 'a' is second by hard AP
    out = results / "half"
    with pytest.raises(UserError, match="does not fit"):
        export_experiment("exp", 2, out, results_dir=results, with_onnx=True)
    assert not out.exists()
    assert not [p for p in results.iterdir() if p.name.startswith(".")]


def test_cli_errors(experiment: tuple[Path, list[TrialRecord]], capsys: pytest.CaptureFixture) -> None:
    results, trials = experiment
    assert main(["export", "exp", "--top", "0", "--results-dir", str(results)]) == 2
    assert "--top" in capsys.readouterr().err
    assert main(["export", "exp", "--arch", "x.json", "--results-dir", str(results)]) == 2
    assert main(["export", "nope", "--results-dir", str(results)]) == 2
    assert "nope" in capsys.readouterr().err
    # a checkpoint that went missing: the error names the file that holds the rows (trials.db)
    store = ExperimentStore(results / "exp")
    store.upsert(trials[1].updated(checkpoint="trials/b/gone.pth"))
    assert main(["export", "exp", "--onnx", "--out", str(results / "out"), "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert f"{store.database_file}: trial b: checkpoint trials/b/gone.pth not found" in err and err.count("\n") == 1
    assert not (results / "out").exists()


def onnx_vs_torch(
    onnx_path: Path, arch: ArchSpec, checkpoint: Path | None, sizes: list[tuple[int, int]], batches=(1, 3)
) -> float:
    """Run the ONNX file in onnxruntime and the PyTorch detector on the same batches of inputs; the largest
    difference."""
    import onnxruntime
    import torch

    from scrfd_search.export.checkpoints import load_detector
    from scrfd_search.export.released_format import released_head_module

    module = released_head_module(load_detector(arch, checkpoint))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == released_output_names(arch.head.keypoints)
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    for (h, w), batch in [(size, b) for size in sizes for b in batches]:
        x = torch.randn(batch, 3, h, w, generator=gen)
        with torch.no_grad():
            expected = [t.numpy() for t in module(x)]
        got = session.run(None, {"input": x.numpy()})
        for e, g, name in zip(expected, got, released_output_names(arch.head.keypoints), strict=True):
            group, stride = name.rsplit("_", 1)
            channels = {"score": 1, "bbox": 4, "kps": 10}[group]
            # the released layout with a batch axis: B x (H/S * W/S * 2 anchors) x channels
            assert g.shape == e.shape == (batch, (h // int(stride)) * (w // int(stride)) * 2, channels)
            worst = max(worst, float(np.abs(e - g).max()))
        if batch > 1:  # each image of a batch gives what it gives alone
            alone = session.run(None, {"input": x[-1:].numpy()})
            worst = max(worst, max(float(np.abs(a[0] - g[-1]).max()) for a, g in zip(alone, got, strict=True)))
    return worst


def test_onnx_from_checkpoint_matches_pytorch(experiment: tuple[Path, list[TrialRecord]]) -> None:
    import torch

    from scrfd_search.builders import build_model

    results, trials = experiment
    best = trials[1]
    torch.manual_seed(5)
    model = build_model(best.arch)
    with torch.no_grad():  # weights unlike a fresh init, so loading them is what the check sees
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = results / "exp" / "trials" / "b" / "epoch_10.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 10}}, ckpt)
    ExperimentStore(results / "exp").upsert(best.updated(checkpoint="trials/b/epoch_10.pth"))

    assert main(["export", "exp", "--onnx", "--results-dir", str(results)]) == 0
    folder = results / "exp" / "export" / "01_b"
    note = json.loads((folder / "onnx.json").read_text())
    assert note["freshly_initialised"] is False and note["weights"] == str(ckpt.resolve())
    assert note["check"]["max_abs_diff_vs_pytorch"] <= 1e-4
    assert onnx_vs_torch(folder / "exp_01_b.onnx", best.arch, ckpt, [(96, 128), (160, 64)]) <= 1e-4


def test_onnx_fresh_init_with_keypoints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import onnx

    arch = small_arch(np.random.default_rng(11), keypoints=True)
    (tmp_path / "kps.json").write_text(arch.to_json())
    assert main(["export", "--arch", str(tmp_path / "kps.json"), "--out", str(tmp_path / "out"), "--onnx"]) == 0
    assert "freshly initialised" in capsys.readouterr().out
    folder = tmp_path / "out"
    note = json.loads((folder / "onnx.json").read_text())
    assert note["freshly_initialised"] is True and note["weights"] is None
    model = onnx.load(str(folder / "kps.onnx"))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims] == ["batch", 3, "height", "width"]  # dynamic batch and size
    for output in model.graph.output:  # batch x anchors x channels
        out_dims = output.type.tensor_type.shape.dim
        assert out_dims[0].dim_param == "batch" and out_dims[1].dim_param.startswith("anchors_")
    assert note["check"]["batches"] == [1, 3]
    assert [o.name for o in model.graph.output] == [
        f"{group}_{stride}" for group in ("score", "bbox", "kps") for stride in (8, 16, 32)
    ]  # the released models' outputs, in insightface's runtime's order


def test_onnx_keypoint_head_matches_pytorch_at_two_sizes(tmp_path: Path) -> None:
    import torch

    from scrfd_search.export.checkpoints import load_detector
    from scrfd_search.export.onnx_file import export_onnx_bytes
    from scrfd_search.export.released_format import released_head_module

    arch = small_arch(np.random.default_rng(12), keypoints=True)
    torch.manual_seed(0)
    module = released_head_module(load_detector(arch, None))
    path = tmp_path / "kps.onnx"
    path.write_bytes(export_onnx_bytes(module, True, (128, 128)))
    ckpt = tmp_path / "kps.pth"
    torch.save({"state_dict": module.state_dict()}, ckpt)  # the wrapper keeps the detector's names
    assert onnx_vs_torch(path, arch, ckpt, [(64, 96), (160, 128)]) <= 1e-4


def tool(name: str, *args: str) -> str:
    """Run tools/<name>.py in-process; its stdout, failing with its stderr."""
    done = run_tool(name, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def tiny_config(tmp_path: Path) -> Path:
    """An exported config with 128x128 images in every pipeline (the rest changes on the command line)."""
    from mmengine.config import Config

    arch = small_arch(np.random.default_rng(5))
    (tmp_path / "arch.json").write_text(arch.to_json())
    assert main(["export", "--arch", str(tmp_path / "arch.json"), "--out", str(tmp_path / "out")]) == 0
    cfg = Config.fromfile(str(tmp_path / "out" / "arch.py"))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        for step in loader.dataset.pipeline:
            if step.type == "FaceResize":
                step.scale = (128, 128)
    cfg.dump(str(tmp_path / "tiny.py"))
    return tmp_path / "tiny.py"


@pytest.mark.slow
def test_one_iteration_of_training_from_an_exported_config(
    tmp_path: Path, demo_data: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread: None
) -> None:
    """tools/train.py on demo data from an exported config: one optimizer step; then test.py and --resume."""
    import torch

    monkeypatch.chdir(tmp_path)
    data = demo_data
    tiny, work = tiny_config(tmp_path), tmp_path / "work"
    tool("train", str(tiny), "--work-dir", str(work), "--cfg-options", *demo_options(data, 1))
    ckpt = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)
    assert ckpt["meta"]["iter"] == 1  # two images, batch two: exactly one iteration
    assert ckpt["optimizer"]["state"], "no optimizer step was taken (SGD momentum buffers are empty)"
    scalars = list(work.glob("*/vis_data/scalars.json"))
    assert scalars and "widerface/hard" in scalars[0].read_text()  # the validation ran with the metric

    test_args = [str(tiny), str(work / "epoch_1.pth"), "--work-dir", str(tmp_path / "test")]
    out = tool("test", *test_args, "--cfg-options", *demo_options(data, 1))
    assert "widerface/hard:" in out

    tool("train", str(tiny), "--work-dir", str(work), "--resume", "--cfg-options", *demo_options(data, 2))
    resumed = torch.load(work / "epoch_2.pth", map_location="cpu", weights_only=False)
    assert resumed["meta"]["iter"] == 2  # continued from epoch 1 rather than starting again
