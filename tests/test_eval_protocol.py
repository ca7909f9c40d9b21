"""The WIDER FACE AP: hand-worked cases, the fast path against the literal official algorithm, real gt."""

from __future__ import annotations

import numpy as np
import pytest
from search_helpers import SHARED_GT

from scrfd_search.evaluation import SUBSETS, build_ground_truth, evaluate, load_ground_truth
from scrfd_search.evaluation.reference import evaluate_reference

GT_DIR = SHARED_GT
ALL = None  # keep every face in every subset


def pred(*rows: tuple[float, float, float, float, float]) -> np.ndarray:
    """Prediction rows x y w h score as a (P, 5) array."""
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


FACE_A = (0, 0, 10, 10)
FACE_B = (100, 100, 10, 10)
FAR = (5000, 5000, 10, 10)


# --- (a) small cases worked out by hand -------------------------------------------------------------
# Scores are normalised as (s - min(s_min, 1)) / (max(s_max, 0) - min(s_min, 1)); with scores 1, 0.5
# and 0 they stay as they are. thresh_t = 1 - (t+1)/1000, so a score 0.5 first counts at t = 499 and
# a score 0 only at t = 999.


def test_hand_case_false_positive_between_two_faces():
    # t < 499: 1 proposal, 1 recalled -> P 1, R 0.5; 499 <= t < 999: P 1/2, R 0.5; t = 999: P 2/3, R 1.
    # Envelope: 1 up to R 0.5, then 2/3 -> AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    gt = build_ground_truth([("e", "img", [FACE_A, FACE_B], ALL)])
    result = evaluate(gt, {("e", "img"): pred((*FACE_A, 1.0), (*FAR, 0.5), (*FACE_B, 0.0))})
    for subset in SUBSETS:
        assert result.ap[subset] == pytest.approx(5 / 6, abs=1e-12)
    curve = result.curves["hard"]
    assert curve.precision[0] == 1.0 and curve.recall[0] == 0.5
    assert curve.precision[499] == 0.5 and curve.precision[998] == 0.5
    assert curve.precision[999] == pytest.approx(2 / 3) and curve.recall[999] == 1.0


def test_hand_case_prediction_on_face_outside_subset_is_ignored():
    # Face C counts only in hard. Its prediction (score 1) is neither TP nor FP in easy: there, no
    # proposal until t = 999 (precision NaN, recall 0), then P 1, R 1 -> AP 1. In hard: P 1 throughout,
    # recall 0.5 then 1 -> AP 1. Were it a false positive, easy would give 0.5.
    keep = {"easy": [0], "medium": [0], "hard": [0, 1]}
    gt = build_ground_truth([("e", "img", [FACE_A, FACE_B], keep)])
    result = evaluate(gt, {("e", "img"): pred((*FACE_B, 1.0), (*FACE_A, 0.0))})
    assert result.ap == pytest.approx({"easy": 1.0, "medium": 1.0, "hard": 1.0})
    assert np.isnan(result.curves["easy"].precision[:999]).all()


def test_hand_case_false_positive_ranked_first_halves_ap():
    # t < 999: P 0/1, R 0; t = 999: P 1/2, R 1 -> AP = 1 * 1/2.
    gt = build_ground_truth([("e", "img", [FACE_A], ALL)])
    result = evaluate(gt, {("e", "img"): pred((*FAR, 1.0), (*FACE_A, 0.0))})
    assert result.ap["hard"] == pytest.approx(0.5, abs=1e-12)


def test_hand_case_duplicate_below_the_true_positive_costs_nothing():
    # t < 999: P 1, R 1 (the duplicate scores 0); the envelope keeps 1 -> AP 1.
    gt = build_ground_truth([("e", "img", [FACE_A], ALL)])
    result = evaluate(gt, {("e", "img"): pred((*FACE_A, 1.0), (*FACE_A, 0.0))})
    assert result.ap["hard"] == pytest.approx(1.0, abs=1e-12)
    assert result.curves["hard"].precision[999] == 0.5


