"""Config files the way mmdet users write them: shared `_base_/` files and a short child per model.

The `_base_/` files are rendered from `config_builder`'s parts (the one home of every number in
them); a child holds only what differs from its bases (the architecture, and whatever a schedule,
data root or recipe changes), computed by comparing `build_config`'s full dict with the merged
bases. `configs/` in the repository (tools/make_published_configs.py) and every `export` are
written by `write_bases` and `write_child`, so the two cannot disagree. mmengine's own `pretty_text`
writes every list element on its own line and sorts keys; `render_config` keeps the builder's order
and puts what fits on one line.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from collections.abc import Collection, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from mmengine.config import Config

from scrfd_search.config_builder import (
    DataSettings,
    Schedule,
    build_config,
    dataloader_config,
    model_config,
    model_defaults,
    retinaface_data,
    runtime_config,
    schedule_config,
    widerface_data,
)
from scrfd_search.flops.analytic import count_flops
from scrfd_search.io_utils import atomic_write_text
from scrfd_search.recipe import Recipe, full_recipe
from scrfd_search.space.arch import ArchSpec

WIDERFACE_DATA_ROOT = "data/widerface/"
MMDET_RUNTIME = "mmdet::_base_/default_runtime.py"
# File under _base_/ -> what it holds. A child's `_base_` list: the model, its layout's dataset, the
# schedule, the runtime.
BASE_FILES: dict[str, str] = {
    "models/scrfd.py": "SCRFD model defaults: anchors, losses, ATSS assigner, test settings",
    "datasets/wider_face_scrfd.py": "WIDER FACE (official layout): large-crop training pipeline, loaders, metric",
    "datasets/retinaface_scrfd.py": "WIDER FACE with landmarks (RetinaFace labelv2.txt): pipeline, loaders, metric",
    "schedules/scrfd_640e.py": "the reference's 640-epoch SGD schedule (warm-up, lr steps at 440 and 544)",
    "default_runtime.py": "mmdet's default runtime, with scrfd-search's modules and a seed",
}
DATASET_BASES = {"wider": "datasets/wider_face_scrfd.py", "retinaface": "datasets/retinaface_scrfd.py"}
# Top-level variables of the dataset bases that a child may take and edit (`_base_.train_pipeline`).
PIPELINE_VARIABLES = ("train_pipeline", "test_pipeline")
MERGE_MARKERS = {"_delete_", "_scope_"}
LINE_WIDTH = 100
INDENT = "    "


def full_schedule(arch: ArchSpec, recipe: Recipe | None = None) -> Schedule:
    """The reference's 640-epoch schedule with recipe (default: the reference's for a model of arch's size)."""
    return Schedule.full(recipe or full_recipe(count_flops(arch).total_gflops))


def full_config(
    arch: ArchSpec, data_root: str = WIDERFACE_DATA_ROOT, work_dir: str | None = None, recipe: Recipe | None = None
) -> dict:
    """The full-schedule training config dict for arch on WIDER FACE at data_root."""
    schedule = full_schedule(arch, recipe)
    return build_config(arch, data=widerface_data(data_root), schedule=schedule, work_dir=work_dir)


# ------------------------------------------------------------------ rendering Python config text


def _render_float(value: float) -> str:
    """A float as written by hand: 0.01, 1e-05, or a small fraction such as 1.0 / 9.0."""
    text = repr(value)
    if len(text) <= 8:
        return text
    fraction = Fraction(value).limit_denominator(1000)
    if float(fraction.numerator) / float(fraction.denominator) == value:
        return f"{float(fraction.numerator)!r} / {float(fraction.denominator)!r}"
    return text


def _render_scalar(value: Any, variables: Mapping[str, Any]) -> str:
    """A scalar's source text; a string equal to or starting with a string variable uses the variable."""
    if isinstance(value, str):
        for name, var_value in variables.items():
            if isinstance(var_value, str) and value == var_value:
                return name
            if isinstance(var_value, str) and value.startswith(var_value):
                return f"{name} + {value[len(var_value) :]!r}"
        return repr(value)
    if isinstance(value, float):
        return _render_float(value)
    return repr(value)


