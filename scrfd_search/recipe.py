"""The training recipe as data: which optimiser, its learning rate, weight decay and momentum.

`Recipe` is what one training run uses (every field resolved: what is not given takes the
optimiser's published default from `OPTIMIZERS`); `RecipeSpace` is the optional `recipe:` section of
a search-space YAML, sampled jointly with the architecture. Both are plain data: the optimisers
themselves come from torch and the `pytorch-optimizer` package and are registered with mmengine in
`scrfd_search.optimizers`, which the configs written from a Recipe import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from scrfd_search.errors import UserError

RECIPE_KEYS = ("optimizer", "lr", "weight_decay")  # what a `recipe:` section may search
RECIPE_STREAM = 0x5EC1  # the recipe draws' own random stream: the architectures drawn stay as without a recipe
REGISTRY_MODULE = "scrfd_search.optimizers"  # registers SGDP, AdaBound, SAM and SAMOptimWrapper with mmengine
TORCH_TYPES = ("SGD", "AdamW")  # registered by mmengine itself: configs using only these need no extra import


class RecipeSpaceError(UserError, ValueError):
    """A `recipe:` section that cannot be used."""


@dataclass(frozen=True)
class OptimizerInfo:
    """One optimiser: its mmengine type, published defaults, fixed hyper-parameters and where they come from."""

    mm_type: str
    lr: float
    weight_decay: float
    momentum: float | None  # None: the optimiser has no momentum setting (Adam family: betas)
    options: tuple[tuple[str, Any], ...] = ()
    wrapper: str = "OptimWrapper"
    source: str = ""


# SGD's numbers are the SCRFD reference's (insightface configs: lr 0.01 for 8 images x 4 GPUs, momentum
# 0.9, weight decay 5e-4); SGDP and SAM are drop-in replacements of that SGD and keep its numbers, adding
# only their own published settings. AdamW and AdaBoundW have their own published learning rates.
OPTIMIZERS: dict[str, OptimizerInfo] = {
    "sgd": OptimizerInfo("SGD", lr=0.01, weight_decay=5e-4, momentum=0.9, source="SCRFD reference (insightface)"),
    "sgdp": OptimizerInfo(
        "SGDP",
        lr=0.01,
        weight_decay=5e-4,
        momentum=0.9,
        options=(("nesterov", True), ("delta", 0.1), ("wd_ratio", 0.1)),
        source="Heo et al., AdamP/SGDP (ICLR 2021): nesterov, delta 0.1, wd_ratio 0.1; SGD's lr and decay",
    ),
    "adamw": OptimizerInfo(
        "AdamW",
        lr=1e-3,
        weight_decay=1e-2,
        momentum=None,
        options=(("betas", (0.9, 0.999)), ("eps", 1e-8)),
        source="Loshchilov & Hutter, AdamW (ICLR 2019), as torch.optim.AdamW",
    ),
    "adaboundw": OptimizerInfo(
        "AdaBound",
        lr=1e-3,
        # AdaBound's published decay is 0, which would make the "W" a no-op; 1e-2 is AdamW's decoupled
        # value (the same lr-scaled decoupled form here: p <- p * (1 - lr * wd)).
        weight_decay=1e-2,
        momentum=None,
        options=(("final_lr", 0.1), ("gamma", 1e-3), ("betas", (0.9, 0.999)), ("eps", 1e-8), ("weight_decouple", True)),
        source="Luo et al., AdaBound (ICLR 2019): final_lr 0.1, gamma 1e-3; decoupled weight decay",
    ),
    "sam": OptimizerInfo(
        "SAM",
        lr=0.01,
        weight_decay=5e-4,
        momentum=0.9,
        options=(("base_optimizer", "SGD"), ("rho", 0.05), ("adaptive", False)),
        wrapper="SAMOptimWrapper",
        source="Foret et al., SAM (ICLR 2021): rho 0.05 around SGD with the reference's numbers",
    ),
}
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
DEFAULT_OPTIMIZER = "sgd"  # the reference's


def check_optimizer(name: Any, where: str = "--optimizer") -> str:
    """The name when it is a known optimiser, else a UserError listing the known ones."""
    if name not in OPTIMIZERS:
        raise UserError(f"{where}: {name!r} is not a known optimizer (expected one of {', '.join(OPTIMIZER_NAMES)})")
    return str(name)


def _number(value: Any, where: str, *, positive: bool) -> float:
    """A finite number (> 0 when positive, else >= 0), or a UserError naming where."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{where}: {value!r} is not a number")
    if value < 0 or (positive and value == 0):
        raise UserError(f"{where}: {value!r} must be {'positive' if positive else 'zero or positive'}")
    return float(value)