def test_hand_case_iou_uses_plus_one_pixels():
    # Face 0 0 10 10 spans 11 x 11 pixels. A copy shifted right by d has IoU (11 - d) / (11 + d):
    # d = 3.5 gives 0.517 (a match; without the +1 it would be 6.5 / 13.5 = 0.48), d = 4 gives 0.467.
    # (A far false positive scoring 0 keeps the scores from being all equal; it costs nothing.)
    gt = build_ground_truth([("e", "img", [FACE_A], ALL)])
    assert evaluate(gt, {("e", "img"): pred((3.5, 0, 10, 10, 1.0), (*FAR, 0.0))}).ap["hard"] == pytest.approx(1.0)
    assert evaluate(gt, {("e", "img"): pred((4, 0, 10, 10, 1.0), (*FAR, 0.0))}).ap["hard"] == 0.0


def test_hand_case_iou_of_exactly_half_matches():
    # 11 x 11 face (12 x 12 pixels) and a copy shifted by 4: intersection 8 * 12 = 96, union 192.
    gt = build_ground_truth([("e", "img", [(0, 0, 11, 11)], ALL)])
    assert evaluate(gt, {("e", "img"): pred((4, 0, 11, 11, 1.0), (*FAR, 0.0))}).ap["hard"] == pytest.approx(1.0)


def test_hand_case_predictions_on_an_image_without_faces_are_not_false_positives():
    # The official loop skips images without faces, but their scores still set the normalisation:
    # here the face-less image's 1.0 pushes the true positive to 0, so it counts only at t = 999.
    gt = build_ground_truth([("e", "faces", [FACE_A], ALL), ("e", "empty", [], ALL)])
    result = evaluate(gt, {("e", "faces"): pred((*FACE_A, 0.0)), ("e", "empty"): pred((*FACE_B, 1.0))})
    assert result.ap["hard"] == pytest.approx(1.0)
    assert result.curves["hard"].recall[998] == 0.0


def test_hand_case_image_without_predictions_caps_recall():
    # Face B (another image) is never predicted: recall tops at 1/2 with precision 1 -> AP 0.5.
    gt = build_ground_truth([("e", "one", [FACE_A], ALL), ("e", "two", [FACE_B], ALL)])
    result = evaluate(gt, {("e", "one"): pred((*FACE_A, 0.7), (*FAR, 0.0))})
    assert result.ap["hard"] == pytest.approx(0.5)


def test_hand_case_normalisation_starts_from_min_1_and_max_0():
    # Scores 3, 2.9985, 2: the official scan starts with min 1, so s -> (s - 1) / 2: 1, 0.99925, 0.5.
    # The face A hit and the false positive then share the first threshold bin: P 1/2, R 1/2, then
    # P 2/3, R 1 -> AP 2/3. (A plain min-max, s -> s - 2, would split them and give 5/6.)
    gt = build_ground_truth([("e", "img", [FACE_A, FACE_B], ALL)])
    result = evaluate(gt, {("e", "img"): pred((*FACE_A, 3.0), (*FAR, 2.9985), (*FACE_B, 2.0))})
    assert result.ap["hard"] == pytest.approx(2 / 3, abs=1e-12)


def test_hand_case_equal_scores_give_zero_as_the_official_tool():
    # All scores equal (a single prediction included): max - min = 0, the official normalisation yields
    # NaN, and no score passes any threshold.
    gt = build_ground_truth([("e", "img", [FACE_A], ALL)])
    assert evaluate(gt, {("e", "img"): pred((*FACE_A, 1.0))}).ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}


def test_subset_without_faces_gives_nan_as_the_official_tool():
    keep = {"easy": [], "medium": [0], "hard": [0]}
    gt = build_ground_truth([("e", "img", [FACE_A], keep)])
    result = evaluate(gt, {("e", "img"): pred((*FACE_A, 1.0), (*FAR, 0.0))})
    assert np.isnan(result.ap["easy"]) and result.ap["hard"] == pytest.approx(1.0)