def render_value(value: Any, indent: str = "", variables: Mapping[str, Any] | None = None) -> str:
    """Python source for value: dict(...)/lists/tuples, on one line when it fits, else one item a line.

    `variables` (name -> value): a list, tuple or dict equal to a variable's value is written as its
    name, and so are strings as in `_render_scalar`.
    """
    variables = variables or {}
    if isinstance(value, Mapping | list | tuple):
        for name, var_value in variables.items():
            if type(var_value) is type(value) and var_value == value:
                return name
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            items = [f"{k}={render_value(v, indent + INDENT, variables)}" for k, v in value.items()]
            opening, closing = "dict(", ")"
        else:
            items = [f"{k!r}: {render_value(v, indent + INDENT, variables)}" for k, v in value.items()]
            opening, closing = "{", "}"
    elif isinstance(value, list | tuple):
        items = [render_value(v, indent + INDENT, variables) for v in value]
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ",)" if len(value) == 1 else ")")
    else:
        return _render_scalar(value, variables)
    one_line = opening + ", ".join(items) + closing
    if "\n" not in one_line and len(indent) + len(one_line) <= LINE_WIDTH:
        return one_line
    inner = "".join(f"{indent}{INDENT}{item},\n" for item in items)
    return f"{opening}\n{inner}{indent}{closing.lstrip(',')}"


def render_config(
    cfg: Mapping[str, Any], variables: Collection[str] = (), defined: Mapping[str, Any] | None = None
) -> str:
    """A config file body: one `key = value` statement per top-level key, in cfg's order.

    Keys named in `variables` (and those already `defined` above, name -> value) may be referred to
    by later statements, mmdet style: a string starting with one's value becomes
    `data_root + 'WIDER_train/images/'`, an equal pipeline becomes its name.
    """
    lines, defined = [], dict(defined or {})
    for key, value in cfg.items():
        lines.append(f"{key} = {render_value(value, '', defined)}\n")
        if key in variables:
            defined[key] = value
    return "".join(lines)


def _comment(text: str) -> str:
    """text as '#' comment lines."""
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


# ------------------------------------------------------------------ the _base_ files


def read_config_text(text: str) -> dict[str, Any]:
    """A config given as text (it may name `_base_` files by package, e.g. mmdet::...), read by mmengine."""
    with tempfile.TemporaryDirectory(prefix="scrfd-config-") as tmp:
        path = Path(tmp) / "config.py"
        path.write_text(text)
        return Config.fromfile(str(path), import_custom_modules=False).to_dict()


def _runtime_overrides() -> dict[str, Any]:
    """What scrfd-search's runtime changes or adds to mmdet's default runtime."""
    mmdet_runtime = read_config_text(f"_base_ = {MMDET_RUNTIME!r}\n")
    return config_overrides(runtime_config(Schedule.full()), mmdet_runtime)


def _dataset_base(data: DataSettings) -> str:
    """The dataset base file: data_root and the two pipelines as variables, the loaders and metric after."""
    loaders = dataloader_config(data)
    cfg = {
        "data_root": data.data_root,
        "train_pipeline": loaders["train_dataloader"]["dataset"]["pipeline"],
        "test_pipeline": loaders["val_dataloader"]["dataset"]["pipeline"],
        **loaders,
    }
    return render_config(cfg, variables=cfg.keys())


def base_file_texts() -> dict[str, str]:
    """_base_/ file name -> text, rendered from the builder's parts for the full schedule on WIDER FACE."""
    bodies = {
        "models/scrfd.py": render_config({"model": model_defaults()}),
        "datasets/wider_face_scrfd.py": _dataset_base(widerface_data(WIDERFACE_DATA_ROOT)),
        "datasets/retinaface_scrfd.py": _dataset_base(retinaface_data()),
        "schedules/scrfd_640e.py": render_config(schedule_config(Schedule.full())),
        "default_runtime.py": f"_base_ = {MMDET_RUNTIME!r}\n\n" + render_config(_runtime_overrides()),
    }
    note = "Written by scrfd-search (scrfd_search/config_writer.py); do not edit."
    return {name: _comment(f"{about}.\n{note}") + "\n" + bodies[name] for name, about in BASE_FILES.items()}


def write_bases(folder: Path) -> None:
    """Write the _base_/ files into folder/_base_/."""
    for name, text in base_file_texts().items():
        atomic_write_text(folder / "_base_" / name, text)


@functools.cache
def _merged_bases(layout: str) -> dict[str, Any]:
    """merged_bases, read once per layout (reading the bases with mmengine takes a while)."""
    with tempfile.TemporaryDirectory(prefix="scrfd-bases-") as tmp:
        write_bases(Path(tmp))
        child = Path(tmp) / "child.py"
        child.write_text(f"_base_ = {base_list('_base_', layout)!r}\n")
        return Config.fromfile(str(child), import_custom_modules=False).to_dict()


def merged_bases(layout: str = "wider") -> dict[str, Any]:
    """The config a child of that data layout starts from: its _base_ files merged, as mmengine reads them."""
    return copy.deepcopy(_merged_bases(layout))  # callers may change what they get; the cache must not


