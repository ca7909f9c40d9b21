"""The two ways trials get their architecture: a fixed list of sampled candidates, or Optuna's TPE.

`random` (the paper's search): the driver draws N distinct in-budget candidates with
sample_candidates(space, N, seed) and CandidateSearcher hands trial i candidate i.

`optuna`: TPE over the same ranges (space.suggest_arch, define-by-run), kept inside the budget:
for each new trial a scratch in-memory study holding a copy of the stored study's trials is asked
repeatedly (seeded, at most `max_draws` draws). A proposal whose backbone breaks the step-2 share
constraint is dropped; otherwise its neck and head are moved to the nearest setting that puts the
detector inside the budget (budget_fit; in step 1 they are fixed, so this is a plain check) and
architectures already tried are skipped. fvcore then confirms the FLOPs and the stored study
(SQLite, results/NAME/optuna.db) gets exactly that point, enqueued, so it holds only trained
trials (optuna-dashboard shows the search as it ran) and TPE learns from every one of them.
Ray's OptunaSearch does the rest (a report per validation, completion, save/restore).

With a `recipe:` section the recipe travels with the architecture: random trials get recipe i of
recipe.draw_recipes (its own seeded stream), and TPE proposes optimizer, lr and weight decay in the
same proposal as the architecture. A recipe-only search (RecipeOptunaSearch) asks TPE for recipes alone.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from scrfd_search.builders import build_model
from scrfd_search.errors import UserError
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.measure import measure_flops
from scrfd_search.flops.report import FlopsReport
from scrfd_search.latency.budget import space_latency
from scrfd_search.recipe import Recipe, RecipeSpace
from scrfd_search.sampling.budget_fit import fit_neck_head
from scrfd_search.search.constraint import ShareConstraint
from scrfd_search.search.objectives import HARD, Objective, is_multi, reported_costs
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

METRIC = "hard"
MODE = "max"
DEFAULT_MAX_DRAWS = 20000
SCRATCH_DRAWS = 200


def candidate_key(index: int) -> str:
    """The stable trial key (leaderboard row id and work folder name) of candidate `index`."""
    return f"c{index:04d}"


def optuna_key(number: int) -> str:
    """The stable trial key of Optuna study trial `number`."""
    return f"o{number:04d}"


def candidate_configs(candidates: list[Any], recipes: list[Recipe] | None = None) -> list[dict[str, Any]]:
    """Trial configs for sampler Candidates: key, index, arch, confirmed FLOPs (and recipe i, if given)."""
    configs = [
        {"trial_key": candidate_key(i), "candidate": i, "arch": c.arch.to_dict(), "flops": c.flops.to_dict()}
        for i, c in enumerate(candidates)
    ]
    for config, recipe in zip(configs, recipes or [], strict=False):
        config["recipe"] = recipe.to_dict()
    return configs


class CandidateSearcher(Searcher):
    """Hands out a fixed list of configs in order, one per trial, then reports the search finished."""

    def __init__(self, configs: list[dict[str, Any]], metric: str = METRIC, mode: str = MODE) -> None:
        super().__init__(metric=metric, mode=mode)
        self.configs = list(configs)
        self.next_index = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next candidate's config, or FINISHED when every candidate has a trial."""
        if self.next_index >= len(self.configs):
            return Searcher.FINISHED
        config = dict(self.configs[self.next_index])
        self.next_index += 1
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: the candidates were fixed before the search began."""

    def save(self, checkpoint_path: str) -> None:
        """Remember how many candidates were handed out (for resume)."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"configs": self.configs, "next_index": self.next_index}, f)

    def restore(self, checkpoint_path: str) -> None:
        """Continue after the last candidate handed out."""
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.configs, self.next_index = state["configs"], state["next_index"]


@dataclass(frozen=True)
class ArchSuggester:
    """The define-by-run function: asks an Optuna trial for an ArchSpec (and a recipe) over the space's ranges."""

    space: SearchSpace
    recipe_space: RecipeSpace | None = None
    base_recipe: Recipe | None = None

    def __call__(self, trial: Any) -> dict[str, Any]:
        """Suggest every free field and return the ArchSpec (as a dict, with the recipe) for the trial config."""
        config: dict[str, Any] = {"arch": self.space.suggest_arch(trial).to_dict()}
        if self.recipe_space is not None:
            config["recipe"] = self.recipe_space.suggest(trial, self.base_recipe).to_dict()
        return config


@dataclass(frozen=True)
class RecipeSuggester:
    """The define-by-run function of a recipe-only search: one architecture, a recipe per trial."""

    recipe_space: RecipeSpace
    arch: dict[str, Any]
    base_recipe: Recipe | None = None

    def __call__(self, trial: Any) -> dict[str, Any]:
        """The fixed architecture and a suggested recipe."""
        return {"arch": dict(self.arch), "recipe": self.recipe_space.suggest(trial, self.base_recipe).to_dict()}


class RecipeOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch (TPE, seeded, SQLite study) over the recipe only, for a fixed architecture."""

    def __init__(
        self, recipe_space: RecipeSpace, candidate: Any, *, base: Recipe, storage_url: str, study_name: str, seed: int
    ) -> None:
        super().__init__(
            space=RecipeSuggester(recipe_space, candidate.arch.to_dict(), base),
            metric=METRIC,
            mode=MODE,
            sampler=optuna.samplers.TPESampler(seed=seed),
            study_name=study_name,
            storage=optuna.storages.RDBStorage(storage_url),
        )
        self.flops = candidate.flops.to_dict()

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """OptunaSearch's suggestion with the architecture's FLOPs and the study's trial number."""
        config = super().suggest(trial_id)
        if isinstance(config, dict) and trial_id in self._ot_trials:
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            config["flops"] = dict(self.flops)
            config["optuna_number"] = ot_trial.number
        return config


def _in_budget(space: SearchSpace, flops: FlopsReport, constraint: ShareConstraint | None) -> bool:
    """Whether a FLOPs report meets the budget window and, in step 2, the share constraint."""
    low, high = space.budget_range()
    return low <= flops.total_gflops <= high and (constraint is None or constraint.accepts(flops))


def metric_and_mode(objectives: tuple[Objective, ...]) -> tuple[str | list[str], str | list[str]]:
    """OptunaSearch's metric and mode: hard AP alone, or a list per objective (a multi-objective study)."""
    if not is_multi(objectives):
        return METRIC, MODE
    return [o.metric for o in objectives], [o.mode for o in objectives]


def study_directions(objectives: tuple[Objective, ...]) -> list[str]:
    """Optuna's direction per objective."""
    return ["maximize" if o.mode == "max" else "minimize" for o in objectives]


class BudgetedOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch (TPE, seeded, SQLite study) whose suggestions all lie inside the budget.

    With several objectives (hard AP and predicted latency or GFLOPs) the study is multi-objective:
    Optuna's TPE then proposes from the non-dominated trials (MOTPE), and every trial tells the study
    its hard AP and its cost.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        storage_url: str,
        study_name: str,
        seed: int,
        constraint: ShareConstraint | None = None,
        max_draws: int = DEFAULT_MAX_DRAWS,
        confirm: bool = True,
        replay: list[dict[str, Any]] | None = None,
        recipe_space: RecipeSpace | None = None,
        base_recipe: Recipe | None = None,
        objectives: tuple[Objective, ...] = (HARD,),
    ) -> None:
        metric, mode = metric_and_mode(objectives)
        super().__init__(
            space=ArchSuggester(space, recipe_space, base_recipe),
            metric=metric,
            mode=mode,
            sampler=optuna.samplers.TPESampler(seed=seed),
            study_name=study_name,
            storage=optuna.storages.RDBStorage(storage_url),
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one scratch study per trial: no log line each
        self.search_space = space
        self.recipe_space = recipe_space
        self.base_recipe = base_recipe
        self.constraint = constraint
        self.draw_seed = seed
        self.max_draws = max_draws
        self.confirm = confirm
        self.objectives = objectives
        self.latency = space_latency(space)  # the space's table (and max_latency_ms), if it names one
        self.costs: dict[str, dict[str, float]] = {}  # per Ray trial id: what it is told to Optuna beside its AP
        # trials a killed driver left unfinished: handed out again first, with their study numbers
        self.replay = list(replay or [])
        self.replayed: dict[str, int] = {}
        self._fail_orphans({int(c["optuna_number"]) for c in self.replay})

    def _fail_orphans(self, keep: set[int]) -> None:
        """Mark study trials a killed driver left RUNNING, and that nothing will resume, as FAIL."""
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number not in keep:
                self._ot_study.tell(t.number, state=TrialState.FAIL)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Enqueue a feasible point in the stored study, then let OptunaSearch ask for it."""
        if self.replay:
            config = dict(self.replay.pop(0))
            self.replayed[trial_id] = int(config["optuna_number"])
            self.costs[trial_id] = reported_costs(config)
            return config
        if trial_id in self._ot_trials:
            return super().suggest(trial_id)
        params, flops = self._feasible_point()
        self._ot_study.enqueue_trial(params)
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        ot_trial.set_user_attr("gflops", flops.total_gflops)
        config["flops"] = flops.to_dict()
        if self.latency is not None:  # every trial of a space with a table records its predicted latency
            config["latency_ms"] = self.latency.table.predict_ms(ArchSpec.from_dict(config["arch"], "trial config"))
            ot_trial.set_user_attr("latency_ms", config["latency_ms"])
        config["optuna_number"] = ot_trial.number
        config["trial_key"] = optuna_key(ot_trial.number)
        self.costs[trial_id] = reported_costs(config)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results of replayed trials are not Optuna's to see (their study trial is told at the end)."""
        if trial_id not in self.replayed:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record errored trials as FAIL in the study (OptunaSearch would keep their last AP as COMPLETE)."""
        costs = self.costs.pop(trial_id, {})  # the trial reports them too; kept here for a result that lacks them
        result = None if error or not result else {**costs, **result}
        if trial_id in self.replayed:
            number = self.replayed.pop(trial_id)
            values = self._values(result)
            try:
                if values is None:
                    self._ot_study.tell(number, state=TrialState.FAIL)
                else:
                    self._ot_study.tell(number, values if is_multi(self.objectives) else values[0])
            except (ValueError, RuntimeError):
                pass  # told already (the driver died after telling the study, before recording the row)
            return
        super().on_trial_complete(trial_id, result, error)

    def _values(self, result: dict | None) -> list[float] | None:
        """The objective values of a finished trial's result (None when one is missing)."""
        if not result or any(o.metric not in result for o in self.objectives):
            return None
        return [float(result[o.metric]) for o in self.objectives]

    def _feasible_point(self) -> tuple[dict[str, Any], FlopsReport]:
        """Ask a scratch copy of the study until TPE proposes a new architecture that fits the budget."""
        space = self.search_space
        history = [t for t in self._ot_study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
        taken = {self._arch_of(t.params).key() for t in history}
        scratch = None
        for draw in range(self.max_draws):
            if draw % SCRATCH_DRAWS == 0:
                # a fresh copy now and then: every draw adds a trial, and TPE's cost grows with them
                scratch = self._scratch_study(history, draw // SCRATCH_DRAWS)
            proposal = scratch.ask()
            arch = space.suggest_arch(proposal)
            if self.recipe_space is not None:  # TPE proposes the recipe with the architecture
                self.recipe_space.suggest(proposal, self.base_recipe)
            scratch.tell(proposal, state=TrialState.FAIL)
            if self.constraint is not None and not self.constraint.accepts(count_flops(arch, space.input_shape)):
                continue  # the backbone shares do not depend on the neck and head
            fitted = fit_neck_head(space, arch, lambda f: _in_budget(space, f, self.constraint), taken)
            if fitted is None:
                continue
            arch = fitted[0]
            if self.latency is not None and not self.latency.fits(arch):
                continue
            taken.add(arch.key())
            flops = self._confirmed(arch)
            if _in_budget(space, flops, self.constraint):
                return self._params_of(proposal.params, arch), flops
        ceiling = f"; {self.latency.shortfall()}" if self.latency is not None and self.latency.max_ms else ""
        raise UserError(
            f"{space.source}: TPE proposed no new architecture inside the budget in "
            f"{self.max_draws} draws; widen the tolerance or use --searcher random{ceiling}"
        )

    def _scratch_study(self, history: list[optuna.trial.FrozenTrial], block: int) -> optuna.Study:
        """An in-memory study holding the stored trials, with its own seeded TPE sampler."""
        seed = (self.draw_seed * 1_000_003 + len(history) * 1_009 + block) % 2**32
        sampler = optuna.samplers.TPESampler(seed=seed)
        scratch = optuna.create_study(directions=study_directions(self.objectives), sampler=sampler)
        scratch.add_trials(history)
        return scratch

    def _params_of(self, proposed: dict[str, Any], arch: ArchSpec) -> dict[str, Any]:
        """TPE's parameters with the neck/head values the budget fit chose."""
        params = dict(proposed)
        for name, value in (
            ("neck_channels", arch.neck.channels),
            ("head_num_convs", arch.head.num_convs),
            ("head_width", arch.head.width),
        ):
            if name in params:
                params[name] = value
        if self._arch_of(params) != arch:
            raise RuntimeError(f"Optuna parameters {params} do not rebuild {arch.key()} (parameter names changed?)")
        return params

    def _arch_of(self, params: dict[str, Any]) -> ArchSpec:
        """The architecture a set of stored Optuna parameters stands for."""
        return self.search_space.suggest_arch(optuna.trial.FixedTrial(params))

    def _confirmed(self, arch: ArchSpec) -> FlopsReport:
        """FLOPs measured by fvcore on the built detector (or the closed form when confirm is off)."""
        if not self.confirm:
            return count_flops(arch, self.search_space.input_shape)
        return measure_flops(build_model(arch, init_weights=False), self.search_space.input_shape)
