"""build_config / model_config: one config source for search and export; the published configs."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from scrfd_search.builders import build_model, import_config_modules
from scrfd_search.config_builder import DataSettings, Schedule, build_config, model_config
from scrfd_search.errors import UserError
from scrfd_search.space.published import PUBLISHED, PUBLISHED_PARAMS_M, RELEASED

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs" / "scrfd"
DATA = DataSettings(data_root="data/widerface/", gt_dir="data/widerface/wider_face_split/")
SCHEDULE_KEYS = {"optim_wrapper", "param_scheduler", "train_cfg", "default_hooks", "auto_scale_lr"}


def _load_tool():
    """tools/make_published_configs.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "make_published_configs", REPO / "tools" / "make_published_configs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _params(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def test_model_config_follows_the_arch():
    arch = PUBLISHED["scrfd_34g"]
    cfg = model_config(arch)
    assert cfg["backbone"]["type"] == "SCRFDResNet" and cfg["backbone"]["block"] == "bottleneck"
    assert cfg["backbone"]["depths"] == [17, 16, 2, 8] and cfg["backbone"]["widths"] == [56, 56, 144, 184]
    assert cfg["neck"]["in_channels"] == [224, 224, 576, 736] and cfg["neck"]["out_channels"] == 128
    head = cfg["bbox_head"]
    assert (head["in_channels"], head["feat_channels"], head["stacked_convs"]) == (128, 256, 2)
    assert head["norm_cfg"] == dict(type="GN", num_groups=32, requires_grad=True)
    assert cfg["train_cfg"]["assigner"]["topk"] == 9
    assert cfg["test_cfg"]["score_thr"] == 0.02 and cfg["test_cfg"]["nms"]["iou_threshold"] == 0.45
    assert cfg["data_preprocessor"]["mean"] == [127.5] * 3 and cfg["data_preprocessor"]["std"] == [128.0] * 3
    assert model_config(PUBLISHED["scrfd_500m"])["backbone"]["type"] == "SCRFDMobileNet"


def test_search_and_full_configs_differ_only_in_schedule_and_data():
    arch = PUBLISHED["scrfd_2.5g"]
    search = build_config(arch, data=DataSettings("d", "g", max_train_images=100), schedule=Schedule.search(80))
    full = build_config(arch, data=DATA, schedule=Schedule.full())
    data_keys = {"train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator"}
    differing = {k for k in search.keys() | full.keys() if search.get(k) != full.get(k)}
    assert differing <= SCHEDULE_KEYS | data_keys
    assert search["model"] == full["model"] == model_config(arch)
    assert (
        search["train_dataloader"]["dataset"]["indices"] == 100 and "indices" not in full["train_dataloader"]["dataset"]
    )


def test_full_schedule_is_the_reference_recipe():
    cfg = build_config(PUBLISHED["scrfd_10g"], data=DATA, schedule=Schedule.full(), seed=7)
    warmup, steps = cfg["param_scheduler"]
    assert warmup["type"] == "LinearLR" and warmup["start_factor"] == 0.001 and warmup["end"] == 1500
    assert not warmup["by_epoch"]
    assert steps["type"] == "MultiStepLR" and steps["milestones"] == [440, 544] and steps["gamma"] == 0.1
    assert cfg["train_cfg"] == dict(type="EpochBasedTrainLoop", max_epochs=640, val_interval=80)
    opt = cfg["optim_wrapper"]["optimizer"]
    assert (opt["type"], opt["lr"], opt["momentum"], opt["weight_decay"]) == ("SGD", 0.01, 0.9, 5e-4)
    assert cfg["auto_scale_lr"] == dict(enable=True, base_batch_size=32)
    assert cfg["randomness"]["seed"] == 7 and cfg["default_scope"] == "mmdet"
    assert cfg["val_evaluator"] == dict(type="WiderFaceMetric", gt_dir="data/widerface/wider_face_split/")
    assert "scrfd_search.models" in cfg["custom_imports"]["imports"]
    train = cfg["train_dataloader"]["dataset"]
    assert train["type"] == "WiderFaceDataset" and train["ann_file"].endswith("wider_face_train_bbx_gt.txt")
    assert cfg["val_dataloader"]["dataset"]["test_mode"] is True


