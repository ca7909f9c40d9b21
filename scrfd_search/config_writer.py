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
    runtime_config,
    schedule_config,
    widerface_data,
)
from scrfd_search.flops.analytic import count_flops
from scrfd_search.io_utils import atomic_write_text
from scrfd_search.space.arch import ArchSpec

WIDERFACE_DATA_ROOT = "data/widerface/"
MMDET_RUNTIME = "mmdet::_base_/default_runtime.py"
# (file under _base_/, what it holds); the order is the children's `_base_` list order.
BASE_FILES: tuple[tuple[str, str], ...] = (
    ("models/scrfd.py", "SCRFD model defaults: anchors, losses, ATSS assigner, test settings"),
    ("datasets/wider_face_scrfd.py", "WIDER FACE: large-crop training pipeline, loaders, WIDER FACE metric"),
    ("schedules/scrfd_640e.py", "the reference's 640-epoch SGD schedule (warm-up, lr steps at 440 and 544)"),
    ("default_runtime.py", "mmdet's default runtime, with scrfd-search's modules and a seed"),
)
LARGE_MODEL_GFLOPS = 20.0  # the reference trains its 34GF model at lr 0.02, the smaller ones at 0.01
MERGE_MARKERS = {"_delete_", "_scope_"}
LINE_WIDTH = 100
INDENT = "    "


def reference_lr(arch: ArchSpec) -> float:
    """The full schedule's learning rate for a total batch of 32, by model size as the reference sets it."""
    return 0.02 if count_flops(arch).total_gflops > LARGE_MODEL_GFLOPS else 0.01


def full_schedule(arch: ArchSpec) -> Schedule:
    """The reference's 640-epoch schedule at the learning rate it uses for a model of arch's size."""
    return Schedule.full(lr=reference_lr(arch))


def full_config(arch: ArchSpec, data_root: str = WIDERFACE_DATA_ROOT, work_dir: str | None = None) -> dict:
    """The full-schedule training config dict for arch on WIDER FACE at data_root."""
    return build_config(arch, data=widerface_data(data_root), schedule=full_schedule(arch), work_dir=work_dir)


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


def render_config(cfg: Mapping[str, Any], variables: Collection[str] = ()) -> str:
    """A config file body: one `key = value` statement per top-level key, in cfg's order.

    Keys named in `variables` may be referred to by later statements, mmdet style: a string starting
    with one's value becomes `data_root + 'WIDER_train/images/'`, an equal pipeline becomes its name.
    """
    lines, defined = [], {}
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
    data = widerface_data(WIDERFACE_DATA_ROOT)
    bodies = {
        "models/scrfd.py": render_config({"model": model_defaults()}),
        "datasets/wider_face_scrfd.py": _dataset_base(data),
        "schedules/scrfd_640e.py": render_config(schedule_config(Schedule.full())),
        "default_runtime.py": f"_base_ = {MMDET_RUNTIME!r}\n\n" + render_config(_runtime_overrides()),
    }
    note = "Written by scrfd-search (scrfd_search/config_writer.py); do not edit."
    return {name: _comment(f"{about}.\n{note}") + "\n" + bodies[name] for name, about in BASE_FILES}


def write_bases(folder: Path) -> None:
    """Write the _base_/ files into folder/_base_/."""
    for name, text in base_file_texts().items():
        atomic_write_text(folder / "_base_" / name, text)


def merged_bases() -> dict[str, Any]:
    """The config every child starts from: the _base_ files merged, as mmengine reads them."""
    with tempfile.TemporaryDirectory(prefix="scrfd-bases-") as tmp:
        write_bases(Path(tmp))
        child = Path(tmp) / "child.py"
        child.write_text(f"_base_ = {base_list('_base_')!r}\n")
        return Config.fromfile(str(child), import_custom_modules=False).to_dict()


def base_list(base_dir: str) -> list[str]:
    """The `_base_` list of a child whose _base_ folder is at base_dir (relative to the child)."""
    return [f"{base_dir}/{name}" for name, _ in BASE_FILES]


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


def child_text(cfg: Mapping[str, Any], header: str, base_dir: str, bases: Mapping[str, Any]) -> str:
    """A child config file: header comment, `_base_` list, then only what cfg changes in bases."""
    overrides = config_overrides(cfg, bases)
    return _comment(header) + f"_base_ = {render_value(base_list(base_dir))}\n\n" + render_config(overrides)


def check_child(path: Path, arch: ArchSpec, expected: Mapping[str, Any]) -> None:
    """Read a written child back with mmengine: it must hold every entry of expected and arch's model."""
    cfg = Config.fromfile(str(path), import_custom_modules=False).to_dict()
    if _plain(cfg["model"]) != _plain(model_config(arch)):
        raise RuntimeError(f"{path}: the written config does not describe its ArchSpec")
    missing = [key for key in expected if key not in cfg or config_overrides({key: expected[key]}, cfg)]
    if missing:
        raise RuntimeError(f"{path}: the written config differs from the intended one in {', '.join(missing)}")


def write_child(
    path: Path, arch: ArchSpec, cfg: Mapping[str, Any], header: str, base_dir: str, bases: Mapping[str, Any]
) -> None:
    """Write a child config and its ArchSpec JSON beside it, then check the config reads back as cfg."""
    atomic_write_text(path, child_text(cfg, header, base_dir, bases))
    atomic_write_text(path.with_suffix(".json"), arch.to_json())
    check_child(path, arch, cfg)