# --- (b) the fast path against the literal transcription of the official algorithm -----------------


def random_case(seed: int, score_low: float, score_high: float):
    """Random gt (empty images, partial keep lists, duplicate faces) and predictions (jittered hits,
    duplicates, false positives, tied scores, missing and empty images, an image outside the gt)."""
    rng = np.random.default_rng(seed)
    entries, detections = [], {}
    for i in range(24):
        faces = int(rng.choice([0, 1, 3, 8, 15]))
        xy = rng.uniform(0, 300, (faces, 2))
        wh = rng.uniform(2, 60, (faces, 2))
        boxes = np.round(np.column_stack([xy, wh]))
        if faces > 2 and rng.random() < 0.3:
            boxes[1] = boxes[0]  # a duplicate face: the second can never be recalled
        hard = np.flatnonzero(rng.random(faces) < 0.8)
        medium = hard[rng.random(len(hard)) < 0.6]
        easy = medium[rng.random(len(medium)) < 0.5]
        entries.append((f"ev{i % 3}", f"img{i}", boxes, {"easy": easy, "medium": medium, "hard": hard}))
        if rng.random() < 0.15:
            continue  # no prediction file for this image
        hits = boxes[rng.random(faces) < 0.7]
        hits = hits + rng.normal(0, 1, hits.shape) * np.maximum(hits[:, 2:], 1).repeat(2, axis=1) * 0.15
        extra = rng.integers(0, 6)
        false_pos = np.column_stack([rng.uniform(0, 300, (extra, 2)), rng.uniform(2, 60, (extra, 2))])
        dupes = hits[: rng.integers(0, 3)]
        rows = np.vstack([hits, dupes, false_pos])
        scores = np.round(rng.uniform(score_low, score_high, len(rows)), 2)  # rounding makes ties
        detections[(f"ev{i % 3}", f"img{i}")] = np.column_stack([rows, scores]).reshape(-1, 5)
    detections[("elsewhere", "not_in_gt")] = np.array([[0, 0, 5, 5, score_high + 0.5]])
    return build_ground_truth(entries), detections


@pytest.mark.parametrize(
    ("seed", "score_low", "score_high"),
    [(0, 0.0, 1.0), (1, 0.0, 1.0), (2, 0.3, 0.6), (3, 2.0, 5.0), (4, -3.0, 4.0), (5, 0.02, 0.99), (6, -5.0, -1.0)],
)
def test_fast_path_equals_reference(seed, score_low, score_high):
    gt, detections = random_case(seed, score_low, score_high)
    fast = evaluate(gt, detections)
    slow = evaluate_reference(gt, detections)
    for subset in SUBSETS:
        ap, precision, recall = slow[subset]
        assert fast.ap[subset] == pytest.approx(ap, abs=1e-12), subset
        np.testing.assert_allclose(fast.curves[subset].precision, precision, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.curves[subset].recall, recall, rtol=0, atol=1e-12)
    assert 0.0 < fast.ap["hard"] < 1.0


def test_order_of_predictions_in_an_image_does_not_matter():
    gt, detections = random_case(7, 0.0, 1.0)
    rng = np.random.default_rng(7)
    shuffled = {key: boxes[rng.permutation(len(boxes))] for key, boxes in detections.items()}
    assert evaluate(gt, shuffled).ap == evaluate(gt, detections).ap


# --- (c) the real validation ground truth ------------------------------------------------------------

needs_gt = pytest.mark.skipif(not GT_DIR.is_dir(), reason=f"WIDER FACE val ground truth not found at {GT_DIR}")


@pytest.fixture(scope="module")
def real_gt():
    return load_ground_truth(GT_DIR)


def detector_output(image) -> np.ndarray:
    """The boxes an ideal detector could output: each distinct gt box once, degenerate ones dropped."""
    boxes = np.unique(image.boxes, axis=0)
    return boxes[(boxes[:, 2] >= 0) & (boxes[:, 3] >= 0)]


