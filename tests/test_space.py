"""Search spaces: shipped files load, bad files name the key, sampling is seeded and in budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from scrfd_search.cli import main
from scrfd_search.errors import UserError
from scrfd_search.flops.analytic import count_flops
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.space.published import PUBLISHED
from scrfd_search.space.search_space import SearchSpace, SpaceError

REGIMES = ("0.5", "2.5", "10", "34")
PUBLISHED_BY_REGIME = {"0.5": "scrfd_500m", "2.5": "scrfd_2.5g", "10": "scrfd_10g", "34": "scrfd_34g"}


def _space_dict(search_spaces_dir, name="scrfd_2.5gf_step2.yaml") -> dict:
    return yaml.safe_load((search_spaces_dir / name).read_text())


def _write(tmp_path, data) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("step", (1, 2))
def test_shipped_spaces_load_and_hold_their_published_model(search_spaces_dir, regime, step):
    space = SearchSpace.load(search_spaces_dir / f"scrfd_{regime}gf_step{step}.yaml")
    assert space.step == step
    assert space.budget_gflops == float(regime)
    assert space.tolerance == 0.02
    assert space.input_shape == (480, 640)
    published = PUBLISHED[PUBLISHED_BY_REGIME[regime]]
    assert space.block == published.block
    # The released model is a point of the space (its backbone ranges cover it).
    assert space.stem_width.min <= published.stem_width <= space.stem_width.max
    for stage, d, w in zip(published.stages, space.depth, space.width, strict=True):
        assert d.min <= stage.depth <= d.max
        assert w.min <= stage.width <= w.max
    if step == 1:  # the paper's first step fixes neck and head
        assert space.neck_channels.fixed and space.head_width.fixed and space.head_num_convs.fixed
        assert space.neck_channels.min == published.neck.channels
        assert (space.head_num_convs.min, space.head_width.min) == (published.head.num_convs, published.head.width)
    else:
        assert not space.neck_channels.fixed and not space.head_width.fixed and not space.head_num_convs.fixed


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d.update(width={"min": 64, "max": 32, "step": 8}), "width"),
        (lambda d: d.update(width={"min": 20, "max": 64, "step": 8}), "width.min"),
        (lambda d: d.update(stem_width=30), "stem_width"),
        (lambda d: d["head"].update(width={"min": 32, "max": 128, "step": 12}), "head.width.step"),
        (lambda d: d["head"].update(dropout=0.1), "head.dropout"),
        (lambda d: d.update(depth={"min": 1, "max": 30}), "depth"),
        (lambda d: d.update(block="transformer"), "block"),
        (lambda d: d.pop("budget_gflops"), "budget_gflops"),
        (lambda d: d.update(tolerance=2), "tolerance"),
        (lambda d: d["head"].update(gn_groups=24), "head.gn_groups"),
    ],
)
def test_invalid_space_names_the_key(search_spaces_dir, tmp_path, mutate, key):
    data = _space_dict(search_spaces_dir)
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}:"), message
    assert "\n" not in message


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nblock: basic\nwidth: [1, 2\n")
    with pytest.raises(SpaceError, match=rf"{path}:\d+: not valid YAML"):
        SearchSpace.load(path)


def test_space_round_trips_through_its_dict(search_spaces_dir):
    for path in sorted(search_spaces_dir.glob("*.yaml")):
        space = SearchSpace.load(path)
        again = SearchSpace.from_dict(space.to_dict(), space.source)
        assert again == space


def test_sample_arch_is_seeded_and_widths_never_decrease(search_spaces_dir):
    space = SearchSpace.load(search_spaces_dir / "scrfd_10gf_step2.yaml")
    first = [space.sample_arch(np.random.default_rng(7)).key() for _ in range(3)]
    assert len(set(first)) == 1
    rng = np.random.default_rng(3)
    for _ in range(200):
        arch = space.sample_arch(rng)
        assert list(arch.widths) == sorted(arch.widths)


def test_budgeted_sampling_is_distinct_in_budget_and_reproducible(search_spaces_dir):
    space = SearchSpace.load(search_spaces_dir / "scrfd_2.5gf_step2.yaml")
    first = sample_candidates(space, 12, seed=5, confirm=False)
    second = sample_candidates(space, 12, seed=5, confirm=False)
    other = sample_candidates(space, 12, seed=6, confirm=False)
    assert [c.arch for c in first] == [c.arch for c in second]
    assert [c.arch for c in first] != [c.arch for c in other]
    assert len({c.arch.key() for c in first}) == 12
    low, high = space.budget_range()
    for c in first:
        assert low <= count_flops(c.arch, space.input_shape).total_gflops <= high


def test_budget_override_and_accept_filter(search_spaces_dir):
    space = SearchSpace.load(search_spaces_dir / "scrfd_2.5gf_step1.yaml")
    shallow = sample_candidates(
        space, 5, seed=1, budget_gflops=3.0, confirm=False, accept=lambda a, f: f.backbone_shares()["c5"] < 0.2
    )
    for c in shallow:
        assert 2.94 <= c.flops.total_gflops <= 3.06
        assert c.flops.backbone_shares()["c5"] < 0.2


def test_infeasible_budget_fails_at_once_with_the_reachable_range(search_spaces_dir):
    space = SearchSpace.load(search_spaces_dir / "scrfd_0.5gf_step1.yaml")
    with pytest.raises(UserError, match=r"outside what this space can reach \(0\.\d+-\d+\.\d+ GFLOPs"):
        sample_candidates(space, 4, seed=0, budget_gflops=500.0, confirm=False)


def test_nearly_infeasible_budget_fails_after_bounded_draws(search_spaces_dir):
    space = SearchSpace.load(search_spaces_dir / "scrfd_2.5gf_step1.yaml")
    with pytest.raises(UserError, match=r"only \d+ of 50 candidates found .* after 300 draws"):
        sample_candidates(space, 50, seed=0, confirm=False, max_draws=300)


def test_sample_cli_writes_identical_files_for_the_same_seed(search_spaces_dir, tmp_path, capsys):
    space = str(search_spaces_dir / "scrfd_2.5gf_step1.yaml")
    assert main(["sample", "--space", space, "--n", "3", "--seed", "11", "--out", str(tmp_path / "a")]) == 0
    assert main(["sample", "--space", space, "--n", "3", "--seed", "11", "--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["arch_0000.json", "arch_0001.json", "arch_0002.json", "candidates.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    summary = json.loads((tmp_path / "a" / "candidates.json").read_text())
    for row in summary["candidates"]:
        assert 2.45 <= row["flops"]["total_gflops"] <= 2.55  # confirmed by fvcore
        assert set(row["flops"]["components"]) == {"stem", "c2", "c3", "c4", "c5", "neck", "head"}
    out = capsys.readouterr()
    assert "acceptance" in out.err and "GFLOPs" in out.out


def test_sample_cli_refuses_to_overwrite_and_writes_nothing_on_failure(search_spaces_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    space = str(search_spaces_dir / "scrfd_2.5gf_step1.yaml")
    assert main(["sample", "--space", space, "--n", "2", "--out", str(out)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    fresh = tmp_path / "fresh"
    assert main(["sample", "--space", space, "--n", "2", "--budget", "900", "--out", str(fresh)]) == 2
    assert not fresh.exists()
    assert list(tmp_path.iterdir()) == [out]
