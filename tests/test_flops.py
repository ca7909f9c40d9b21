"""FLOPs and parameters by component: the closed form agrees with fvcore, and both with the paper."""

from __future__ import annotations

import json
import random

import pytest

from scrfd_search.builders import build_model
from scrfd_search.cli import main
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.measure import measure_flops
from scrfd_search.flops.report import COMPONENTS
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec
from scrfd_search.space.published import PUBLISHED, PUBLISHED_GFLOPS, PUBLISHED_PARAMS_M

REGIMES = ("depthwise", "basic", "basic", "bottleneck")  # the paper's 0.5 / 2.5 / 10 / 34 GF blocks
# Small and odd input sizes keep the 200 traces fast and exercise the ceil/floor size arithmetic.
SHAPES = ((480, 640), (96, 128), (64, 64), (100, 150), (67, 93), (128, 96), (33, 47))
TOLERANCE = 0.005


def _widths(rng: random.Random, n: int, low: int, high: int) -> list[int]:
    """n non-decreasing multiples of 8 in [low, high]."""
    return sorted(8 * rng.randint(low // 8, high // 8) for _ in range(n))


def random_arch(rng: random.Random, block: str, narrow: bool = False) -> ArchSpec:
    """A random valid ArchSpec: one stage may be up to 24 deep, the others shallow (to keep it fast)."""
    max_width = 512 if rng.random() < 0.1 and not narrow else 96
    deep = rng.randrange(4)
    depths = [rng.randint(1, 24 if i == deep else 2) for i in range(4)]
    if block == "bottleneck":
        depths[deep] = min(depths[deep], 12)
    stem, *widths = _widths(rng, 5, 8, max_width)
    head_width = 8 * rng.randint(1, 12)
    norm = rng.choice(("gn", "bn"))
    groups = rng.choice([g for g in (1, 2, 4, 8, 16, 32) if head_width % g == 0])
    return ArchSpec(
        block=block,
        stem_width=stem,
        stages=tuple(StageSpec(d, w) for d, w in zip(depths, widths, strict=True)),  # type: ignore[arg-type]
        neck=NeckSpec(8 * rng.randint(1, 12)),
        head=HeadSpec(
            num_convs=rng.choice((0, 1, 2, 3, 4, 8)),
            width=head_width,
            norm=norm,
            gn_groups=groups if norm == "gn" else 16,
            shared=rng.random() < 0.5,
            depthwise=rng.random() < 0.5,
            keypoints=rng.random() < 0.5,
        ),
    )


def _assert_agree(analytic, measured, label: str) -> None:
    """Every component's and the total GFLOPs within TOLERANCE; parameters identical."""
    for c in COMPONENTS:
        assert analytic.gflops[c] == pytest.approx(measured.gflops[c], rel=TOLERANCE), f"{label}: {c} GFLOPs"
        assert analytic.params[c] == measured.params[c], f"{label}: {c} params"
    assert analytic.total_gflops == pytest.approx(measured.total_gflops, rel=TOLERANCE), f"{label}: total"


@pytest.mark.slow
def test_closed_form_agrees_with_fvcore_on_200_random_candidates():
    rng = random.Random(20240501)
    covered = set()
    for i in range(200):
        vga = i % 25 == 3  # two per regime at 640x480, narrow (the trace runs the real forward)
        arch = random_arch(rng, REGIMES[i % 4], narrow=vga)
        shape = SHAPES[0] if vga else rng.choice(SHAPES[1:])
        measured = measure_flops(build_model(arch, init_weights=False), shape)
        _assert_agree(count_flops(arch, shape), measured, f"candidate {i} {shape} {arch.key()}")
        head = arch.head
        covered.add((arch.block, head.norm, head.shared, head.depthwise, head.keypoints))
    # every block type met every head variant (norm x shared x depthwise x keypoints) at least once
    assert len(covered) >= 40, sorted(covered)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_architectures_match_the_paper(name):
    measured = measure_flops(build_model(PUBLISHED[name], init_weights=False), (480, 640))
    gflops_tolerance = 0.10 if name == "scrfd_500m" else 0.05
    assert measured.total_gflops == pytest.approx(PUBLISHED_GFLOPS[name], rel=gflops_tolerance)
    assert measured.params_m == pytest.approx(PUBLISHED_PARAMS_M[name], rel=0.10)
    # the closed form is exact on the released models, component by component
    analytic = count_flops(PUBLISHED[name], (480, 640))
    assert analytic.gflops == pytest.approx(measured.gflops, rel=1e-9)
    assert analytic.params == measured.params


def test_published_backbone_takes_most_computation_then_head_then_neck():
    for arch in PUBLISHED.values():
        shares = count_flops(arch).detector_shares()
        assert shares["backbone"] > shares["head"] > shares["neck"]


def test_flops_scale_with_input_area():
    arch = PUBLISHED["scrfd_2.5g"]
    vga, quarter = count_flops(arch, (480, 640)), count_flops(arch, (240, 320))
    assert quarter.total_gflops / vga.total_gflops == pytest.approx(0.25, rel=0.01)
    assert quarter.params == vga.params


def test_measure_fails_on_flops_outside_the_components():
    import torch
    from torch import nn

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            for i in range(1, 5):
                self.add_module(f"layer{i}", nn.Conv2d(8, 8, 1))
            self.extra = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            for part in (self.stem, self.layer1, self.layer2, self.layer3, self.layer4, self.extra):
                x = part(x)
            return x

    detector = nn.Module()
    detector.backbone, detector.neck, detector.bbox_head = Backbone(), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 2, 1)
    with pytest.raises(AssertionError, match="backbone.extra"):
        measure_flops(detector, (32, 32))
    detector.backbone.extra = nn.Identity()
    threads = torch.get_num_threads()
    report = measure_flops(detector, (32, 32))
    assert torch.get_num_threads() == threads
    assert report.gflops["c2"] == 8 * 8 * 32 * 32 / 1e9
    assert report.params["head"] == 8 * 2 + 2
    assert detector.backbone.training and detector.bbox_head.training  # the caller's mode is kept


def _run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `scrfd-search flops ...`; return exit code, stdout, stderr."""
    code = main(["flops", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def arch_json(tmp_path):
    path = tmp_path / "scrfd_2.5g.json"
    path.write_text(PUBLISHED["scrfd_2.5g"].to_json())
    return path


def test_cli_json_gives_total_params_and_components(capsys, arch_json):
    code, out, _ = _run_cli(capsys, str(arch_json), "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data["components"]) == set(COMPONENTS)
    assert data["total_gflops"] == pytest.approx(sum(data["components"].values()))
    assert data["total_gflops"] == pytest.approx(PUBLISHED_GFLOPS["scrfd_2.5g"], rel=0.05)
    assert data["params_m"] == pytest.approx(PUBLISHED_PARAMS_M["scrfd_2.5g"], rel=0.10)
    code, out, _ = _run_cli(capsys, str(arch_json), "--json", "--analytic")
    assert code == 0 and json.loads(out)["components"] == pytest.approx(data["components"], rel=1e-9)


def test_cli_table_lists_every_component_and_a_total(capsys, arch_json):
    code, out, _ = _run_cli(capsys, str(arch_json))
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    for name in (*COMPONENTS, "total"):
        gflops, share, params = rows[name]
        assert float(gflops) >= 0 and share.endswith("%") and float(params) >= 0
    assert float(rows["total"][0]) == pytest.approx(sum(float(rows[c][0]) for c in COMPONENTS), abs=1e-3)
    assert rows["total"][1] == "100.0%"


def test_cli_input_shape_scales_flops_with_area(capsys, arch_json):
    _, vga, _ = _run_cli(capsys, str(arch_json), "--json")
    _, small, _ = _run_cli(capsys, str(arch_json), "--json", "--input-shape", "240", "320")
    vga, small = json.loads(vga), json.loads(small)
    assert small["total_gflops"] / vga["total_gflops"] == pytest.approx(0.25, rel=0.02)
    assert small["params_m"] == vga["params_m"]
    assert small["input_shape"] == [240, 320]


def test_cli_reads_the_arch_of_an_mmdet_config(capsys, tmp_path):
    from mmengine.config import Config

    from scrfd_search.config_builder import model_config

    arch = PUBLISHED["scrfd_500m"]
    expected = count_flops(arch).to_dict()
    # an exported config carrying its ArchSpec (scrfd_arch), read without building anything
    with_arch = tmp_path / "with_arch.py"
    Config(dict(model=model_config(arch), scrfd_arch=arch.to_dict())).dump(str(with_arch))
    code, out, _ = _run_cli(capsys, str(with_arch), "--json", "--analytic")
    assert code == 0 and json.loads(out)["components"] == pytest.approx(expected["components"])
    # a plain mmdet config: the model is built from it and measured with fvcore
    plain = tmp_path / "plain.py"
    Config(dict(model=model_config(arch), custom_imports=dict(imports=["scrfd_search.models"]))).dump(str(plain))
    code, out, _ = _run_cli(capsys, str(plain), "--json")
    assert code == 0 and json.loads(out)["components"] == pytest.approx(expected["components"])
    code, _, err = _run_cli(capsys, str(plain), "--analytic")
    assert code == 2 and str(plain) in err
    # or its ArchSpec JSON lies beside it, with the same stem
    plain.with_suffix(".json").write_text(arch.to_json())
    code, out, _ = _run_cli(capsys, str(plain), "--json", "--analytic")
    assert code == 0 and json.loads(out)["components"] == pytest.approx(expected["components"])


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("missing.json", None),
        ("broken.json", '{"block": "basic",'),
        ("wrong_key.json", json.dumps({**PUBLISHED["scrfd_10g"].to_dict(), "block": "dense"})),
        ("notes.txt", "hello"),
        ("broken.py", "model = dict(\n"),
        ("nomodel.py", "x = 1\n"),
    ],
)
def test_cli_bad_file_is_one_line_naming_it(capsys, tmp_path, name, text):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    code, out, err = _run_cli(capsys, str(path))
    assert code == 2 and out == ""
    assert err.startswith("scrfd-search flops: error: ") and str(path) in err
    assert len(err.strip().splitlines()) == 1
