"""The plot command: figures and their CSVs drawn from experiment stores built here."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from scrfd_search.cli import main
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.evaluation.official import is_wider_face_val, read_validation_set
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.report import BACKBONE_COMPONENTS
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.plots import BEST_FRACTION, parse_formats, plot_experiments
from scrfd_search.plots.data import load_views, pareto_front
from scrfd_search.plots.figures import pareto_figure
from scrfd_search.search.store import ExperimentStore, TrialRecord
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec

BLOCK_OF_BUDGET = {0.5: "depthwise", 2.5: "basic", 10.0: "basic"}
REAL_GT = Path(__file__).resolve().parents[2] / "shared" / "widerface_gt"
needs_real_gt = pytest.mark.skipif(not REAL_GT.is_dir(), reason=f"real WIDER FACE ground truth not found at {REAL_GT}")


def random_arch(rng: np.random.Generator, block: str, step: int) -> ArchSpec:
    """A random valid ArchSpec; step 1 keeps the neck and head fixed like the paper's first step."""
    widths = np.sort(rng.integers(1, 17, size=4) * 8)
    stages = tuple(StageSpec(int(d), int(w)) for d, w in zip(rng.integers(1, 7, size=4), widths, strict=True))
    if step == 1:
        neck, head = NeckSpec(24), HeadSpec(num_convs=2, width=64)
    else:
        neck = NeckSpec(int(rng.integers(2, 9)) * 8)
        head = HeadSpec(num_convs=int(rng.integers(1, 4)), width=int(rng.integers(2, 9)) * 16)
    return ArchSpec(block, int(rng.integers(2, 9)) * 8, stages, neck, head)  # type: ignore[arg-type]


def make_store(
    root: Path,
    name: str,
    *,
    budget: float,
    step: int,
    n: int,
    seed: int,
    failed: int = 0,
    pending: int = 0,
    searcher: str = "random",
    data_root: Path | None = None,
) -> list[TrialRecord]:
    """An experiment store with n scored trials, `failed` ERROR trials and `pending` unscored ones; with a
    data_root, a current experiment.json that records it (validated there), else an older one that does not."""
    rng = np.random.default_rng(seed)
    store = ExperimentStore(root / name)
    record = {"name": name, "step": step, "budget_gflops": budget, "tolerance": 0.02, "searcher": searcher}
    if data_root is not None:
        record |= {"version": 2, "space_file": str(root / "space.yaml"), "data_root": str(data_root)}
        record |= {"trials": n + failed + pending, "epochs": 10}
    atomic_write_json(store.experiment_file, record)
    trials = []
    for i in range(n + failed + pending):
        arch = random_arch(rng, BLOCK_OF_BUDGET[budget], step)
        flops = count_flops(arch)
        if i < n:
            hard = round(float(rng.uniform(0.4, 0.8)), 4)
            rec = TrialRecord(f"t{i:03d}", arch, flops, "TERMINATED", hard + 0.15, hard + 0.1, hard, 10)
        elif i < n + failed:
            rec = TrialRecord(f"t{i:03d}", arch, flops, "ERROR", error="CUDA out of memory")
        else:
            rec = TrialRecord(f"t{i:03d}", arch, flops, "RUNNING")
        trials.append(rec)
    store.write_trials(trials)
    return trials


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[TrialRecord]]]:
    """Three stores validated on WIDER FACE val: a step-1 search with failures, a step-2 search at another
    budget, a one-trial store."""
    root = tmp_path_factory.mktemp("results")
    wider = wider_val_folder(root)
    stores = {
        "s1": make_store(root, "s1", budget=2.5, step=1, n=40, seed=1, failed=2, pending=1, data_root=wider),
        "s2": make_store(root, "s2", budget=10.0, step=2, n=25, seed=2, searcher="optuna", data_root=wider),
        "one": make_store(root, "one", budget=0.5, step=2, n=1, seed=3, data_root=wider),
    }
    return root, stores