@pytest.mark.parametrize(("epochs", "steps"), [(80, (55, 68)), (640, (440, 544)), (20, (14, 17)), (1, (1, 1))])
def test_search_schedule_scales_the_lr_steps(epochs, steps):
    schedule = Schedule.search(epochs)
    assert schedule.milestones == steps
    cfg = build_config(PUBLISHED["scrfd_500m"], data=DATA, schedule=schedule)
    assert cfg["train_cfg"]["val_interval"] == epochs  # the search validates at the end by default


def test_retinaface_layout_and_overrides():
    data = DataSettings("r", "g", layout="retinaface", with_keypoints=True, val_ann="val/other.txt", img_size=320)
    cfg = build_config(PUBLISHED["scrfd_500m"], data=data, schedule=Schedule.search(4), work_dir="/tmp/w")
    assert cfg["train_dataloader"]["dataset"]["type"] == "RetinaFaceDataset"
    assert cfg["val_dataloader"]["dataset"]["ann_file"] == "val/other.txt"
    assert cfg["work_dir"] == "/tmp/w"


@pytest.mark.parametrize(
    "make",
    [
        lambda: DataSettings("d", "g", layout="coco"),
        lambda: DataSettings("d", "g", img_size=100),
        lambda: DataSettings("d", "g", batch_size=0),
        lambda: DataSettings("d", "g", max_val_images=0),
        lambda: Schedule(epochs=0),
        lambda: build_config(PUBLISHED["scrfd_500m"], data=DATA, schedule=Schedule.full(), seed=1.5),
    ],
)
def test_bad_settings_are_user_errors(make):
    with pytest.raises(UserError):
        make()


def test_config_round_trips_through_mmengine_text():
    cfg = build_config(PUBLISHED["scrfd_2.5g"], data=DATA, schedule=Schedule.search(80), work_dir="w")
    text = Config(cfg).pretty_text
    assert Config.fromstring(text, ".py").to_dict() == Config(cfg).to_dict()


def test_dataloader_feeds_the_model(tmp_path):
    from mmengine.runner import Runner

    from scrfd_search.data.demo import DemoConfig, write_demo_dataset

    write_demo_dataset(tmp_path / "demo", DemoConfig(num_train=2, num_val=1, seed=3))
    data = DataSettings(
        str(tmp_path / "demo"),
        str(tmp_path / "demo" / "wider_face_split"),
        img_size=128,
        batch_size=2,
        num_workers=0,
        with_keypoints=True,
    )
    arch = PUBLISHED["scrfd_500m"]
    cfg = build_config(arch, data=data, schedule=Schedule.search(1))
    model = build_model(arch)
    loader = Runner.build_dataloader(cfg["train_dataloader"], seed=0)
    batch = next(iter(loader))
    assert len(batch["inputs"]) == 2 and tuple(batch["inputs"][0].shape) == (3, 128, 128)
    assert batch["data_samples"][0].gt_instances.keypoints.shape[1:] == (5, 3)
    model.train()
    losses = model(**model.data_preprocessor(batch, training=True), mode="loss")
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_published_config_files_load_and_build(name):
    from mmdet.registry import MODELS

    cfg = Config.fromfile(CONFIG_DIR / f"{name}.py")
    assert cfg.model.to_dict() == Config(dict(model=model_config(RELEASED[name]))).model.to_dict()
    assert cfg.train_cfg.max_epochs == 640
    assert cfg.optim_wrapper.optimizer.lr == (0.02 if name == "scrfd_34g" else 0.01)
    built = build_model(RELEASED[name])
    from_file = MODELS.build(cfg.model)
    assert _params(from_file) == _params(built)
    assert (CONFIG_DIR / f"{name}.json").read_text() == RELEASED[name].to_json()
    # the reference's 2.5GF and 10GF configs keep boxes unclipped in crop and resize; 0.5GF and 34GF clip
    crop, resize = cfg.train_dataloader.dataset.pipeline[2:4]
    unclipped = name.startswith(("scrfd_2.5g", "scrfd_10g"))
    assert crop.bbox_clip_border is resize.clip_object_border is (not unclipped)


