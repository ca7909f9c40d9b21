"""Config files as mmdet users meet them: configs/ and exports are short children of `_base_/` files.

Every config in configs/ and every exported config is read by mmengine and its model, datasets and
metric are built against demo data placed in the README's layout (data/widerface/ under the working
folder), the way `tools/train.py configs/scrfd/scrfd_2.5g.py` would on a user's machine.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mmengine.config import Config

from scrfd_search.builders import import_config_modules
from scrfd_search.cli import main
from scrfd_search.config_builder import Schedule, build_config, widerface_data
from scrfd_search.config_writer import (
    config_overrides,
    full_config,
    merged_bases,
    read_config_text,
    render_config,
    render_value,
)
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.recipe import Recipe
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec
from scrfd_search.space.published import PUBLISHED, RELEASED

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
CHILD_CONFIGS = sorted(p for p in CONFIGS.rglob("*.py") if "_base_" not in p.parts)
MAX_CHILD_LINES = 40


@pytest.fixture(scope="module")
def readme_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with demo data in both layouts of docs/configs.md: data/widerface/ (official) and
    data/retinaface/ (labelv2.txt with landmarks, the .mat ground truth in val/gt/)."""
    work = tmp_path_factory.mktemp("user")
    wider = work / "data" / "widerface"
    write_demo_dataset(wider, DemoConfig(num_train=3, num_val=2, seed=4))
    retina = work / "data" / "retinaface"
    (retina / "val").mkdir(parents=True)
    (retina / "train").symlink_to(wider / "train")
    for name in ("labelv2.txt", "images"):
        (retina / "val" / name).symlink_to(wider / "val" / name)
    (retina / "val" / "gt").symlink_to(wider / "wider_face_split")
    return work


@pytest.fixture
def in_folder(readme_layout: Path) -> Iterator[Path]:
    """Run the test from the user's working folder (configs name data/widerface/ relative to it)."""
    previous = Path.cwd()
    os.chdir(readme_layout)
    try:
        yield readme_layout
    finally:
        os.chdir(previous)


def build_everything(path: Path) -> None:
    """Read a config file as tools/train.py does; build its model, both datasets and its metric."""
    from mmdet.registry import DATASETS, METRICS, MODELS

    cfg = Config.fromfile(str(path))
    import_config_modules(cfg.to_dict())
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    train = DATASETS.build(cfg.train_dataloader.dataset)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(train) == 3 and len(val) == 2
    sample = train[0]  # the whole training pipeline: load, large crop, resize, flip, photometric, pack
    assert tuple(sample["inputs"].shape) == (3, 640, 640)
    metric = METRICS.build(cfg.val_evaluator)
    assert len(metric.gt) == 2  # it read the val ground truth (.mat files) under data/widerface/


def test_configs_folder_holds_the_published_models_and_bases() -> None:
    names = {p.stem for p in CHILD_CONFIGS if p.parent.name == "scrfd"}
    assert set(RELEASED) <= names
    assert {p.relative_to(CONFIGS / "_base_").as_posix() for p in (CONFIGS / "_base_").rglob("*.py")} == {
        "models/scrfd.py",
        "datasets/wider_face_scrfd.py",
        "datasets/retinaface_scrfd.py",
        "schedules/scrfd_640e.py",
        "default_runtime.py",
    }


@pytest.mark.parametrize("path", CHILD_CONFIGS, ids=[p.relative_to(CONFIGS).as_posix() for p in CHILD_CONFIGS])
def test_every_config_in_configs_builds_against_the_readme_layout(path: Path, in_folder: Path) -> None:
    build_everything(path)


