"""ExperimentRecord: the one reader and writer of results/NAME/experiment.json.

Version 2 (this release) records every launch setting, the space, the budget and the step-2 constraint,
and no path inside the store: where the store lies is where it is read from, so a copied or moved
store resumes, reports, exports and plots in its new place. Paths outside the store (the data folder,
the space file it was launched with) stay absolute; `resume --data` points a moved store at its data.

A store without a `version` was written by an older release (version 1, with absolute paths): status,
export and plot read what it holds; resume refuses it (its trials are keyed differently).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.io_utils import read_json_file
from scrfd_search.search.settings import SearchSettings

VERSION = 2
LEGACY_VERSION = 1  # what a store without a `version` key is taken to be


@dataclass(frozen=True)
class ExperimentRecord:
    """What experiment.json holds, typed; `settings` is None only for an older store that lacks some."""

    name: str
    version: int
    step: int | None = None
    searcher: str | None = None
    scheduler: str | None = None
    trials: int | None = None
    epochs: int | None = None
    budget_gflops: float | None = None
    tolerance: float | None = None
    constraint: dict[str, Any] | None = None
    space: dict[str, Any] | None = None
    study_name: str | None = None
    created: str | None = None
    recipe: dict[str, Any] | None = None  # the launch's recipe (Recipe.to_dict) for trials that carry none
    recipe_space: dict[str, Any] | None = None  # the searched `recipe:` section, when there is one
    recipe_from: str | None = None  # the step-1 search whose recipe settings a step-2 search inherited
    arch: dict[str, Any] | None = None  # a recipe-only search's fixed architecture (ArchSpec.to_dict)
    input_shape: tuple[int, int] | None = None  # (H, W) at which FLOPs are counted
    settings: SearchSettings | None = None

    @classmethod
    def for_launch(
        cls,
        settings: SearchSettings,
        space: dict[str, Any] | None,
        step: int | None,
        budget: float | None,
        tolerance: float | None,
        constraint: Any,
        **recipe: Any,
    ) -> ExperimentRecord:
        """The record a new search writes (recipe: recipe, recipe_space, recipe_from, arch, input_shape)."""
        return cls(
            **recipe,
            name=settings.name,
            version=VERSION,
            step=step,
            searcher=settings.searcher,
            scheduler=settings.scheduler,
            trials=settings.trials,
            epochs=settings.epochs,
            budget_gflops=budget,
            tolerance=tolerance,
            constraint=constraint,
            space=space,
            study_name=settings.name,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            settings=settings,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form (flat: the launch settings beside the space, budget and constraint; no store paths)."""
        out: dict[str, Any] = {}
        if self.settings is not None:
            out.update(self.settings.to_dict())
            out.pop("results_dir", None)  # the store's own place is where it is read from
        out.update(
            name=self.name,
            version=self.version,
            step=self.step,
            searcher=self.searcher,
            scheduler=self.scheduler,
            trials=self.trials,
            epochs=self.epochs,
            budget_gflops=self.budget_gflops,
            tolerance=self.tolerance,
            constraint=self.constraint,
            space=self.space,
            study_name=self.study_name,
            created=self.created,
            recipe=self.recipe,
            recipe_space=self.recipe_space,
            recipe_from=self.recipe_from,
            arch=self.arch,
            input_shape=list(self.input_shape) if self.input_shape else None,
        )
        return out

    def require_settings(self, source: str) -> SearchSettings:
        """The complete launch settings, or a UserError for a store written by an older release."""
        if self.version != VERSION or self.settings is None:
            raise UserError(
                f"{source}: written by an older scrfd-search (experiment.json version {self.version}, this "
                f"release reads version {VERSION} to resume); status, export and plot still read it"
            )
        return self.settings


def parse_experiment(data: Any, store_dir: Path, source: str) -> ExperimentRecord:
    """Validate a parsed experiment.json (any JSON value) into a record; one UserError per problem."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object of launch settings, got {type(data).__name__}")
    version = data.get("version", LEGACY_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < LEGACY_VERSION:
        raise UserError(f"{source}: version: {version!r} is not a version number")
    if version > VERSION:
        raise UserError(
            f"{source}: version {version} was written by a newer scrfd-search (this one reads up to {VERSION})"
        )
    take = _Fields(data, source)
    record = ExperimentRecord(
        name=take.text("name", store_dir.name),
        version=version,
        step=take.integer("step"),
        searcher=take.text("searcher"),
        scheduler=take.text("scheduler"),
        trials=take.integer("trials"),
        epochs=take.integer("epochs"),
        budget_gflops=take.number("budget_gflops"),
        tolerance=take.number("tolerance"),
        constraint=take.mapping("constraint"),
        space=take.mapping("space"),
        study_name=take.text("study_name"),
        created=take.text("created"),
        recipe=take.mapping("recipe"),
        recipe_space=take.mapping("recipe_space"),
        recipe_from=take.text("recipe_from"),
        arch=take.mapping("arch"),
        input_shape=take.shape("input_shape"),
    )
    if version == LEGACY_VERSION:
        return record
    settings = _settings(data, store_dir, source)
    return replace(record, settings=settings, name=settings.name, trials=settings.trials, epochs=settings.epochs)


def read_experiment_file(path: Path) -> ExperimentRecord:
    """Read and validate experiment.json at path (its folder is the store)."""
    data = read_json_file(path, "experiment.json as written by `launch`")
    return parse_experiment(data, path.parent, str(path))


def _settings(data: dict[str, Any], store_dir: Path, source: str) -> SearchSettings:
    """The launch settings of a version-2 record, placed where the store now lies."""
    take = _Fields(data, source)
    known = {f.name for f in fields(SearchSettings)} - {"results_dir", "name"}
    values: dict[str, Any] = {}
    for f in fields(SearchSettings):
        if f.name in known:
            values[f.name] = take.typed(f.name, str(f.type))
    values = {k: v for k, v in values.items() if v is not None}
    for required in ("space_file", "data_root", "trials", "epochs"):
        if required not in values:
            raise UserError(f"{source}: missing key {required!r} (not written by `scrfd-search launch`?)")
    try:
        # the store is identified by its folder: a renamed copy is its own search
        return SearchSettings(name=store_dir.name, results_dir=str(store_dir.parent), **values)
    except UserError as exc:
        raise UserError(f"{source}: {str(exc).removeprefix('--')}") from None


@dataclass(frozen=True)
class _Fields:
    """Typed access to the keys of a JSON object, naming the file and key on a wrong type."""

    data: dict[str, Any]
    source: str

    def _bad(self, key: str, expected: str) -> UserError:
        return UserError(f"{self.source}: {key}: {self.data[key]!r} is not {expected}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(key, "a whole number")
        return value

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise self._bad(key, "a finite number")
        return float(value)

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def typed(self, key: str, annotation: str) -> Any:
        """The value read by the accessor its field's annotation asks for (bool, float, int or str)."""
        for kind, read in (("bool", self.flag), ("float", self.number), ("int", self.integer), ("str", self.text)):
            if kind in annotation:
                return read(key)
        raise TypeError(f"SearchSettings field {key}: no reader for type {annotation}")

    def shape(self, key: str) -> tuple[int, int] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int and v > 0 for v in value)):
            raise self._bad(key, "[height, width] in pixels")
        return (value[0], value[1])

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return value