def test_keypoint_variants_are_the_references_bnkps_heads():
    for name, box_scale in (("scrfd_500m_bnkps", False), ("scrfd_2.5g_bnkps", True), ("scrfd_10g_bnkps", True)):
        arch = RELEASED[name]
        base = PUBLISHED[name.removesuffix("_bnkps")]
        assert (arch.block, arch.stages, arch.neck) == (base.block, base.stages, base.neck)
        head = arch.head
        assert (head.norm, head.shared, head.keypoints, head.box_scale) == ("bn", False, True, box_scale)
        assert (head.num_convs, head.width, head.depthwise) == (
            base.head.num_convs,
            base.head.width,
            base.head.depthwise,
        )
        model = build_model(arch)
        scales = [n for n, _ in model.named_parameters() if n.startswith("bbox_head.scales.")]
        assert len(scales) == (3 if box_scale else 0)
        cfg = Config.fromfile(CONFIG_DIR / f"{name}.py")
        assert cfg.train_dataloader.dataset.type == "RetinaFaceDataset"  # landmarks come from labelv2.txt
        # the reference's 0.5GF keypoint config takes 16 images per GPU, the others 8 (lr 0.01 on 4 GPUs)
        batch = 16 if name == "scrfd_500m_bnkps" else 8
        assert cfg.train_dataloader.batch_size == batch
        assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=4 * batch)


def test_search_trials_use_the_lr_as_given():
    # the reference's search: 8 images per batch at lr 0.01, which mmdet 2.x never rescales
    cfg = build_config(PUBLISHED["scrfd_2.5g"], data=DATA, schedule=Schedule.search(80))
    assert cfg["optim_wrapper"]["optimizer"]["lr"] == 0.01
    assert cfg["auto_scale_lr"]["enable"] is False


def test_residual_blocks_start_with_their_last_norm_at_zero():
    from mmdet.models.backbones.resnet import BasicBlock, Bottleneck

    for name in ("scrfd_2.5g", "scrfd_34g"):
        blocks = [m for m in build_model(PUBLISHED[name]).backbone.modules() if isinstance(m, BasicBlock | Bottleneck)]
        assert blocks
        for block in blocks:
            last = block.norm3 if isinstance(block, Bottleneck) else block.norm2
            assert torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0
            assert torch.count_nonzero(block.norm1.weight) == block.norm1.weight.numel()


def test_published_config_files_are_up_to_date():
    assert _load_tool().main(["--check"]) == 0, "run: .venv/bin/python tools/make_published_configs.py"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_models_have_the_published_size(name):
    # Our builds of the released architectures are within 1% of the paper's parameter counts.
    params_m = _params(build_model(PUBLISHED[name])) / 1e6
    assert math.isclose(params_m, PUBLISHED_PARAMS_M[name], rel_tol=0.01), params_m


@pytest.mark.slow  # about 20 s: two tiny epochs and a validation on demo data
def test_runner_trains_and_validates_from_build_config(tmp_path):
    from mmengine.runner import Runner

    from scrfd_search.data.demo import DemoConfig, write_demo_dataset
    from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec

    demo = tmp_path / "demo"
    write_demo_dataset(demo, DemoConfig(num_train=4, num_val=2, seed=1))
    arch = ArchSpec(
        "basic", 16, tuple(StageSpec(1, w) for w in (8, 16, 16, 32)), NeckSpec(16), HeadSpec(1, 16, gn_groups=8)
    )
    data = DataSettings(str(demo), str(demo / "wider_face_split"), img_size=128, batch_size=2, num_workers=0)
    schedule = Schedule(epochs=2, warmup_iters=2, log_interval=1)
    cfg = build_config(arch, data=data, schedule=schedule, work_dir=str(tmp_path / "work"))
    import_config_modules(cfg)
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    assert (tmp_path / "work" / "epoch_2.pth").is_file()
    metrics = runner.val()
    assert set(metrics) == {"widerface/easy", "widerface/medium", "widerface/hard"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
