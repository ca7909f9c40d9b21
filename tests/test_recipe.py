"""The training recipe as data: optimizer defaults, the `recipe:` section, seeded sampling, configs, status."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from search_helpers import STEP1_SPACE, STEP2_SPACE, make_record, make_store

from scrfd_search.cli import main
from scrfd_search.config_builder import DataSettings, Schedule, build_config
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.errors import UserError
from scrfd_search.export.selection import ExportItem
from scrfd_search.export.writer import export_recipe
from scrfd_search.flops.analytic import count_flops
from scrfd_search.recipe import OPTIMIZER_NAMES, OPTIMIZERS, Recipe, RecipeSpace, draw_recipes
from scrfd_search.sampling.sampler import Candidate, sample_candidates
from scrfd_search.search.prepare import inherited_recipe
from scrfd_search.search.searchers import BudgetedOptunaSearch, RecipeOptunaSearch
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.status_table import status_text
from scrfd_search.space.published import PUBLISHED
from scrfd_search.space.search_space import SearchSpace, load_recipe_section

REPO = Path(__file__).resolve().parents[1]
SECTION = {"optimizer": ["sgd", "adaboundw"], "lr": [0.005, 0.02], "weight_decay": [1.0e-5, 5.0e-4]}


def space_with(tmp_path: Path, recipe: object, name: str = "space.yaml") -> Path:
    """The 0.5 GF step-1 space with a `recipe:` section added."""
    data = yaml.safe_load(STEP1_SPACE.read_text())
    data["recipe"] = recipe
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------ Recipe


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_each_optimizer_starts_from_its_published_defaults(name: str) -> None:
    recipe = Recipe(name)
    info = OPTIMIZERS[name]
    assert (recipe.lr, recipe.weight_decay, recipe.momentum) == (info.lr, info.weight_decay, info.momentum)
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_sgd_defaults_are_the_reference_recipe_the_configs_always_had() -> None:
    cfg = Recipe().optim_wrapper(35.0)
    assert cfg["optimizer"] == dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=5e-4)
    assert Recipe().config_imports == []  # SGD configs import nothing new (the published configs are unchanged)


def test_bad_recipe_values_name_the_flag() -> None:
    with pytest.raises(UserError, match=r"--optimizer: 'adam' is not a known optimizer .*sgd, sgdp"):
        Recipe("adam")
    with pytest.raises(UserError, match="--momentum: adamw has no momentum"):
        Recipe("adamw", momentum=0.9)
    with pytest.raises(UserError, match="--lr"):
        Recipe("sgd", lr=0)
    with pytest.raises(UserError, match="--weight-decay"):
        Recipe("sgd", weight_decay=-1e-4)
    with pytest.raises(UserError, match="--momentum"):
        Recipe("sam", momentum=1.0)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_mmengine_builds_every_recipe_from_its_config(name: str) -> None:
    import torch
    from mmengine.optim import build_optim_wrapper

    import scrfd_search.optimizers  # noqa: F401  (what the configs' custom_imports load)

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    recipe = Recipe(name, lr=0.003)
    wrapper = build_optim_wrapper(model, recipe.optim_wrapper(35.0))
    group = wrapper.optimizer.param_groups[0]
    assert group["lr"] == 0.003 and group["weight_decay"] == recipe.weight_decay
    expected = {"sgd": "SGD", "sgdp": "SGDP", "adamw": "AdamW", "adaboundw": "AdaBound", "sam": "SAM"}[name]
    assert expected in [c.__name__ for c in type(wrapper.optimizer).__mro__]
    assert type(wrapper).__name__ == ("SAMOptimWrapper" if name == "sam" else "OptimWrapper")
    if name == "adaboundw":
        assert group["weight_decouple"] is True and group["final_lr"] == 0.1
    if name == "sam":
        assert group["rho"] == 0.05 and type(wrapper.optimizer.base_optimizer).__name__ == "SGD"


def test_config_of_a_non_sgd_recipe_imports_the_registrations() -> None:
    data = DataSettings("d", "g")
    cfg = build_config(PUBLISHED["scrfd_500m"], data=data, schedule=Schedule.search(4, Recipe("sam")))
    assert "scrfd_search.optimizers" in cfg["custom_imports"]["imports"]
    assert cfg["optim_wrapper"]["type"] == "SAMOptimWrapper"
    plain = build_config(PUBLISHED["scrfd_500m"], data=data, schedule=Schedule.search(4, Recipe("adamw")))
    assert "scrfd_search.optimizers" not in plain["custom_imports"]["imports"]  # torch's AdamW


# ------------------------------------------------------------------ the recipe: section


def test_section_parses_samples_log_uniformly_and_is_seeded(tmp_path: Path) -> None:
    space = SearchSpace.load(space_with(tmp_path, SECTION))
    section = space.recipe
    assert section is not None and section.optimizers == ("sgd", "adaboundw")
    assert SearchSpace.from_dict(space.to_dict()).recipe == section  # round trip through experiment.json
    first, again = draw_recipes(section, 200, seed=4), draw_recipes(section, 200, seed=4)
    assert first == again and first != draw_recipes(section, 200, seed=5)
    assert {r.optimizer for r in first} == {"sgd", "adaboundw"}
    assert all(0.005 <= r.lr <= 0.02 and 1e-5 <= r.weight_decay <= 5e-4 for r in first)
    # log-uniform: about half the draws below the geometric mean of the range
    below = sum(r.lr < math.sqrt(0.005 * 0.02) for r in first)
    assert 70 <= below <= 130
    assert all(r.momentum == 0.9 for r in first if r.optimizer == "sgd")
    assert all(r.momentum is None for r in first if r.optimizer == "adaboundw")


def test_per_optimizer_ranges_and_defaults_for_what_is_not_searched() -> None:
    section = RecipeSpace.from_dict({"optimizer": ["sgd", "adamw"], "lr": {"adamw": [1e-4, 1e-3]}})
    recipes = draw_recipes(section, 50, seed=0)
    assert all(r.lr == OPTIMIZERS["sgd"].lr for r in recipes if r.optimizer == "sgd")
    assert all(1e-4 <= r.lr <= 1e-3 for r in recipes if r.optimizer == "adamw")
    assert all(r.weight_decay == OPTIMIZERS[r.optimizer].weight_decay for r in recipes)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"optimizer": ["sgd", "adam"]}, r"recipe.optimizer: 'adam' is not a known optimizer"),
        ({"optimizer": ["sgd"], "lr": [0.02, 0.005]}, r"recipe.lr: min 0.02 is above max 0.005"),
        ({"optimizer": ["sgd"], "momentum": [0.8, 0.9]}, r"recipe.momentum: unknown key"),
        ({"optimizer": ["sgd"], "lr": {"adamw": [1e-4, 1e-3]}}, r"recipe.lr.adamw: not one of this section's"),
        ({"optimizer": []}, r"recipe.optimizer: \[\] is not a non-empty list"),
        ({"optimizer": ["sgd"], "weight_decay": [0, 1e-4]}, r"recipe.weight_decay: min 0 must be positive"),
        ({"lr": [0.005, 0.02]}, r"recipe.optimizer: missing"),
    ],
)
def test_bad_sections_name_file_and_key(tmp_path: Path, section: dict, message: str) -> None:
    path = space_with(tmp_path, section)
    with pytest.raises(UserError, match=message) as info:
        SearchSpace.load(path)
    assert str(info.value).startswith(str(path))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo folder for launch's data check (the errors come before any training)."""
    root = tmp_path_factory.mktemp("recipe") / "demo"
    write_demo_dataset(root, DemoConfig(num_train=2, num_val=1, seed=0, min_width=64, max_width=96))
    return root