def wider_val_folder(root: Path) -> Path:
    """A data folder whose ground truth is the real WIDER FACE val set's (linked, when it is here)."""
    folder = root / "widerface"
    folder.mkdir()
    (folder / "wider_face_split").symlink_to(REAL_GT, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def plotted(results: tuple[Path, dict]) -> tuple[Path, list[Path]]:
    """All figures for the three stores, drawn once for the module."""
    root, _ = results
    out = root / "figs"
    return out, plot_experiments(["s1", "s2", "one"], out, ("png",), results_dir=root)


def scored(trials: list[TrialRecord]) -> list[TrialRecord]:
    """The trials a figure should show."""
    return [t for t in trials if t.state != "ERROR" and t.hard is not None]


def test_every_figure_written_with_its_csv(plotted: tuple[Path, list[Path]]) -> None:
    out, written = plotted
    stems = {p.stem for p in written}
    for name in ("s1", "s2", "one"):
        assert {f"backbone_shares_{name}", f"shallow_share_{name}", f"detector_shares_{name}"} <= stems
    assert {"edf_hard_ap", "budget_distribution", "pareto_hard_ap_gflops"} <= stems
    for stem in stems:
        for ext, magic in (("png", b"\x89PNG"), ("csv", None)):
            path = out / f"{stem}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path
            if magic:
                assert path.read_bytes().startswith(magic)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_backbone_share_csv_matches_store(results: tuple[Path, dict], plotted: tuple[Path, list[Path]]) -> None:
    _, stores = results
    out, _ = plotted
    rows = read_csv(out / "backbone_shares_s1.csv")
    expected = scored(stores["s1"])
    assert len(rows) == len(expected) == 40  # the 2 failed and 1 running trials are left out
    by_id = {t.trial_id: t for t in expected}
    assert [r["trial_id"] for r in rows] == sorted(by_id, key=lambda i: (-by_id[i].hard, by_id[i].flops.total_gflops))
    n_best = math.ceil(BEST_FRACTION * 40)
    assert [r["best"] for r in rows].count("True") == n_best
    assert all(r["best"] == "True" for r in rows[:n_best])
    for row in rows:
        trial = by_id[row["trial_id"]]
        backbone = sum(trial.flops.gflops[c] for c in BACKBONE_COMPONENTS)
        for comp in BACKBONE_COMPONENTS:
            assert float(row[f"{comp}_pct_of_backbone"]) == pytest.approx(
                100 * trial.flops.gflops[comp] / backbone, rel=1e-5
            )
        assert float(row["hard_ap_pct"]) == pytest.approx(100 * trial.hard, rel=1e-5)
        assert sum(float(row[f"{c}_pct_of_backbone"]) for c in BACKBONE_COMPONENTS) == pytest.approx(100, rel=1e-4)


def test_shallow_and_detector_share_csvs(results: tuple[Path, dict], plotted: tuple[Path, list[Path]]) -> None:
    _, stores = results
    out, _ = plotted
    by_id = {t.trial_id: t for t in scored(stores["s2"])}
    shallow = read_csv(out / "shallow_share_s2.csv")
    detector = read_csv(out / "detector_shares_s2.csv")
    assert len(shallow) == len(detector) == 25
    for row in shallow:
        g = by_id[row["trial_id"]].flops.gflops
        expected = 100 * (g["stem"] + g["c2"] + g["c3"]) / sum(g[c] for c in BACKBONE_COMPONENTS)
        assert float(row["shallow_pct_of_backbone"]) == pytest.approx(expected, rel=1e-5)
    for row in detector:
        f = by_id[row["trial_id"]].flops
        assert float(row["neck_pct_of_detector"]) == pytest.approx(100 * f.gflops["neck"] / f.total_gflops, rel=1e-5)
        assert float(row["head_pct_of_detector"]) == pytest.approx(100 * f.gflops["head"] / f.total_gflops, rel=1e-5)
        assert float(row["total_gflops"]) == pytest.approx(f.total_gflops, rel=1e-5)


def test_one_trial_store_plots(plotted: tuple[Path, list[Path]]) -> None:
    out, _ = plotted
    rows = read_csv(out / "backbone_shares_one.csv")
    assert len(rows) == 1 and rows[0]["best"] == "True"


def test_edf_csv_is_the_empirical_distribution(results: tuple[Path, dict], plotted: tuple[Path, list[Path]]) -> None:
    _, stores = results
    out, _ = plotted
    rows = read_csv(out / "edf_hard_ap.csv")
    for name, trials in stores.items():
        mine = [r for r in rows if r["store"] == name]
        assert {r["searcher"] for r in mine} == {"optuna" if name == "s2" else "random"}
        aps = sorted(100 * t.hard for t in scored(trials))
        assert [float(r["hard_ap_pct"]) for r in mine] == pytest.approx(aps, rel=1e-5)
        assert [float(r["edf"]) for r in mine] == pytest.approx([(i + 1) / len(aps) for i in range(len(aps))])


def test_pareto_csv_marks_exactly_the_undominated_trials(
    results: tuple[Path, dict], plotted: tuple[Path, list[Path]]
) -> None:
    _, stores = results
    out, _ = plotted
    rows = [r for r in read_csv(out / "pareto_hard_ap_gflops.csv") if r["source"] == "search"]
    everything = [t for trials in stores.values() for t in scored(trials)]
    assert len(rows) == len(everything) == 66
    for row in rows:
        cost, ap = float(row["total_gflops"]), float(row["hard_ap_pct"])
        dominated = any(
            t.flops.total_gflops <= cost * (1 + 1e-6)
            and 100 * t.hard >= ap * (1 - 1e-6)
            and (t.flops.total_gflops < cost * (1 - 1e-6) or 100 * t.hard > ap * (1 + 1e-6))
            for t in everything
        )
        assert (row["pareto"] == "True") == (not dominated), row
    # the best trial overall and the cheapest trial are always on the front
    assert any(
        r["pareto"] == "True" and float(r["hard_ap_pct"]) == max(float(x["hard_ap_pct"]) for x in rows) for r in rows
    )


@needs_real_gt
def test_pareto_marks_the_published_models_from_the_paper(
    results: tuple[Path, dict], plotted: tuple[Path, list[Path]]
) -> None:
    _, stores = results
    out, _ = plotted
    rows = [r for r in read_csv(out / "pareto_hard_ap_gflops.csv") if r["source"] == "paper"]
    costs = [t.flops.total_gflops for trials in stores.values() for t in scored(trials)]
    # the paper's table (SCRFD_FACTS.md): GFLOPs at 640x480 and WIDER FACE val hard AP
    paper = {
        "scrfd_500m": (0.508, 68.51),
        "scrfd_2.5g": (2.53, 77.87),
        "scrfd_10g": (9.98, 83.05),
        "scrfd_34g": (34.13, 85.29),
    }
    in_range = {n: v for n, v in paper.items() if min(costs) / 3 <= v[0] <= max(costs) * 3}
    assert len(in_range) >= 3  # the fixture's budgets 0.5, 2.5 and 10 GF
    assert {r["trial_id"]: (float(r["total_gflops"]), float(r["hard_ap_pct"])) for r in rows} == in_range


@needs_real_gt
def test_the_real_wider_face_val_ground_truth_is_recognised(tmp_path: Path) -> None:
    assert is_wider_face_val(REAL_GT)
    assert read_validation_set(REAL_GT).describe() == "3,226 images in 61 events"
    write_demo_dataset(tmp_path / "demo", DemoConfig(num_train=1, num_val=5, seed=0))
    assert not is_wider_face_val(tmp_path / "demo" / "wider_face_split")
    assert not is_wider_face_val(tmp_path / "nowhere")


def test_pareto_leaves_out_published_marks_for_stores_not_validated_on_wider_val(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    write_demo_dataset(demo, DemoConfig(num_train=1, num_val=5, seed=0))
    make_store(tmp_path, "on-demo", budget=0.5, step=1, n=6, seed=4, data_root=demo)
    make_store(tmp_path, "unrecorded", budget=0.5, step=1, n=6, seed=5)
    for name, why in (
        ("on-demo", "on-demo was validated on 5 images in 4 events, not WIDER FACE val (3,226 images in 61 events)"),
        ("unrecorded", "unrecorded does not record its validation data"),
    ):
        drawn = pareto_figure(load_views([name], tmp_path))
        rows = [r for r in drawn.rows if r["source"] == "paper"]
        labels = drawn.figure.axes[0].get_legend_handles_labels()[1]
        assert rows == [] and not any(label.startswith("published") for label in labels)
        caption = " ".join(drawn.figure.get_supxlabel().split())
        assert f"published SCRFD APs left out: {why}" in caption
        assert not any(t.get_text().startswith("SCRFD-") for t in drawn.figure.axes[0].texts)


def test_pareto_front_small_cases() -> None:
    assert pareto_front([(1, 50), (2, 40), (3, 60), (3, 55), (0.5, 10)]) == [True, False, True, False, True]
    assert pareto_front([(1, 50), (1, 50)]) == [True, True]
    assert pareto_front([(1, 50)]) == [True]


def test_budget_distribution_csv(results: tuple[Path, dict], plotted: tuple[Path, list[Path]]) -> None:
    _, stores = results
    out, _ = plotted
    rows = read_csv(out / "budget_distribution.csv")
    assert [float(b) for b in dict.fromkeys(r["budget_gflops"] for r in rows)] == [0.5, 2.5, 10.0]
    s1 = [r for r in rows if r["stores"] == "s1"]
    n_best = math.ceil(BEST_FRACTION * 40)
    assert {r["n_best"] for r in s1} == {str(n_best)} and {r["n_trials"] for r in s1} == {"40"}
    best = sorted(scored(stores["s1"]), key=lambda t: (-t.hard, t.flops.total_gflops))[:n_best]
    for row in s1:
        if row["panel"] == "detector":
            expected = np.mean([t.flops.gflops[row["component"]] / t.flops.total_gflops for t in best])
        else:
            expected = np.mean([t.flops.backbone_shares()[row["component"]] for t in best])
        assert float(row["mean_pct"]) == pytest.approx(100 * expected, rel=1e-5)
    for panel in ("backbone", "detector"):
        assert sum(float(r["mean_pct"]) for r in s1 if r["panel"] == panel) == pytest.approx(100, rel=1e-4)


def test_cli_plot_default_out_and_errors(results: tuple[Path, dict], capsys: pytest.CaptureFixture) -> None:
    root, _ = results
    assert main(["plot", "one", "--format", "svg,pdf", "--results-dir", str(root)]) == 0
    plots = root / "one" / "plots"
    assert (plots / "pareto_hard_ap_gflops.svg").read_bytes().startswith(b"<?xml")
    assert (plots / "backbone_shares_one.pdf").read_bytes().startswith(b"%PDF")
    assert not list(plots.glob("*.png"))
    assert main(["plot", "missing", "--results-dir", str(root)]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["plot", "one", "--format", "png,jpg", "--results-dir", str(root)]) == 2
    assert "jpg" in capsys.readouterr().err


def test_store_with_only_failed_trials_is_refused(tmp_path: Path) -> None:
    make_store(tmp_path, "bad", budget=2.5, step=1, n=0, seed=4, failed=2)
    with pytest.raises(Exception, match="no trial with a hard AP"):
        plot_experiments(["bad"], tmp_path / "out", results_dir=tmp_path)
    assert not (tmp_path / "out").exists()


def test_parse_formats() -> None:
    assert parse_formats("png, SVG,png") == ("png", "svg")


def test_caption_counts_left_out_trials_and_title_names_budget_and_step(results: tuple[Path, dict]) -> None:
    root, _ = results
    out = root / "svg"
    plot_experiments(["s1"], out, ("svg",), results_dir=root)
    text = (out / "backbone_shares_s1.svg").read_text()  # SVG text is kept as text (svg.fonttype none)
    assert "n = 40 trials plotted; 3 failed or unfinished trials left out" in text
    assert "s1: 2.5 GFLOPs budget, step 1 (random)" in text


def test_second_plot_of_a_recipe_search_reuses_its_own_folder(tmp_path: Path) -> None:
    """A search with a `recipe:` section gets the optimizer figure; plotting it again must not refuse the folder."""
    trials = make_store(tmp_path, "rs", budget=2.5, step=1, n=6, seed=5)
    store = ExperimentStore(tmp_path / "rs")
    record = {"name": "rs", "step": 1, "budget_gflops": 2.5, "tolerance": 0.02, "searcher": "random"}
    atomic_write_json(store.experiment_file, {**record, "recipe_space": {"optimizer": ["sgd", "adamw"]}})
    optimizers = ("sgd", "adamw")
    store.write_trials([t.updated(recipe={"optimizer": optimizers[i % 2]}) for i, t in enumerate(trials)])
    out = tmp_path / "figs"
    first = plot_experiments(["rs"], out, ("png",), results_dir=tmp_path)
    assert out / "optimizers_rs.png" in first
    second = plot_experiments(["rs"], out, ("png",), results_dir=tmp_path)
    assert sorted(second) == sorted(first)