@dataclass(frozen=True)
class Recipe:
    """The optimiser of one training run; fields left None take the optimiser's published default.

    `lr` is the learning rate for the schedule's base batch (see detector.Schedule.base_batch_size).
    After construction every field is set (momentum stays None for optimisers without one).
    """

    optimizer: str = DEFAULT_OPTIMIZER
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None

    def __post_init__(self) -> None:
        """Check the values and fill in the defaults of the optimiser."""
        info = OPTIMIZERS[check_optimizer(self.optimizer)]
        lr = info.lr if self.lr is None else _number(self.lr, "--lr", positive=True)
        wd = (
            info.weight_decay
            if self.weight_decay is None
            else _number(self.weight_decay, "--weight-decay", positive=False)
        )
        momentum = self.momentum
        if momentum is not None and info.momentum is None:
            raise UserError(f"--momentum: {self.optimizer} has no momentum setting (it applies to sgd, sgdp and sam)")
        if info.momentum is not None:
            momentum = info.momentum if momentum is None else _number(momentum, "--momentum", positive=False)
            if momentum >= 1:
                raise UserError(f"--momentum: {momentum!r} must be below 1")
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "weight_decay", wd)
        object.__setattr__(self, "momentum", momentum)

    @property
    def info(self) -> OptimizerInfo:
        """The optimiser's table entry."""
        return OPTIMIZERS[self.optimizer]

    @property
    def config_imports(self) -> list[str]:
        """What a config using this recipe must import (custom_imports) for its optimiser types."""
        return [] if self.info.mm_type in TORCH_TYPES else [REGISTRY_MODULE]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (the store, trial configs)."""
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe") -> Recipe:
        """Inverse of to_dict (missing fields take the defaults)."""
        if not isinstance(data, dict) or set(data) - {"optimizer", "lr", "weight_decay", "momentum"}:
            raise UserError(f"{source}: expected a mapping of optimizer, lr, weight_decay, momentum, got {data!r}")
        return cls(**data)

    def describe(self) -> str:
        """One line: 'adamw lr 0.001 weight decay 0.01' (momentum when the optimiser has one)."""
        text = f"{self.optimizer} lr {self.lr:g} weight decay {self.weight_decay:g}"
        return text + (f" momentum {self.momentum:g}" if self.momentum is not None else "")

    def optim_wrapper(self, clip_norm: float) -> dict[str, Any]:
        """The mmengine `optim_wrapper=` config of this recipe (types registered by REGISTRY_MODULE)."""
        info = self.info
        optimizer: dict[str, Any] = dict(type=info.mm_type, lr=self.lr, weight_decay=self.weight_decay)
        if self.momentum is not None:
            optimizer["momentum"] = self.momentum
        optimizer.update(info.options)
        return dict(type=info.wrapper, optimizer=optimizer, clip_grad=dict(max_norm=clip_norm, norm_type=2))


# ------------------------------------------------------------------ the `recipe:` section of a search space


@dataclass(frozen=True)
class LogRange:
    """Numbers from low to high (inclusive) drawn log-uniformly; low == high is a fixed value."""

    low: float
    high: float

    @property
    def fixed(self) -> bool:
        """Whether the range holds a single value."""
        return self.low == self.high

    def draw(self, rng: np.random.Generator) -> float:
        """One value, log-uniformly."""
        if self.fixed:
            return self.low
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def suggest(self, trial: Any, name: str) -> float:
        """Ask an Optuna trial for a value (log scale); a fixed range asks nothing."""
        return self.low if self.fixed else float(trial.suggest_float(name, self.low, self.high, log=True))

    def to_yaml(self) -> Any:
        """A fixed range as its value, else [low, high]."""
        return self.low if self.fixed else [self.low, self.high]


# Per-optimiser ranges: a shared range is stored under every optimiser of the section.
Ranges = tuple[tuple[str, LogRange], ...]


@dataclass(frozen=True)
class RecipeSpace:
    """The `recipe:` section: optimiser choices and log-uniform lr / weight-decay ranges (shared or per optimiser)."""

    optimizers: tuple[str, ...]
    lr: Ranges = ()
    weight_decay: Ranges = ()
    shared: tuple[str, ...] = ()  # the keys given as one range for every optimiser (shapes Optuna's names)
    source: str = field(default="<recipe>", compare=False)

    def _range(self, which: str, optimizer: str) -> LogRange | None:
        """The lr or weight_decay range of an optimiser (None: not searched for it)."""
        return dict(getattr(self, which)).get(optimizer)

    def sample(self, rng: np.random.Generator, base: Recipe | None = None) -> Recipe:
        """One recipe: an optimiser uniformly, then its lr and weight decay log-uniformly.

        What the section does not search comes from `base` (the launch's --lr/--weight-decay/--momentum)
        when base uses the same optimiser's settings, else from the optimiser's defaults.
        """
        optimizer = self.optimizers[int(rng.integers(len(self.optimizers)))]
        values = {}
        for which in ("lr", "weight_decay"):
            r = self._range(which, optimizer)
            values[which] = r.draw(rng) if r is not None else None
        return self._recipe(optimizer, values, base)

    def suggest(self, trial: Any, base: Recipe | None = None) -> Recipe:
        """Ask an Optuna trial (define-by-run) for a recipe over the same choices and ranges."""
        if len(self.optimizers) == 1:
            optimizer = self.optimizers[0]
        else:
            optimizer = trial.suggest_categorical("optimizer", list(self.optimizers))
        values = {}
        for which in ("lr", "weight_decay"):
            r = self._range(which, optimizer)
            name = which if which in self.shared else f"{which}_{optimizer}"
            values[which] = r.suggest(trial, name) if r is not None else None
        return self._recipe(optimizer, values, base)

    def _recipe(self, optimizer: str, values: dict[str, float | None], base: Recipe | None) -> Recipe:
        """The Recipe of a draw, the rest from `base` flags that apply to the drawn optimiser."""
        fixed = base_flags(base, optimizer)
        return Recipe(
            optimizer,
            lr=values["lr"] if values["lr"] is not None else fixed.get("lr"),
            weight_decay=values["weight_decay"] if values["weight_decay"] is not None else fixed.get("weight_decay"),
            momentum=fixed.get("momentum") if OPTIMIZERS[optimizer].momentum is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what `from_dict` reads)."""
        out: dict[str, Any] = {"optimizer": list(self.optimizers)}
        for which in ("lr", "weight_decay"):
            ranges = getattr(self, which)
            if not ranges:
                continue
            if which in self.shared:
                out[which] = ranges[0][1].to_yaml()
            else:
                out[which] = {name: r.to_yaml() for name, r in ranges}
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "<recipe>") -> RecipeSpace:
        """Validate a parsed `recipe:` section, naming the file and key on any problem."""
        return _RecipeParser(source).parse(data)


