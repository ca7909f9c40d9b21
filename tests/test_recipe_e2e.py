"""The recipe end to end on demo data: each optimizer trains (SAM with its two passes), a search samples
recipes with the architectures, a recipe-only search, and an exported non-SGD config under tools/train.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from search_helpers import STEP1_SPACE, TINY_ARCH, cli, demo_options, run_tool

from scrfd_search.builders import import_config_modules
from scrfd_search.config_builder import DataSettings, Schedule
from scrfd_search.recipe import OPTIMIZER_NAMES, Recipe, RecipeSpace, draw_recipes
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.search.store import ExperimentStore
from scrfd_search.space.search_space import SearchSpace
from scrfd_search.training.candidate import candidate_config
from scrfd_search.training.runner import PinnedDeviceRunner

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
TINY = ["--img-size", "128", "--batch-size", "4", "--cpus-per-trial", "1", "--gpus-per-trial", "0"]
SECTION = {"optimizer": ["sgd", "adaboundw"], "lr": [0.005, 0.02], "weight_decay": [1.0e-5, 5.0e-4]}


def train_recording(
    optimizer: str, data_root: Path, work: Path, rho: float | None = None, epochs: int = 5
) -> tuple[list[float], list[bool], object]:
    """Train TINY_ARCH `epochs` epochs with an optimizer through mmengine's Runner; losses, backbone calls, runner."""
    from mmengine.config import Config
    from mmengine.hooks import Hook

    data = DataSettings(str(data_root), str(data_root / "wider_face_split"), img_size=64, batch_size=4, num_workers=0)
    schedule = Schedule(epochs=epochs, recipe=Recipe(optimizer), base_batch_size=None, warmup_iters=2)
    cfg = candidate_config(TINY_ARCH, data, schedule, work, device="cpu", seed=0, resume=False)
    if rho is not None:
        cfg["optim_wrapper"]["optimizer"]["rho"] = rho
    import_config_modules(cfg)
    runner = PinnedDeviceRunner.from_cfg(Config(cfg, format_python_code=False))
    losses: list[float] = []

    class LossHook(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            losses.append(float(outputs["loss"].detach()))

    runner.register_hook(LossHook())
    calls: list[bool] = []
    runner.model.backbone.register_forward_hook(lambda module, args, out: calls.append(module.training))
    runner.train()
    return losses, calls, runner


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_each_optimizer_lowers_the_loss_and_sam_runs_two_passes(
    optimizer: str, demo_data: Path, tmp_path: Path
) -> None:
    # 10 epochs: on the demo's small, blurred and crowded faces SAM's loss needs 20 steps to fall by a tenth
    losses, calls, runner = train_recording(optimizer, demo_data, tmp_path / "work", epochs=10)
    iterations = runner.iter
    assert iterations == 20 and len(losses) == 20  # 8 images, batch 4, 10 epochs
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.9 * first, f"{optimizer}: loss {first:.3f} -> {last:.3f} ({losses})"
    training_passes = sum(calls)  # forwards in train mode (validation runs in eval mode)
    assert training_passes == (2 if optimizer == "sam" else 1) * iterations
    if optimizer == "sam":
        assert runner.optim_wrapper.second_passes == iterations
    assert Recipe(optimizer).info.mm_type in [c.__name__ for c in type(runner.optim_wrapper.optimizer).__mro__] + [
        "SAM"
    ]


def test_sam_without_a_neighbourhood_is_sgd_step_for_step(demo_data: Path, tmp_path: Path) -> None:
    """rho = 0: the second pass runs at the unperturbed weights, so SAM must reproduce SGD's losses exactly."""
    sgd, _, _ = train_recording("sgd", demo_data, tmp_path / "sgd")
    sam, calls, _ = train_recording("sam", demo_data, tmp_path / "sam", rho=0.0)
    assert sum(calls) == 2 * len(sam)
    assert sam == pytest.approx(sgd, rel=1e-5)
    perturbed, _, _ = train_recording("sam", demo_data, tmp_path / "sam05")
    assert perturbed[0] == pytest.approx(sgd[0]) and perturbed[1:] != pytest.approx(sgd[1:], rel=1e-5)


def seed_with_both(section: RecipeSpace, n: int) -> int:
    """The first seed whose n recipes use every optimizer of the section (so one trial is not SGD)."""
    return next(s for s in range(100) if {r.optimizer for r in draw_recipes(section, n, s)} == set(section.optimizers))


def test_search_samples_recipes_with_the_architectures_and_exports_a_non_sgd_trial(
    demo_data: Path, tmp_path: Path
) -> None:
    import torch

    space_data = yaml.safe_load(STEP1_SPACE.read_text())
    space_file = tmp_path / "with_recipe.yaml"
    space_file.write_text(yaml.safe_dump({**space_data, "recipe": SECTION}))
    section = RecipeSpace.from_dict(SECTION)
    seed = seed_with_both(section, 4)
    results = tmp_path / "results"
    base = ["--data", str(demo_data), "--results-dir", str(results), "--seed", str(seed), *TINY]
    done = cli("launch", "--space", str(space_file), "--name", "rs", "--trials", "4", "--epochs", "1", *base)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = ExperimentStore(results / "rs").read_trials()
    assert len(rows) == 4 and all(r.state == "TERMINATED" and r.hard is not None for r in rows)
    # trial i: candidate i of the same search without a section, recipe i of the section's own seeded stream
    candidates = sample_candidates(SearchSpace.load(STEP1_SPACE), 4, seed)
    recipes = draw_recipes(section, 4, seed)
    by_index = {r.extra["candidate"]: r for r in rows}
    assert {i: r.arch for i, r in by_index.items()} == {i: c.arch for i, c in enumerate(candidates)}
    assert {i: Recipe.from_dict(r.recipe) for i, r in by_index.items()} == dict(enumerate(recipes))
    experiment = ExperimentStore(results / "rs").read_experiment()
    assert RecipeSpace.from_dict(experiment.recipe_space) == section
    status = cli("status", "rs", "--results-dir", str(results))
    assert "recipe: searched: optimizer sgd/adaboundw" in status.stdout
    assert all(f"{r.recipe['lr']:.3g}" in status.stdout for r in rows)

    plots = cli("plot", "rs", "--results-dir", str(results), "--out", str(tmp_path / "plots"))
    assert plots.returncode == 0, plots.stderr[-2000:]
    assert (tmp_path / "plots" / "optimizers_rs.png").is_file()

    exported = cli("export", "rs", "--top", "4", "--results-dir", str(results), "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    adabound = next(r for r in rows if r.recipe["optimizer"] == "adaboundw")
    config = next((tmp_path / "export").glob(f"*_{adabound.trial_id}/*.py"))
    work = tmp_path / "work"
    trained = run_tool("train", str(config), "--work-dir", str(work), "--cfg-options", *demo_options(demo_data))
    assert trained.returncode == 0, trained.stderr[-3000:]
    ckpt = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)
    assert ckpt["meta"]["iter"] == 1  # two images, batch two: one iteration
    groups = ckpt["optimizer"]["param_groups"]
    assert groups[0]["final_lr"] == 0.1 and groups[0]["weight_decouple"] is True
    assert groups[0]["weight_decay"] == pytest.approx(adabound.recipe["weight_decay"])
    assert ckpt["optimizer"]["state"], "no AdaBound step was taken"


def test_recipe_only_search_keeps_the_architecture(demo_data: Path, tmp_path: Path) -> None:
    arch_file = tmp_path / "tiny.json"
    arch_file.write_text(TINY_ARCH.to_json())
    only = tmp_path / "only.yaml"
    only.write_text(yaml.safe_dump({"name": "opt", "recipe": {"optimizer": ["sam", "adamw"], "lr": [1e-3, 1e-2]}}))
    results = tmp_path / "results"
    done = cli(
        "launch", "--recipe-only", "--arch", str(arch_file), "--space", str(only), "--data", str(demo_data),
        "--name", "ro", "--trials", "2", "--epochs", "1", "--results-dir", str(results), *TINY,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = ExperimentStore(results / "ro").read_trials()
    assert len(rows) == 2 and all(r.arch == TINY_ARCH and r.state == "TERMINATED" for r in rows)
    expected = draw_recipes(RecipeSpace.from_dict({"optimizer": ["sam", "adamw"], "lr": [1e-3, 1e-2]}), 2, 0)
    assert [Recipe.from_dict(r.recipe) for r in sorted(rows, key=lambda r: r.extra["candidate"])] == expected
    status = cli("status", "ro", "--results-dir", str(results))
    assert "recipe only, architecture of" in status.stdout