@pytest.mark.parametrize(
    ("section", "flags", "message"),
    [
        ({"optimizer": ["sgd", "adamw2"]}, [], "recipe.optimizer: 'adamw2' is not a known optimizer"),
        ({"optimizer": ["sgd"], "lr": [0.02, 0.005]}, [], "recipe.lr: min 0.02 is above max 0.005"),
        ({"optimizer": ["sgd"], "betas": [0.9, 0.99]}, [], "recipe.betas: unknown key"),
        (None, ["--optimizer", "adam"], "--optimizer: 'adam' is not a known optimizer"),
        (SECTION, ["--lr", "0.01"], "--lr: the recipe: section of"),
        ({"optimizer": ["sgd", "adamw"]}, ["--weight-decay", "1e-4"], "--weight-decay: ambiguous"),
    ],
)
def test_launch_refuses_a_bad_recipe_before_any_trial(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture, section, flags: list[str], message: str
) -> None:
    space = space_with(tmp_path, section) if section is not None else STEP1_SPACE
    argv = ["launch", "--space", str(space), "--data", str(tiny_data), "--name", "bad", "--trials", "4"]
    code = main([*argv, "--results-dir", str(tmp_path / "results"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("scrfd-search launch: error:") and message in err
    assert not (tmp_path / "results").exists()  # nothing written, no trial started


def test_recipe_only_needs_an_arch_and_a_section(tmp_path: Path, tiny_data: Path, capsys) -> None:
    base = ["launch", "--data", str(tiny_data), "--name", "r", "--results-dir", str(tmp_path / "results")]
    assert main([*base, "--space", str(STEP1_SPACE), "--recipe-only"]) == 2
    assert "--recipe-only: needs --arch" in capsys.readouterr().err
    arch = tmp_path / "arch.json"
    arch.write_text((REPO / "configs" / "scrfd" / "scrfd_500m.json").read_text())
    assert main([*base, "--space", str(STEP1_SPACE), "--recipe-only", "--arch", str(arch)]) == 2
    assert "no `recipe:` section" in capsys.readouterr().err
    only = tmp_path / "only.yaml"
    only.write_text(yaml.safe_dump({"name": "x", "recipe": SECTION}))
    assert load_recipe_section(only) == RecipeSpace.from_dict(SECTION)
    assert load_recipe_section(REPO / "search_spaces" / "recipes" / "optimizers.yaml").optimizers == OPTIMIZER_NAMES
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------ Optuna samples the recipe with the arch


def test_optuna_suggests_architecture_and_recipe_jointly_seeded_and_stored(tmp_path: Path) -> None:
    space = SearchSpace.load(space_with(tmp_path, SECTION))

    def searcher(name: str) -> BudgetedOptunaSearch:
        url = f"sqlite:///{tmp_path / name}.db"
        return BudgetedOptunaSearch(space, storage_url=url, study_name=name, seed=3, confirm=False,
                                    recipe_space=space.recipe, base_recipe=Recipe())  # fmt: skip

    a, b = searcher("a"), searcher("b")
    configs_a = [a.suggest(f"t{i}") for i in range(4)]
    assert configs_a == [b.suggest(f"t{i}") for i in range(4)]  # same seed, same architectures and recipes
    recipes = [Recipe.from_dict(c["recipe"]) for c in configs_a]
    assert all(r.optimizer in ("sgd", "adaboundw") and 0.005 <= r.lr <= 0.02 for r in recipes)
    study = optuna.load_study(study_name="a", storage=f"sqlite:///{tmp_path / 'a'}.db")
    for trial, recipe in zip(study.trials, recipes, strict=True):
        assert trial.params["optimizer"] == recipe.optimizer and trial.params["lr"] == pytest.approx(recipe.lr)


def test_recipe_only_optuna_keeps_the_architecture(tmp_path: Path) -> None:
    arch = PUBLISHED["scrfd_500m"]
    section = RecipeSpace.from_dict(SECTION)
    searcher = RecipeOptunaSearch(section, Candidate(arch, count_flops(arch)), base=Recipe(),
                                  storage_url=f"sqlite:///{tmp_path / 'r'}.db", study_name="r", seed=0)  # fmt: skip
    configs = [searcher.suggest(f"t{i}") for i in range(3)]
    assert all(c["arch"] == arch.to_dict() and c["flops"] == count_flops(arch).to_dict() for c in configs)
    assert len({json.dumps(c["recipe"], sort_keys=True) for c in configs}) == 3


# ------------------------------------------------------------------ status and export


def test_status_shows_each_trials_optimizer_and_lr(tmp_path: Path) -> None:
    space = SearchSpace.load(STEP1_SPACE)
    archs = [c.arch for c in sample_candidates(space, 2, 0, confirm=False)]
    recipes = [Recipe("adaboundw", lr=0.0123), Recipe("sgd", lr=0.007)]
    rows = [
        make_record(f"t{i}", a, space, h).updated(recipe=r.to_dict())
        for i, (a, r, h) in enumerate(zip(archs, recipes, (0.4, 0.5), strict=True))
    ]
    store = make_store(tmp_path, "rs", rows, recipe=Recipe().to_dict(), recipe_space=SECTION)
    text = status_text(store.read_experiment(), store.read_trials())
    assert "recipe: searched: optimizer sgd/adaboundw, lr 0.005-0.02 (log), weight decay 1e-05-0.0005 (log)" in text
    lines = text.splitlines()
    assert any("t1" in line and "sgd" in line and "0.007" in line for line in lines)
    assert any("t0" in line and "adaboundw" in line and "0.0123" in line for line in lines)


def test_export_takes_the_trials_recipe_unless_a_flag_overrides(tmp_path: Path) -> None:
    arch = PUBLISHED["scrfd_34g"]
    trained = ExportItem("", "x", arch, count_flops(arch), "test", recipe=Recipe("adamw", lr=4e-4).to_dict())
    assert export_recipe(trained) == Recipe("adamw", lr=4e-4)
    assert export_recipe(trained, {"weight_decay": 0.05}) == Recipe("adamw", lr=4e-4, weight_decay=0.05)
    assert export_recipe(trained, {"optimizer": "sgdp"}) == Recipe("sgdp", lr=0.02)  # the 34 GF reference lr
    plain = ExportItem("", "x", arch, count_flops(arch), "test")
    assert export_recipe(plain) == Recipe("sgd", lr=0.02)
    with pytest.raises(UserError, match="--momentum"):
        export_recipe(trained, {"momentum": 0.9})


def test_export_cli_writes_the_recipe_into_a_loadable_config(tmp_path: Path) -> None:
    from mmengine.config import Config

    rng = np.random.default_rng(0)
    arch = sample_candidates(SearchSpace.load(STEP1_SPACE), 1, int(rng.integers(100)), confirm=False)[0].arch
    (tmp_path / "a.json").write_text(arch.to_json())
    out = tmp_path / "out"
    argv = ["export", "--arch", str(tmp_path / "a.json"), "--out", str(out), "--optimizer", "sam", "--lr", "0.02"]
    assert main(argv) == 0
    cfg = Config.fromfile(str(out / "a.py"))
    assert cfg.optim_wrapper.type == "SAMOptimWrapper" and cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.optim_wrapper.optimizer.rho == 0.05 and "scrfd_search.optimizers" in cfg.custom_imports.imports
    assert json.loads((out / "export.json").read_text())["models"][0]["recipe"]["optimizer"] == "sam"
    assert "optimizer sam lr 0.02" in (out / "a.py").read_text().splitlines()[2]


# ------------------------------------------------------------------ step 2 inherits step 1's recipe


def test_step2_inherits_step1s_recipe_unless_its_yaml_has_one(tmp_path: Path) -> None:
    results = tmp_path / "results"
    make_store(results, "s1", [], trials=1, recipe_space=SECTION, momentum=0.85)
    settings = SearchSettings("s2", str(results), str(STEP2_SPACE), "d", 2, 1, from_experiment="s1")
    step2 = SearchSpace.load(STEP2_SPACE)
    inherited, section, source = inherited_recipe(settings, step2)
    assert section == RecipeSpace.from_dict(SECTION) and source == "s1" and inherited.momentum == 0.85
    given = SearchSettings("s2", str(results), str(STEP2_SPACE), "d", 2, 1, from_experiment="s1", momentum=0.95)
    assert inherited_recipe(given, step2)[0].momentum == 0.95  # a flag of this launch wins
    own = {"optimizer": ["adamw"]}
    data = yaml.safe_load(STEP2_SPACE.read_text())
    (tmp_path / "own.yaml").write_text(yaml.safe_dump({**data, "recipe": own}))
    settings_own = SearchSettings("s2", str(results), str(tmp_path / "own.yaml"), "d", 2, 1, from_experiment="s1")
    _, section, source = inherited_recipe(settings_own, SearchSpace.load(tmp_path / "own.yaml"))
    assert section == RecipeSpace.from_dict(own) and source is None
