"""WIDER FACE files: the ground-truth .mat files, prediction files, and the eval-widerface command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat
from search_helpers import SHARED_GT

from scrfd_search.cli import main
from scrfd_search.errors import UserError
from scrfd_search.evaluation import (
    SUBSETS,
    evaluate,
    load_ground_truth,
    read_prediction_file,
    read_predictions,
    write_prediction_file,
)

GT_DIR = SHARED_GT
needs_gt = pytest.mark.skipif(not GT_DIR.is_dir(), reason=f"WIDER FACE val ground truth not found at {GT_DIR}")

# (event, image, boxes x y w h, {subset: 1-based kept indices}); covers a face-less image, a
# one-face image and a one-image event.
IMAGES = [
    ("0--Parade", "0_Parade_1", [[10, 20, 30, 40], [100, 100, 8, 9]], {"easy": [1], "medium": [1], "hard": [1, 2]}),
    ("0--Parade", "0_Parade_2", [], {"easy": [], "medium": [], "hard": []}),
    ("1--Handshaking", "1_Hand_1", [[5, 5, 50, 60]], {"easy": [], "medium": [1], "hard": [1]}),
]


def cells(items: list, layout: str) -> np.ndarray:
    """A MATLAB cell array of the items, N x 1 (as the official files) or 1-D (savemat writes 1 x N)."""
    array = np.empty((len(items), 1) if layout == "column" else len(items), dtype=object)
    for i, item in enumerate(items):
        array[i if layout != "column" else (i, 0)] = item
    return array


def write_gt(folder: Path, images=IMAGES, layout: str = "column") -> Path:
    """Write the four ground-truth .mat files for images, in the official variable structure."""
    events = list(dict.fromkeys(event for event, *_ in images))
    per_event = [[image for image in images if image[0] == event] for event in events]
    folder.mkdir(parents=True, exist_ok=True)
    savemat(
        folder / "wider_face_val.mat",
        {
            "event_list": cells(events, layout),
            "file_list": cells([cells([name for _, name, _, _ in group], layout) for group in per_event], layout),
            "face_bbx_list": cells(
                [
                    cells([np.array(b, dtype=np.int32).reshape(-1, 4) for _, _, b, _ in group], layout)
                    for group in per_event
                ],
                layout,
            ),
        },
    )
    for subset in SUBSETS:
        gt_list = cells(
            [
                cells([np.array(keep[subset], dtype=np.uint8).reshape(-1, 1) for *_, keep in group], layout)
                for group in per_event
            ],
            layout,
        )
        savemat(folder / f"wider_{subset}_val.mat", {"gt_list": gt_list, "event_list": cells(events, layout)})
    return folder


@pytest.mark.parametrize("layout", ["column", "row"])
def test_savemat_written_ground_truth_loads(tmp_path, layout):
    gt = load_ground_truth(write_gt(tmp_path / "gt", layout=layout))
    assert [image.key for image in gt.images] == [(event, name) for event, name, _, _ in IMAGES]
    for image, (_, _, boxes, keep) in zip(gt.images, IMAGES, strict=True):
        np.testing.assert_array_equal(image.boxes, np.array(boxes, dtype=float).reshape(-1, 4))
        for subset in SUBSETS:
            assert image.keep[subset].tolist() == [index - 1 for index in keep[subset]]
    assert gt.num_faces() == 3 and gt.num_faces("hard") == 3 and gt.num_faces("easy") == 1


@needs_gt
def test_real_ground_truth_has_the_official_counts():
    gt = load_ground_truth(GT_DIR)
    assert len(gt) == 3226 and len(gt.events) == 61 and gt.num_faces() == 39708
    assert [gt.num_faces(subset) for subset in SUBSETS] == [7211, 13319, 31958]
    first = gt.images[0]
    assert first.key == ("0--Parade", "0_Parade_marchingband_1_465")
    assert first.boxes[0].tolist() == [345, 211, 4, 4] and first.keep["hard"].tolist() == [30, 31, 124]


def test_missing_ground_truth_file_names_it(tmp_path):
    folder = write_gt(tmp_path / "gt")
    (folder / "wider_medium_val.mat").unlink()
    with pytest.raises(UserError, match=r"wider_medium_val\.mat: file not found .*gt_list"):
        load_ground_truth(folder)
    with pytest.raises(UserError, match=r"nowhere: ground-truth folder not found"):
        load_ground_truth(tmp_path / "nowhere")


def test_malformed_ground_truth_files_are_named(tmp_path):
    folder = write_gt(tmp_path / "bad_index", images=[("e", "a", [[1, 2, 3, 4]], {s: [2] for s in SUBSETS})])
    with pytest.raises(
        UserError,
        match=r"wider_easy_val\.mat: gt_list for e/a: expected 1-based face indices "
        r"for an image with 1 faces",
    ):
        load_ground_truth(folder)
    folder = write_gt(tmp_path / "no_var")
    savemat(folder / "wider_face_val.mat", {"event_list": cells(["e"], "column")})
    with pytest.raises(UserError, match=r"wider_face_val\.mat: missing variable\(s\) \['file_list', 'face_bbx_list'\]"):
        load_ground_truth(folder)
    folder = write_gt(tmp_path / "garbage")
    (folder / "wider_hard_val.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(UserError, match=r"wider_hard_val\.mat: cannot read as a MATLAB \.mat file"):
        load_ground_truth(folder)
    folder = write_gt(tmp_path / "short", images=IMAGES)
    savemat(folder / "wider_hard_val.mat", {"gt_list": cells([cells([np.zeros((0, 1))], "column")], "column")})
    with pytest.raises(UserError, match=r"wider_hard_val\.mat: gt_list has 1 events, expected 2"):
        load_ground_truth(folder)


# --- prediction files ---------------------------------------------------------------------------------


def test_written_prediction_file_reads_back_exactly(tmp_path):
    boxes = np.array([[10.25, 20.5, 40.125, 60.0], [0.1, 0.2, 0.7, 0.9]], dtype=np.float32)
    scores = np.array([0.91, 0.02], dtype=np.float32)
    path = write_prediction_file(tmp_path, "0--Parade", "0_Parade_1", boxes, scores)
    assert path == tmp_path / "0--Parade" / "0_Parade_1.txt"
    lines = path.read_text().splitlines()
    assert lines[:3] == ["0_Parade_1", "2", "10.25 20.5 29.875 39.5 " + repr(float(scores[0]))]
    name, read = read_prediction_file(path)
    assert name == "0_Parade_1"
    wide = boxes.astype(np.float64)
    expected = np.column_stack([wide[:, :2], wide[:, 2:] - wide[:, :2], scores.astype(np.float64)])
    np.testing.assert_array_equal(read, expected)  # bit for bit, so files and in-memory APs agree


def test_prediction_file_with_no_boxes(tmp_path):
    path = write_prediction_file(tmp_path, "e", "img", np.zeros((0, 4)), np.zeros(0))
    assert path.read_text() == "img\n0\n"
    assert read_prediction_file(path)[1].shape == (0, 5)


def test_writer_refuses_bad_input_and_writes_nothing(tmp_path):
    with pytest.raises(UserError, match="expected N x 4 boxes and N scores"):
        write_prediction_file(tmp_path, "e", "img", np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(UserError, match="expected finite boxes and scores"):
        write_prediction_file(tmp_path, "e", "img", np.zeros((1, 4)), [float("nan")])
    with pytest.raises(UserError, match="plain event name"):
        write_prediction_file(tmp_path, "a/b", "img", np.zeros((1, 4)), [0.5])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("img\n2\n1 2 3 4 0.9\n1 2 3 0.5\n", r"img\.txt:4: expected 'x y w h score' \(5 numbers\), got '1 2 3 0\.5'"),
        ("img\n1\n1 2 3 4 high\n", r"img\.txt:3: expected 'x y w h score' as 5 finite numbers, got '1 2 3 4 high'"),
        ("img\n1\n1 2 nan 4 0.5\n", r"img\.txt:3: expected 'x y w h score' as 5 finite numbers"),
        ("img\n3\n1 2 3 4 0.9\n", r"img\.txt:2: expected 3 'x y w h score' lines after the count, found 1"),
        ("img\nmany\n", r"img\.txt:2: expected the number of boxes \(an integer >= 0\), got 'many'"),
        ("img\n", r"img\.txt:2: expected the number of boxes on the second line"),
        ("other\n0\n", r"img\.txt:1: expected the image name 'img' \(the file's name\), got 'other'"),
    ],
)
def test_malformed_prediction_file_names_file_and_line(tmp_path, text, message):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "img.txt").write_text(text)
    with pytest.raises(UserError, match=message):
        read_predictions(tmp_path)


def test_prediction_header_may_hold_a_path_with_extension(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "img.txt").write_text("e/img.jpg\n1\n1 2 3 4 0.5\n\n")
    assert set(read_predictions(tmp_path).detections) == {("e", "img")}


def test_missing_files_are_counted_once(tmp_path, caplog):
    gt = load_ground_truth(write_gt(tmp_path / "gt"))
    write_prediction_file(tmp_path / "pred", "0--Parade", "0_Parade_1", [[10, 20, 40, 60]], [0.9])
    write_prediction_file(tmp_path / "pred", "9--Other", "stray", [[1, 1, 5, 5]], [0.1])
    with caplog.at_level(logging.WARNING):
        predictions = read_predictions(tmp_path / "pred", gt)
    assert predictions.missing == (("0--Parade", "0_Parade_2"), ("1--Handshaking", "1_Hand_1"))
    assert predictions.extra == (("9--Other", "stray"),)
    assert [r.getMessage() for r in caplog.records] == [
        f"2 of 3 ground-truth images have no prediction file under {tmp_path / 'pred'}; counted as no detections"
    ]


def test_empty_or_absent_prediction_folder_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no prediction files found"):
        read_predictions(tmp_path)
    with pytest.raises(UserError, match="prediction folder not found"):
        read_predictions(tmp_path / "absent")


# --- the eval-widerface command -----------------------------------------------------------------------


def write_synthetic_predictions(folder: Path) -> None:
    """Hit both faces of 0_Parade_1 (the small one scored lower), plus one false positive; skip 1_Hand_1."""
    write_prediction_file(folder, "0--Parade", "0_Parade_1", [[10, 20, 40, 60], [100, 100, 108, 109]], [0.9, 0.3])
    write_prediction_file(folder, "0--Parade", "0_Parade_2", [[0, 0, 50, 50]], [0.6])


def test_cli_json_prints_only_the_aps(tmp_path, capsys):
    gt_dir = write_gt(tmp_path / "gt")
    write_synthetic_predictions(tmp_path / "pred")
    assert main(["eval-widerface", "--pred", str(tmp_path / "pred"), "--gt", str(gt_dir), "--json"]) == 0
    out, err = capsys.readouterr()
    # easy: face 1 only, hit at the top score -> 1. medium/hard also count 1_Hand_1's face, which has no
    # file: recall tops at 1/2 (medium) and 2/3 (hard) with precision 1. (The 0_Parade_2 box is on a
    # face-less image, so it is no false positive.)
    assert json.loads(out) == pytest.approx({"easy": 1.0, "medium": 0.5, "hard": 2 / 3})
    assert list(json.loads(out)) == ["easy", "medium", "hard"] and out.count("\n") == 1
    assert err == "note: 1 of 3 ground-truth images have no prediction file (counted as no detections)\n"


def test_cli_table(tmp_path, capsys):
    gt_dir = write_gt(tmp_path / "gt")
    write_synthetic_predictions(tmp_path / "pred")
    assert main(["eval-widerface", "--pred", str(tmp_path / "pred"), "--gt", str(gt_dir)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:4]}
    assert rows == {"easy": ["100.00", "1"], "medium": ["50.00", "2"], "hard": ["66.67", "3"]}
    assert "images: 3, predictions: 3, missing prediction files: 1" in out


def test_cli_reports_a_malformed_file_with_its_line(tmp_path, capsys):
    gt_dir = write_gt(tmp_path / "gt")
    write_synthetic_predictions(tmp_path / "pred")
    bad = tmp_path / "pred" / "0--Parade" / "0_Parade_2.txt"
    bad.write_text("0_Parade_2\n1\n0 0 50 0.6\n")
    assert main(["eval-widerface", "--pred", str(tmp_path / "pred"), "--gt", str(gt_dir), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"scrfd-search eval-widerface: error: {bad}:3: expected 'x y w h score'")
    assert err.count("\n") == 1


def test_cli_reports_a_missing_gt_folder(tmp_path, capsys):
    write_synthetic_predictions(tmp_path / "pred")
    assert main(["eval-widerface", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "nogt")]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'nogt'}: ground-truth folder not found" in err


@needs_gt
def test_cli_on_real_gt_matches_the_recall_ceiling(tmp_path, capsys):
    gt = load_ground_truth(GT_DIR)
    rng = np.random.default_rng(0)
    events = set(gt.events[:2])
    chosen = [image for image in gt.images if image.event in events]
    for image in chosen:
        boxes = np.unique(image.boxes, axis=0)
        boxes = boxes[(boxes[:, 2] >= 0) & (boxes[:, 3] >= 0)]
        xyxy = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])
        write_prediction_file(tmp_path, image.event, image.name, xyxy, rng.random(len(boxes)))
    assert main(["eval-widerface", "--pred", str(tmp_path), "--gt", str(GT_DIR), "--json"]) == 0
    out, err = capsys.readouterr()
    # Two events have no duplicate or negative-width faces, so every kept face there is recalled.
    expected = {s: sum(len(im.keep[s]) for im in chosen) / gt.num_faces(s) for s in SUBSETS}
    assert json.loads(out) == pytest.approx(expected, abs=1e-12)
    assert f"{len(gt) - len(chosen)} of 3226 ground-truth images have no prediction file" in err
    assert evaluate(gt, read_predictions(tmp_path, gt)).ap == json.loads(out)