def recallable_kept_faces(image, subset: str) -> int:
    """Kept faces an ideal detector recalls: not degenerate, and first among identical boxes."""
    count = 0
    for index in image.keep[subset]:
        box = image.boxes[index]
        first_copy = int(np.flatnonzero((image.boxes == box).all(axis=1))[0])
        count += int(box[2] >= 0 and box[3] >= 0 and first_copy == index)
    return count


def perfect_predictions(gt, seed: int, skip=frozenset()) -> dict:
    """Ideal detector output with random scores, except for the images in skip."""
    rng = np.random.default_rng(seed)
    detections = {}
    for image in gt.images:
        if image.key in skip:
            continue
        boxes = detector_output(image)
        detections[image.key] = np.column_stack([boxes, rng.random(len(boxes))])
    return detections


@needs_gt
def test_real_gt_perfect_predictions_reach_every_recallable_face(real_gt):
    # Two hard faces cannot be recalled by any detector: a face of width -2 (39_Ice_Skating_iceskiing_39_583)
    # and the second of two identical boxes (21_Festival_Festival_21_604), which loses the argmax tie.
    result = evaluate(real_gt, perfect_predictions(real_gt, seed=0))
    assert result.num_faces == {"easy": 7211, "medium": 13319, "hard": 31958}
    assert result.ap["easy"] == pytest.approx(1.0, abs=1e-12)
    assert result.ap["medium"] == pytest.approx(1.0, abs=1e-12)
    assert result.ap["hard"] == pytest.approx(31956 / 31958, abs=1e-12)
    for subset in SUBSETS:
        precision = result.curves[subset].precision
        assert (precision[~np.isnan(precision)] == 1.0).all()


@needs_gt
def test_real_gt_dropping_events_caps_ap_at_the_remaining_recall(real_gt):
    dropped_events = set(real_gt.events[::3])
    skip = {image.key for image in real_gt.images if image.event in dropped_events}
    result = evaluate(real_gt, perfect_predictions(real_gt, seed=1, skip=skip))
    for subset in SUBSETS:
        ceiling = sum(recallable_kept_faces(im, subset) for im in real_gt.images if im.key not in skip)
        assert result.ap[subset] == pytest.approx(ceiling / real_gt.num_faces(subset), abs=1e-12)
        assert result.ap[subset] < 0.8


@needs_gt
def test_real_gt_boxes_moved_off_their_faces_score_zero(real_gt):
    moved = {key: boxes + np.array([1e5, 1e5, 0, 0, 0]) for key, boxes in perfect_predictions(real_gt, 2).items()}
    assert evaluate(real_gt, moved).ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}


@needs_gt
def test_real_gt_constant_scores_follow_the_official_division_by_zero(real_gt):
    detections = {
        key: np.column_stack([boxes[:, :4], np.ones(len(boxes))])
        for key, boxes in perfect_predictions(real_gt, 3).items()
    }
    assert evaluate(real_gt, detections).ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}


@needs_gt
def test_real_gt_jittered_predictions_match_reference_on_two_events(real_gt):
    rng = np.random.default_rng(4)
    events = set(real_gt.events[:2])
    gt = real_gt.restrict(image.key for image in real_gt.images if image.event in events)
    detections = {}
    for image in gt.images:
        boxes = image.boxes[rng.random(image.num_faces) < 0.6][:20]
        boxes = boxes + rng.normal(0, 0.15, boxes.shape) * np.maximum(boxes[:, 2:], 1).repeat(2, axis=1)
        false_pos = np.column_stack([rng.uniform(0, 1000, (3, 2)), rng.uniform(5, 80, (3, 2))])
        rows = np.vstack([boxes, false_pos])
        detections[image.key] = np.column_stack([rows, rng.random(len(rows))])
    fast, slow = evaluate(gt, detections), evaluate_reference(gt, detections)
    assert fast.ap == pytest.approx({subset: slow[subset][0] for subset in SUBSETS}, abs=1e-12)
