"""A search validated before anything is written: settings, space, step-2 constraint, recipe, candidates."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from scrfd_search.builders import build_model
from scrfd_search.errors import UserError
from scrfd_search.flops.measure import measure_flops
from scrfd_search.io_utils import check_writable
from scrfd_search.recipe import Recipe, RecipeSpace, draw_recipes
from scrfd_search.sampling.sampler import Candidate, sample_candidates
from scrfd_search.search.checks import (
    check_address_reachable,
    check_data_contents,
    check_data_root,
    check_trial_resources,
    default_max_concurrent,
    local_cpus,
    local_gpus,
)
from scrfd_search.search.constraint import DEFAULT_TOP_K, ShareConstraint, constraint_from_store
from scrfd_search.search.costs import check_objectives
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.store import ExperimentStore, store_path
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import DEFAULT_INPUT_SHAPE, SearchSpace, load_recipe_section


@dataclass(frozen=True)
class PreparedSearch:
    """Everything a search needs, validated before anything is written or any trial starts."""

    settings: SearchSettings
    space: SearchSpace | None  # None for a recipe-only search
    constraint: ShareConstraint | None
    candidates: list[Any] | None  # the sampler's Candidates (random searcher only)
    recipe_space: RecipeSpace | None = None
    recipe_from: str | None = None  # the step-1 search whose recipe settings a step-2 search inherited
    arch: ArchSpec | None = None  # the fixed architecture of a recipe-only search
    recipes: list[Recipe] | None = None  # one per candidate (random searcher with a recipe section)

    @property
    def base_recipe(self) -> Recipe:
        """The recipe of every trial (no section), or what the section leaves to the launch flags."""
        only = self.recipe_space.optimizers[0] if self.recipe_space and len(self.recipe_space.optimizers) == 1 else None
        return self.settings.recipe(only)

    @property
    def input_shape(self) -> tuple[int, int]:
        """(H, W) at which FLOPs are counted."""
        return self.space.input_shape if self.space is not None else DEFAULT_INPUT_SHAPE


def prepare(settings: SearchSettings) -> PreparedSearch:
    """Check the name, data, space (and recipe), step-2 source and local resources (candidates are drawn later)."""
    store = ExperimentStore(settings.path)
    if store.exists():
        raise UserError(
            f"--name {settings.name}: {settings.path} already holds a search "
            f"(continue it with `scrfd-search resume {settings.name}` or pick another name)"
        )
    check_writable(settings.results_dir, "--results-dir")
    check_data_root(settings.data_root)
    check_data_contents(settings.data_root)
    if settings.recipe_only:
        arch = ArchSpec.load(settings.arch_file)  # type: ignore[arg-type]
        recipe_space = load_recipe_section(settings.space_file)
        check_recipe_flags(settings, recipe_space, settings.space_file)
        prepared = PreparedSearch(settings, None, None, None, recipe_space, None, arch)
    else:
        space = SearchSpace.load(settings.space_file)
        check_objectives(settings.objective_list, space, settings.objectives)
        constraint = step_constraint(settings, space)
        settings, recipe_space, recipe_from = inherited_recipe(settings, space)
        check_recipe_flags(settings, recipe_space, recipe_from or settings.space_file)
        prepared = PreparedSearch(settings, space, constraint, None, recipe_space, recipe_from)
    if settings.address is not None:
        check_address_reachable(settings.address)
    return replace(prepared, settings=with_resources_checked(settings))


RECIPE_FLAGS = (("optimizer", "--optimizer"), ("lr", "--lr"), ("weight_decay", "--weight-decay"))


def inherited_recipe(
    settings: SearchSettings, space: SearchSpace
) -> tuple[SearchSettings, RecipeSpace | None, str | None]:
    """A step-2 search without its own `recipe:` section takes step 1's section and recipe flags.

    Flags given to this launch still win over step 1's; a section in this search's YAML replaces all of step 1's.
    """
    if space.recipe is not None or settings.from_experiment is None:
        return settings, space.recipe, None
    source = ExperimentStore(store_path(settings.from_experiment, settings.results_dir))
    step1 = source.read_experiment()
    section = step1.recipe_space
    recipe_space = RecipeSpace.from_dict(section, f"{source.experiment_file}: recipe_space") if section else None
    flags = {k: getattr(step1.settings, k, None) for k in ("optimizer", "lr", "weight_decay", "momentum")}
    inherited = {k: v for k, v in flags.items() if v is not None and getattr(settings, k) is None}
    if not inherited and recipe_space is None:
        return settings, None, None
    return replace(settings, **inherited), recipe_space, settings.from_experiment


def check_recipe_flags(settings: SearchSettings, recipe_space: RecipeSpace | None, where: str) -> None:
    """Refuse a launch flag that the `recipe:` section also sets (one of the two would be ignored)."""
    if recipe_space is None:
        return
    searched = {"optimizer": True, "lr": bool(recipe_space.lr), "weight_decay": bool(recipe_space.weight_decay)}
    for key, flag in RECIPE_FLAGS:
        if getattr(settings, key) is None:
            continue
        if searched[key]:
            raise UserError(f"{flag}: the recipe: section of {where} sets {key} (drop the flag or the key)")
        if len(recipe_space.optimizers) > 1:
            raise UserError(
                f"{flag}: ambiguous with several optimizers in the recipe: section of {where} "
                f"(give {key} there, per optimizer)"
            )


def step_constraint(settings: SearchSettings, space: SearchSpace) -> ShareConstraint | None:
    """The step-2 share constraint derived from --from, or None for a step-1 search."""
    if settings.from_experiment is None:
        if space.step == 2:
            raise UserError(
                f"--space {settings.space_file}: a step-2 space needs --from STEP1_NAME "
                "(the step-1 search whose best backbones constrain this one)"
            )
        return None
    if space.step != 2:
        raise UserError(f"--from: given with {settings.space_file}, a step-{space.step} space (expected step 2)")
    source = ExperimentStore(store_path(settings.from_experiment, settings.results_dir))
    if not source.exists():
        raise UserError(f"--from {settings.from_experiment}: no experiment at {source.path}")
    top_k = settings.top_k if settings.top_k is not None else DEFAULT_TOP_K
    return constraint_from_store(source, settings.from_experiment, top_k, settings.seed)


def with_resources_checked(settings: SearchSettings) -> SearchSettings:
    """Check one trial fits the local machine and fill in defaults (a cluster is checked after joining)."""
    if settings.address is not None:
        return settings
    return resolved_resources(settings, local_cpus(), local_gpus(), local_cpus(), local_gpus())


def resolved_resources(
    settings: SearchSettings, node_cpus: float, node_gpus: float, total_cpus: float, total_gpus: float
) -> SearchSettings:
    """Default GPUs per trial and concurrency from what is there, after checking one trial fits a node."""
    settings = settings.with_resources(node_gpus)
    check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial or 0.0, node_cpus, node_gpus)
    fits = default_max_concurrent(total_cpus, total_gpus, settings.cpus_per_trial, settings.gpus_per_trial or 0.0)
    return settings.with_resources(node_gpus, min(fits, settings.trials))


def draw_candidates(
    settings: SearchSettings, space: SearchSpace, constraint: ShareConstraint | None, progress: Any
) -> list[Any] | None:
    """The N candidates of a random search; for Optuna, a one-candidate check that the budget is feasible."""
    accept = constraint.accept_fn if constraint is not None else None
    # few uniform draws meet the share ranges: the sampler draws among those that do (see sample_candidates)
    shares = constraint.ranges if constraint is not None else None
    if settings.searcher == "random":
        return sample_candidates(space, settings.trials, settings.seed, accept=accept, shares=shares, progress=progress)
    sample_candidates(space, 1, settings.seed, accept=accept, shares=shares, confirm=False)
    return None


def with_candidates(prepared: PreparedSearch, progress: Any) -> PreparedSearch:
    """Draw what a search hands out before it starts: candidates (random searcher) and their recipes.

    Recipes come from a random stream of their own (recipe.draw_recipes), so a search with a `recipe:`
    section trains the same architectures as the same search without it. A recipe-only search repeats
    its one architecture (FLOPs measured once by fvcore) with each recipe.
    """
    s = prepared.settings
    if prepared.arch is not None:
        one = fixed_candidate(prepared.arch, prepared.input_shape)
        candidates: list[Any] | None = [one] * s.trials if s.searcher == "random" else [one]
    else:
        candidates = draw_candidates(s, prepared.space, prepared.constraint, progress)  # type: ignore[arg-type]
    recipes = None
    if prepared.recipe_space is not None and s.searcher == "random":
        recipes = draw_recipes(prepared.recipe_space, s.trials, s.seed, prepared.base_recipe)
    return replace(prepared, candidates=candidates, recipes=recipes)


def fixed_candidate(arch: ArchSpec, input_shape: tuple[int, int]) -> Candidate:
    """A recipe-only search's one architecture as a sampler Candidate, its FLOPs measured by fvcore."""
    return Candidate(arch, measure_flops(build_model(arch, init_weights=False), input_shape))


def experiment_record(prepared: PreparedSearch) -> ExperimentRecord:
    """What experiment.json holds: the settings, the space, budget, constraint and recipe (no store paths)."""
    s, space = prepared.settings, prepared.space
    recipe = dict(
        recipe=prepared.base_recipe.to_dict(),
        recipe_space=prepared.recipe_space.to_dict() if prepared.recipe_space else None,
        recipe_from=prepared.recipe_from,
        input_shape=tuple(prepared.input_shape),
    )
    if space is None:  # recipe-only
        arch = prepared.arch.to_dict() if prepared.arch else None
        return ExperimentRecord.for_launch(s, None, None, None, None, None, arch=arch, **recipe)
    constraint = prepared.constraint.to_dict() if prepared.constraint else None
    return ExperimentRecord.for_launch(
        s, space.to_dict(), space.step, space.budget_gflops, space.tolerance, constraint, **recipe
    )