def base_list(base_dir: str, layout: str = "wider") -> list[str]:
    """The `_base_` list of a child whose _base_ folder is at base_dir (relative to the child)."""
    names = ["models/scrfd.py", DATASET_BASES[layout], "schedules/scrfd_640e.py", "default_runtime.py"]
    return [f"{base_dir}/{name}" for name in names]


# ------------------------------------------------------------------ children


def config_overrides(full: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """What a child must say so that mmengine's merge of base and child gives full.

    Dicts are merged key by key; a dict whose `type` changes, or that must lose keys, replaces the
    base's (`_delete_=True`); any other differing value replaces it. Keys only the base has stay.
    mmengine's own markers (`_delete_`, and `_scope_` on dicts read from a package's configs) are
    not keys to lose.
    """
    out: dict[str, Any] = {}
    for key, value in full.items():
        if key not in base:
            out[key] = value
            continue
        old = base[key]
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            if value.get("type") != old.get("type") or set(old) - set(value) - MERGE_MARKERS:
                out[key] = {"_delete_": True, **value}
            elif sub := config_overrides(value, old):
                out[key] = sub
        elif _plain(value) != _plain(old):
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    """Tuples as lists (mmengine reads tuples back as tuples, lists as lists; both mean the same here)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _element_edits(new: Any, old: Any) -> list[tuple[int, str, Any]] | None:
    """(index, key, value) changes turning list old into new, when they are only changed or added keys."""
    if not (isinstance(new, list | tuple) and isinstance(old, list | tuple) and len(new) == len(old)):
        return None
    edits = []
    for index, (a, b) in enumerate(zip(new, old, strict=True)):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or a.get("type") != b.get("type"):
            return None
        if set(b) - set(a) - MERGE_MARKERS:
            return None
        edits += [(index, key, value) for key, value in a.items() if key not in b or _plain(value) != _plain(b[key])]
    return edits


def _pipeline_edits(full: Mapping[str, Any], bases: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Statements that take a base pipeline and edit a few of its steps, and the edited pipelines by name.

    A full pipeline restated in a child for one changed flag is what makes mmdet configs long; this
    writes `train_pipeline = _base_.train_pipeline` and `train_pipeline[2].bbox_clip_border = False`.
    """
    loaders = {"train_pipeline": "train_dataloader", "test_pipeline": "val_dataloader"}
    lines, edited = [], {}
    for name in PIPELINE_VARIABLES:
        wanted = full.get(loaders[name], {}).get("dataset", {}).get("pipeline")
        if name not in bases or wanted is None or _plain(wanted) == _plain(bases[name]):
            continue
        edits = _element_edits(wanted, bases[name])
        if edits is None:
            continue
        lines.append(f"{name} = _base_.{name}\n")
        lines += [f"{name}[{index}].{key} = {render_value(value)}\n" for index, key, value in edits]
        edited[name] = wanted
    return "".join(lines), edited


def child_text(
    cfg: Mapping[str, Any], header: str, base_dir: str, bases: Mapping[str, Any], layout: str = "wider"
) -> str:
    """A child config file: header comment, `_base_` list, then only what cfg changes in bases."""
    edits, pipelines = _pipeline_edits(cfg, bases)
    body = (edits + "\n" if edits else "") + render_config(config_overrides(cfg, bases), defined=pipelines)
    return _comment(header) + f"_base_ = {render_value(base_list(base_dir, layout))}\n\n" + body


def check_child(path: Path, arch: ArchSpec, expected: Mapping[str, Any]) -> None:
    """Read a written child back with mmengine: it must hold every entry of expected and arch's model."""
    cfg = Config.fromfile(str(path), import_custom_modules=False).to_dict()
    if _plain(cfg["model"]) != _plain(model_config(arch)):
        raise RuntimeError(f"{path}: the written config does not describe its ArchSpec")
    missing = [key for key in expected if key not in cfg or config_overrides({key: expected[key]}, cfg)]
    if missing:
        raise RuntimeError(f"{path}: the written config differs from the intended one in {', '.join(missing)}")


def write_config(path: Path, cfg: Mapping[str, Any], header: str, base_dir: str, layout: str = "wider") -> None:
    """Write cfg as a child config over the bases of its data layout."""
    atomic_write_text(path, child_text(cfg, header, base_dir, merged_bases(layout), layout))


def write_child(
    path: Path, arch: ArchSpec, cfg: Mapping[str, Any], header: str, base_dir: str, layout: str = "wider"
) -> None:
    """Write a child config of arch and its ArchSpec JSON beside it, then check the config reads back as cfg."""
    write_config(path, cfg, header, base_dir, layout)
    atomic_write_text(path.with_suffix(".json"), arch.to_json())
    check_child(path, arch, cfg)
