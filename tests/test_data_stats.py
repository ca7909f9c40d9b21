"""data-stats: the large-crop list shrinks faces and moves ATSS positives to stride 8."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrfd_search.cli import main
from scrfd_search.data.demo import DemoConfig
from scrfd_search.data.pipelines import LARGE_CROPS, SMALL_CROPS
from scrfd_search.data.stats import PositiveCounter, collect_stats, size_histogram

IMG_SIZE = 320


@pytest.fixture(scope="module")
def demo_dir(demo_factory) -> Path:
    """24 training images at the default widths: enough faces for the crop statistics to differ clearly."""
    return demo_factory(DemoConfig(num_train=24, num_val=1, seed=11))


@pytest.fixture(scope="module")
def infos(demo_dir) -> list[dict]:
    from scrfd_search.data.datasets import WiderFaceDataset
    from scrfd_search.data.pipelines import dataset_config

    cfg = {k: v for k, v in dataset_config(demo_dir, "train").items() if k not in ("type", "pipeline")}
    ds = WiderFaceDataset(**cfg)
    return [ds.get_data_info(i) for i in range(len(ds))]


def test_size_histogram_bins():
    assert size_histogram([1, 7.9, 8, 15, 16, 40, 64, 127, 128, 500]) == [2, 2, 1, 1, 2, 2]


def test_positive_counter_puts_small_faces_on_stride_8_and_large_on_32():
    import numpy as np

    counter = PositiveCounter(IMG_SIZE)
    assert counter.num_level_priors == [2 * 40 * 40, 2 * 20 * 20, 2 * 10 * 10]
    small = counter.count(np.array([[100, 100, 116, 116]], np.float32))
    large = counter.count(np.array([[20, 20, 280, 280]], np.float32))
    assert small[0] > 0 and small[2] == 0
    assert large[2] > 0 and large[0] == 0
    assert counter.count(np.zeros((0, 4), np.float32)) == [0, 0, 0]


def test_large_crops_give_more_small_faces_and_stride_8_positives(infos):
    small = collect_stats(infos, IMG_SIZE, SMALL_CROPS, seed=0)
    large = collect_stats(infos, IMG_SIZE, LARGE_CROPS, seed=0)
    assert small.num_images == large.num_images == len(infos)

    def share_below_16(stats):
        hist = stats.size_histogram()
        return (hist[0] + hist[1]) / sum(hist)

    def stride8_share(stats):
        return stats.positives[0] / sum(stats.positives)

    assert share_below_16(large) > share_below_16(small) + 0.05
    assert stride8_share(large) > stride8_share(small)
    again = collect_stats(infos, IMG_SIZE, LARGE_CROPS, seed=0)
    assert again == large  # seeded: the same numbers twice


def test_cli_prints_side_by_side_table_and_writes_png(demo_dir, tmp_path, capsys):
    plot = tmp_path / "fig" / "stats.png"
    argv = ["data-stats", "--data", str(demo_dir), "--img-size", str(IMG_SIZE), "--num-images", "6"]
    assert main([*argv, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "small crops 0.3-1.0" in out and "large crops 0.3-2.0" in out
    for label in ("<8", "8-16", ">=128", "stride 8", "stride 16", "stride 32"):
        assert label in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["data-stats", "--data", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["data-stats", "--data", str(tmp_path)]) == 2
    assert "no annotations for split 'train'" in capsys.readouterr().err
    assert main(["data-stats", "--data", str(tmp_path), "--img-size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