def base_flags(base: Recipe | None, optimizer: str) -> dict[str, float | None]:
    """The explicit values of a launch recipe that carry over to another optimiser (lr/decay: same optimiser only)."""
    if base is None:
        return {}
    out: dict[str, float | None] = {}
    if base.optimizer == optimizer:
        out.update(lr=base.lr, weight_decay=base.weight_decay)
    if base.momentum is not None and OPTIMIZERS[optimizer].momentum is not None:
        out["momentum"] = base.momentum
    return out


def draw_recipes(space: RecipeSpace, n: int, seed: int, base: Recipe | None = None) -> list[Recipe]:
    """n recipes drawn from space with a stream of their own, so the same seed gives the same recipes."""
    rng = np.random.default_rng([RECIPE_STREAM, seed])
    return [space.sample(rng, base) for _ in range(n)]


class _RecipeParser:
    """Turns a parsed `recipe:` mapping into a RecipeSpace, with one clear message per problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> RecipeSpaceError:
        """An error naming the file and the key."""
        return RecipeSpaceError(
            f"{self.source}: recipe.{key}: {message}" if key else f"{self.source}: recipe: {message}"
        )

    def parse(self, data: Any) -> RecipeSpace:
        """Validate every key and build the section."""
        if not isinstance(data, dict):
            raise self.fail("", f"expected a mapping with keys {', '.join(RECIPE_KEYS)}")
        for key in data:
            if key not in RECIPE_KEYS:
                raise self.fail(str(key), f"unknown key (expected one of {', '.join(RECIPE_KEYS)})")
        if "optimizer" not in data:
            raise self.fail("optimizer", "missing (required: a list of optimizers to choose from)")
        optimizers = self.optimizers(data["optimizer"])
        shared = tuple(k for k in ("lr", "weight_decay") if k in data and not isinstance(data[k], dict))
        return RecipeSpace(
            optimizers=optimizers,
            lr=self.ranges(data.get("lr"), "lr", optimizers, positive=True),
            weight_decay=self.ranges(data.get("weight_decay"), "weight_decay", optimizers, positive=False),
            shared=shared,
            source=self.source,
        )

    def optimizers(self, value: Any) -> tuple[str, ...]:
        """A list of distinct known optimiser names (a single name is a list of one)."""
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names:
            raise self.fail("optimizer", f"{value!r} is not a non-empty list of optimizer names")
        for name in names:
            if name not in OPTIMIZERS:
                raise self.fail(
                    "optimizer", f"{name!r} is not a known optimizer (expected some of {', '.join(OPTIMIZER_NAMES)})"
                )
        if len(set(names)) != len(names):
            raise self.fail("optimizer", f"{names} names an optimizer twice")
        return tuple(names)

    def ranges(self, value: Any, key: str, optimizers: tuple[str, ...], *, positive: bool) -> Ranges:
        """A shared range ([min, max] or one number) or a mapping optimizer -> range; () when absent."""
        if value is None:
            return ()
        if isinstance(value, dict):
            for name in value:
                if name not in optimizers:
                    raise self.fail(f"{key}.{name}", f"not one of this section's optimizers ({', '.join(optimizers)})")
            return tuple((name, self.log_range(value[name], f"{key}.{name}", positive)) for name in value)
        r = self.log_range(value, key, positive)
        return tuple((name, r) for name in optimizers)

    def log_range(self, value: Any, key: str, positive: bool) -> LogRange:
        """[min, max] with 0 < min <= max (log-uniform), or a single number (fixed)."""
        if isinstance(value, list):
            if len(value) != 2:
                raise self.fail(key, f"{value!r} is not [min, max]")
            low, high = (self.number(v, key, positive) for v in value)
            if low > high:
                raise self.fail(key, f"min {low:g} is above max {high:g}")
            if low <= 0:
                raise self.fail(key, f"min {low:g} must be positive for a log-uniform range")
            return LogRange(low, high)
        number = self.number(value, key, positive)
        return LogRange(number, number)

    def number(self, value: Any, key: str, positive: bool) -> float:
        """A finite number (> 0 when positive, else >= 0)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"{value!r} is not a number")
        if value < 0 or (positive and value == 0):
            raise self.fail(key, f"{value!r} must be {'positive' if positive else 'zero or positive'}")
        return float(value)


LARGE_MODEL_GFLOPS = 20.0  # the reference trains its 34GF model at twice the lr of the smaller ones
LARGE_MODEL_LR_FACTOR = 2.0
RECIPE_FIELDS = ("optimizer", "lr", "weight_decay", "momentum")


def full_recipe(total_gflops: float, chosen: Mapping[str, Any] | None = None) -> Recipe:
    """The full schedule's recipe for a model of total_gflops: what was chosen (optimizer, lr, weight_decay,
    momentum), the rest the optimizer's defaults. Without a chosen lr an SGD-family optimizer takes the
    reference's lr for a model of that size: its base lr (0.01 for 32 images), twice that above
    LARGE_MODEL_GFLOPS."""
    values = {k: v for k, v in (chosen or {}).items() if k in RECIPE_FIELDS and v is not None}
    recipe = Recipe(**values)
    if "lr" not in values and recipe.momentum is not None and total_gflops > LARGE_MODEL_GFLOPS:
        recipe = replace(recipe, lr=LARGE_MODEL_LR_FACTOR * recipe.info.lr)
    return recipe
