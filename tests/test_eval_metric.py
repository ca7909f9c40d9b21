"""WiderFaceMetric, driven as mmengine drives it: process() per batch, then evaluate()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmdet.registry import METRICS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from search_helpers import SHARED_GT

from scrfd_search.errors import UserError
from scrfd_search.evaluation import SUBSETS, evaluate, load_ground_truth, read_predictions
from scrfd_search.evaluation.metric import WiderFaceMetric

GT_DIR = SHARED_GT
pytestmark = pytest.mark.skipif(not GT_DIR.is_dir(), reason=f"WIDER FACE val ground truth not found at {GT_DIR}")


@pytest.fixture(scope="module")
def gt():
    return load_ground_truth(GT_DIR)


def sample_dicts(images, seed: int) -> list[dict]:
    """Data samples as the mmengine Evaluator hands them to process(): to_dict() of DetDataSample.

    Predictions are the images' gt boxes (x1 y1 x2 y2 = x, y, x + w, y + h) with random float32 scores.
    """
    rng = np.random.default_rng(seed)
    samples = []
    for image in images:
        xyxy = np.column_stack([image.boxes[:, :2], image.boxes[:, :2] + image.boxes[:, 2:]])
        samples.append(
            {
                "img_path": f"/data/WIDER_val/images/{image.event}/{image.name}.jpg",
                "pred_instances": {
                    "bboxes": torch.tensor(xyxy, dtype=torch.float32),
                    "scores": torch.tensor(rng.random(len(xyxy)), dtype=torch.float32),
                },
            }
        )
    return samples


def run_metric(metric: WiderFaceMetric, samples: list, batch_size: int = 8) -> dict:
    """Feed samples in batches and return evaluate()'s prefixed results."""
    for start in range(0, len(samples), batch_size):
        metric.process({}, samples[start : start + batch_size])
    return metric.evaluate(len(samples))


def two_events(gt):
    """The images of the first two events (no duplicate or negative-width faces there)."""
    events = set(gt.events[:2])
    return [image for image in gt.images if image.event in events]


def test_metric_scores_the_processed_images(gt):
    images = two_events(gt)
    results = run_metric(WiderFaceMetric(gt_dir=GT_DIR), sample_dicts(images, seed=0))
    assert set(results) == {"widerface/easy", "widerface/medium", "widerface/hard"}
    for subset in SUBSETS:
        assert results[f"widerface/{subset}"] == pytest.approx(1.0, abs=1e-12)


def test_metric_over_all_of_val_counts_unprocessed_images_as_misses(gt):
    images = two_events(gt)
    metric = WiderFaceMetric(gt_dir=GT_DIR, restrict_to_processed=False)
    results = run_metric(metric, sample_dicts(images, seed=0))
    for subset in SUBSETS:
        ceiling = sum(len(image.keep[subset]) for image in images) / gt.num_faces(subset)
        assert results[f"widerface/{subset}"] == pytest.approx(ceiling, abs=1e-12)
        assert results[f"widerface/{subset}"] < 0.2


def test_metric_accepts_det_data_samples_and_matches_the_library(gt):
    images = two_events(gt)[::3]
    rng = np.random.default_rng(1)
    samples, detections = [], {}
    for image in images:
        kept = image.boxes[rng.random(image.num_faces) < 0.7]
        xyxy = np.column_stack([kept[:, :2] + 1, kept[:, :2] + kept[:, 2:] + 1]).astype(np.float32)
        scores = rng.random(len(kept)).astype(np.float32)
        sample = DetDataSample(metainfo={"img_path": f"val/{image.event}/{image.name}.jpg"})
        sample.pred_instances = InstanceData(bboxes=torch.from_numpy(xyxy), scores=torch.from_numpy(scores))
        samples.append(sample)
        wide = xyxy.astype(np.float64)
        detections[image.key] = np.column_stack([wide[:, :2], wide[:, 2:] - wide[:, :2], scores.astype(np.float64)])
    results = run_metric(WiderFaceMetric(gt_dir=GT_DIR, prefix="val"), samples)
    expected = evaluate(gt.restrict(detections), detections).ap
    assert results == {f"val/{subset}": expected[subset] for subset in SUBSETS}
    assert 0.3 < results["val/hard"] < 0.95


def test_metric_files_give_the_same_ap_as_the_metric(gt, tmp_path):
    images = two_events(gt)
    metric = WiderFaceMetric(gt_dir=GT_DIR, outfile_dir=tmp_path, restrict_to_processed=False)
    samples = sample_dicts(images, seed=2)
    samples[0]["pred_instances"]["bboxes"][:, 0] += 3.3  # make the APs non-trivial
    results = run_metric(metric, samples)
    assert len(list(tmp_path.glob("*/*.txt"))) == len(images)
    from_files = evaluate(gt, read_predictions(tmp_path, gt)).ap
    assert {f"widerface/{subset}": ap for subset, ap in from_files.items()} == results


def test_metric_builds_from_the_mmdet_registry():
    metric = METRICS.build({"type": "WiderFaceMetric", "gt_dir": str(GT_DIR)})
    assert isinstance(metric, WiderFaceMetric) and metric.prefix == "widerface"


def test_metric_refuses_images_outside_the_ground_truth():
    metric = WiderFaceMetric(gt_dir=GT_DIR)
    metric.process(
        {},
        [
            {
                "img_path": "demo/images/train/img_0.jpg",
                "pred_instances": {"bboxes": torch.zeros(1, 4), "scores": torch.ones(1)},
            }
        ],
    )
    with pytest.raises(UserError, match="none of the 1 processed images is in the ground truth"):
        metric.evaluate(1)


def test_metric_with_a_bad_gt_dir_fails_at_construction(tmp_path):
    with pytest.raises(UserError, match="ground-truth folder not found"):
        WiderFaceMetric(gt_dir=tmp_path / "missing")


def test_metric_drops_non_finite_detections(gt):
    images = two_events(gt)[:6]
    clean = run_metric(WiderFaceMetric(gt_dir=GT_DIR), sample_dicts(images, seed=3))
    diverged = sample_dicts(images, seed=3)
    for sample in diverged:
        instances = sample["pred_instances"]
        instances["bboxes"] = torch.cat([instances["bboxes"], torch.tensor([[float("nan"), 0, 10, 10]])])
        instances["scores"] = torch.cat([instances["scores"], torch.tensor([0.99])])
    assert run_metric(WiderFaceMetric(gt_dir=GT_DIR), diverged) == clean
