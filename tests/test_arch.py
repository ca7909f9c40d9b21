"""ArchSpec: validation messages name the field, JSON round-trips, published archs are valid."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from scrfd_search.space.arch import ArchSpec, ArchSpecError, HeadSpec, NeckSpec, StageSpec
from scrfd_search.space.published import PUBLISHED


def _basic(**changes) -> ArchSpec:
    base = PUBLISHED["scrfd_2.5g"]
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_round_trip_through_json(name, tmp_path):
    arch = PUBLISHED[name]
    path = tmp_path / "a.json"
    path.write_text(arch.to_json())
    assert ArchSpec.load(path) == arch
    assert ArchSpec.load(path).to_json() == arch.to_json()


def test_bottleneck_output_channels_expand_by_four():
    assert PUBLISHED["scrfd_34g"].stage_out_channels == (224, 224, 576, 736)
    assert PUBLISHED["scrfd_2.5g"].stage_out_channels == (24, 48, 48, 80)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"stages": (StageSpec(0, 24), StageSpec(5, 48), StageSpec(3, 48), StageSpec(2, 80))}, "stages[0].depth"),
        ({"stages": (StageSpec(3, 24), StageSpec(25, 48), StageSpec(3, 48), StageSpec(2, 80))}, "stages[1].depth"),
        ({"stages": (StageSpec(3, 24), StageSpec(5, 50), StageSpec(3, 56), StageSpec(2, 80))}, "stages[1].width"),
        ({"stages": (StageSpec(3, 24), StageSpec(5, 48), StageSpec(3, 520), StageSpec(2, 520))}, "stages[2].width"),
        ({"stages": (StageSpec(3, 24), StageSpec(5, 48), StageSpec(3, 40), StageSpec(2, 80))}, "stages[2].width"),
        ({"stem_width": 20}, "stem_width"),
        ({"block": "mbconv"}, "block"),
        ({"neck": NeckSpec(12)}, "neck.channels"),
        ({"head": HeadSpec(num_convs=2, width=64, gn_groups=24)}, "head.gn_groups"),
        ({"head": HeadSpec(num_convs=9, width=64)}, "head.num_convs"),
        ({"head": HeadSpec(num_convs=2, width=64, norm="ln")}, "head.norm"),
    ],
)
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ArchSpecError, match="^" + re.escape(field) + ":"):
        _basic(**changes)


def test_bn_head_does_not_need_dividing_groups():
    arch = _basic(head=HeadSpec(num_convs=2, width=40, norm="bn", gn_groups=16))
    assert arch.head.norm == "bn"


def test_from_dict_rejects_unknown_and_missing_keys():
    data = PUBLISHED["scrfd_10g"].to_dict()
    data["head"]["dropout"] = 0.1
    with pytest.raises(ArchSpecError, match=r"unknown key head\.'dropout'"):
        ArchSpec.from_dict(data, "x.json")
    data = PUBLISHED["scrfd_10g"].to_dict()
    del data["neck"]
    with pytest.raises(ArchSpecError, match="x.json: missing key 'neck'"):
        ArchSpec.from_dict(data, "x.json")


def test_load_reports_bad_json_with_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "block": "basic",\n  oops\n}')
    with pytest.raises(ArchSpecError, match=rf"{path}:3: not valid JSON"):
        ArchSpec.load(path)


def test_json_is_canonical():
    arch = PUBLISHED["scrfd_500m"]
    assert json.loads(arch.to_json()) == arch.to_dict()
    assert arch.key() == ArchSpec.from_dict(arch.to_dict()).key()


def test_box_scale_is_a_validated_head_flag_and_round_trips():
    arch = PUBLISHED["scrfd_500m"]
    data = arch.to_dict()
    assert data["head"]["box_scale"] is True  # the GN configs' scale_mode 2 with a shared head
    no_scale = ArchSpec.from_dict({**data, "head": {**data["head"], "box_scale": False}})
    assert ArchSpec.from_json(no_scale.to_json()) == no_scale and no_scale.key() != arch.key()
    legacy = {**data, "head": {k: v for k, v in data["head"].items() if k != "box_scale"}}
    assert ArchSpec.from_dict(legacy) == arch  # ArchSpecs written before the flag existed keep their Scale
    with pytest.raises(ArchSpecError, match="head.box_scale"):
        ArchSpec.from_dict({**data, "head": {**data["head"], "box_scale": "no"}})