@pytest.mark.parametrize("path", CHILD_CONFIGS, ids=[p.relative_to(CONFIGS).as_posix() for p in CHILD_CONFIGS])
def test_child_configs_are_short_and_state_the_architecture_once(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_CHILD_LINES
    assert "_base_ = [" in text and "scrfd_arch" not in text and "device" not in text
    for key in ("momentum", "param_scheduler", "LoadImageFromFile", "anchor_generator", "loss_cls"):
        assert key not in text, f"{path.name} restates {key}, which its bases hold"


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_published_children_read_back_as_the_builders_full_config(name: str) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_published_configs", REPO / "tools" / "make_published_configs.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    loaded = Config.fromfile(str(CONFIGS / "scrfd" / f"{name}.py"), import_custom_modules=False).to_dict()
    assert config_overrides(tool.published_config(name, RELEASED[name]), loaded) == {}


def test_search_winners_export_with_the_reference_full_schedule() -> None:
    arch = PUBLISHED["scrfd_34g"]
    cfg = full_config(arch)
    assert cfg["optim_wrapper"]["optimizer"]["lr"] == 0.02 and cfg["train_cfg"]["max_epochs"] == 640
    assert full_config(PUBLISHED["scrfd_2.5g"])["optim_wrapper"]["optimizer"]["lr"] == 0.01


def test_exported_configs_build_against_the_readme_layout(in_folder: Path) -> None:
    arch = ArchSpec(
        "basic", 16, tuple(StageSpec(1, w) for w in (8, 16, 16, 32)), NeckSpec(16), HeadSpec(1, 16, gn_groups=8)
    )
    (in_folder / "mine.json").write_text(arch.to_json())
    assert main(["export", "--arch", "mine.json", "--out", "exported"]) == 0
    bases = sorted(p.relative_to(in_folder / "exported").as_posix() for p in (in_folder / "exported").rglob("*.py"))
    assert "_base_/models/scrfd.py" in bases and "mine.py" in bases
    build_everything(in_folder / "exported" / "mine.py")


def test_a_different_data_root_and_schedule_are_overrides_in_the_child() -> None:
    arch = PUBLISHED["scrfd_2.5g"]
    full = build_config(arch, data=widerface_data("/datasets/wider"), schedule=Schedule.full(Recipe(lr=0.04)))
    overrides = config_overrides(full, merged_bases())
    assert overrides["optim_wrapper"] == {"optimizer": {"lr": 0.04}}
    assert overrides["train_dataloader"]["dataset"]["data_root"] == "/datasets/wider/"
    assert overrides["val_evaluator"] == {"gt_dir": "/datasets/wider/wider_face_split/"}
    assert "param_scheduler" not in overrides and "anchor_generator" not in str(overrides)


def test_overrides_replace_a_dict_whose_type_changes(tmp_path: Path) -> None:
    base = {"optim_wrapper": {"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9}}}
    full = {"optim_wrapper": {"type": "OptimWrapper", "optimizer": {"type": "AdamW", "lr": 0.001}}}
    overrides = config_overrides(full, base)
    assert overrides == {"optim_wrapper": {"optimizer": {"_delete_": True, "type": "AdamW", "lr": 0.001}}}
    (tmp_path / "base.py").write_text(render_config(base))
    (tmp_path / "child.py").write_text("_base_ = ['base.py']\n" + render_config(overrides))
    merged = Config.fromfile(str(tmp_path / "child.py")).to_dict()
    assert merged == full


def test_rendering_is_short_and_exact() -> None:
    assert render_value({"beta": 1.0 / 9.0, "scales": [1, 2], "size": (640, 640)}) == (
        "dict(beta=1.0 / 9.0, scales=[1, 2], size=(640, 640))"
    )
    long = {"items": list(range(40))}
    text = render_config(long)
    assert read_config_text(text) == long and all(len(line) <= 100 for line in text.splitlines())
    with_variables = {"root": "data/x/", "one": (5,), "path": "data/x/y", "two": {"p": "data/x/", "q": (5,)}}
    text = render_config(with_variables, variables=("root", "one"))
    assert "path = root + 'y'" in text and "two = dict(p=root, q=one)" in text
    assert read_config_text(text) == with_variables
