"""The synthetic demo data set: official layout, .mat files shaped like the real ones, determinism,
atomic and refusing writes, faces that look like faces."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from scrfd_search.cli import main
from scrfd_search.data.annotations import parse_retinaface_txt, parse_wider_txt
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.data.demo_scene import load_face_sizes
from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import SUBSETS, load_ground_truth
from scrfd_search.evaluation.protocol import evaluate

REAL_GT = Path(__file__).resolve().parents[2] / "shared" / "widerface_gt"
SMALL = DemoConfig(num_train=8, num_val=6, seed=3)
DEMO_LIKE = DemoConfig(num_train=1, num_val=40, seed=0, min_width=192, max_width=256)  # `make demo`'s image sizes
STATS = load_face_sizes()
MAT_FILES = ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    write_demo_dataset(out, SMALL)
    return out


@pytest.fixture(scope="module")
def demo_like(tmp_path_factory) -> Path:
    """Validation images as `make demo` draws them (192-256 px wide), enough for subset statistics."""
    out = tmp_path_factory.mktemp("demo_like") / "data"
    write_demo_dataset(out, DEMO_LIKE)
    return out


def face_labels(path: Path) -> dict[str, list[list[int]]]:
    """Per image of an official text file, each face's labels: blur expression illumination invalid occlusion pose."""
    lines = path.read_text().splitlines()
    out, i = {}, 0
    while i < len(lines):
        name, count = lines[i], int(lines[i + 1])
        out[name] = [[int(v) for v in lines[i + 2 + k].split()[4:]] for k in range(count)]
        i += 2 + max(count, 1)
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file's bytes (and every link's target) under root, by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = os.readlink(path).encode()
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out


def test_official_and_retinaface_layouts_are_written(demo_dir):
    split_dir = demo_dir / "wider_face_split"
    for split, count in (("train", SMALL.num_train), ("val", SMALL.num_val)):
        records = parse_wider_txt(split_dir / f"wider_face_{split}_bbx_gt.txt")
        assert len(records) == count
        for r in records:
            assert (demo_dir / f"WIDER_{split}" / "images" / r.name).is_file()
        v2 = parse_retinaface_txt(demo_dir / split / "labelv2.txt")
        assert [r.name for r in v2] == [r.name for r in records]
        for r in v2:
            img = cv2.imread(str(demo_dir / split / "images" / r.name))
            assert img.shape[:2] == (r.height, r.width)
            assert 320 <= r.width <= 480
        # Same faces in both layouts; invalid faces carry the ignore flag in both.
        for a, b in zip(records, v2, strict=True):
            assert [i["bbox"] for i in a.instances] == [i["bbox"] for i in b.instances]
            assert [i["ignore_flag"] for i in a.instances] == [i["ignore_flag"] for i in b.instances]
            for inst in b.instances:
                if not inst["ignore_flag"]:
                    x1, y1, x2, y2 = inst["bbox"]
                    kps = inst["keypoints"]
                    assert kps[:, 2].all()
                    assert (kps[:, 0] >= x1 - 1).all() and (kps[:, 0] <= x2 + 1).all()
                    assert (kps[:, 1] >= y1 - 1).all() and (kps[:, 1] <= y2 + 1).all()
                    assert kps[0, 0] < kps[1, 0] and kps[3, 0] < kps[4, 0]  # left = smaller x


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path, demo_dir):
    again = tmp_path / "again"
    write_demo_dataset(again, SMALL)
    assert tree_bytes(again) == tree_bytes(demo_dir)
    other = tmp_path / "other"
    write_demo_dataset(other, DemoConfig(num_train=8, num_val=6, seed=4))
    assert tree_bytes(other) != tree_bytes(demo_dir)


def _assert_same_structure(real: dict, demo: dict, name: str) -> None:
    assert {k for k in real if not k.startswith("__")} == {k for k in demo if not k.startswith("__")}, name
    for key in (k for k in real if not k.startswith("__")):
        r, d = real[key], demo[key]
        assert (r.dtype, r.ndim, r.shape[1]) == (d.dtype, d.ndim, d.shape[1]), (name, key)
        if key == "event_list":
            assert type(r[0, 0]) is type(d[0, 0]) and r[0, 0].shape == d[0, 0].shape == (1,)
            assert r[0, 0].dtype.kind == d[0, 0].dtype.kind == "U"
            continue
        r_cell, d_cell = r[0, 0], d[0, 0]
        assert (r_cell.dtype, r_cell.ndim, r_cell.shape[1]) == (d_cell.dtype, d_cell.ndim, d_cell.shape[1]), (name, key)
        r_item, d_item = r_cell[0, 0], d_cell[0, 0]
        assert r_item.dtype.kind == d_item.dtype.kind, (name, key)
        assert r_item.ndim == d_item.ndim, (name, key)
        if key != "file_list":
            assert r_item.dtype == d_item.dtype and r_item.shape[1] == d_item.shape[1], (name, key)


@pytest.mark.skipif(not REAL_GT.is_dir(), reason=f"real WIDER FACE ground truth not found at {REAL_GT}")
@pytest.mark.parametrize("mat_name", MAT_FILES)
def test_mat_files_have_the_official_structure(demo_dir, mat_name):
    real = scipy.io.loadmat(REAL_GT / mat_name)
    demo = scipy.io.loadmat(demo_dir / "wider_face_split" / mat_name)
    _assert_same_structure(real, demo, mat_name)


def test_mat_files_agree_with_the_text_annotations(demo_dir):
    split_dir = demo_dir / "wider_face_split"
    records = {r.name: r for r in parse_wider_txt(split_dir / "wider_face_val_bbx_gt.txt")}
    widths = {r.name: r.width for r in parse_retinaface_txt(demo_dir / "val" / "labelv2.txt")}
    val = scipy.io.loadmat(split_dir / "wider_face_val.mat")
    keeps = {s: scipy.io.loadmat(split_dir / f"wider_{s}_val.mat")["gt_list"] for s in ("easy", "medium", "hard")}
    seen = 0
    for e in range(val["event_list"].shape[0]):
        event = str(val["event_list"][e, 0][0])
        for i in range(val["file_list"][e, 0].shape[0]):
            name = f"{event}/{val['file_list'][e, 0][i, 0][0]}.jpg"
            rec = records[name]
            boxes = val["face_bbx_list"][e, 0][i, 0]
            invalid = val["invalid_label_list"][e, 0][i, 0].ravel()
            if rec.instances:
                xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in (inst["bbox"] for inst in rec.instances)]
                np.testing.assert_array_equal(boxes, xywh)
                assert invalid.tolist() == [inst["ignore_flag"] for inst in rec.instances]
            else:
                assert boxes.tolist() == [[0, 0, 0, 0]]  # the official encoding of a face-less image
            kept = {s: set(keeps[s][e, 0][i, 0].ravel().tolist()) for s in keeps}
            width = widths[name]
            for subset, members in kept.items():  # the rule docs/demo.md states: valid and tall enough
                min_height = STATS["subset_min_relative_height"][subset] * SMALL.size_scale * width
                expected = {
                    j + 1
                    for j, inst in enumerate(rec.instances)
                    if not inst["ignore_flag"] and inst["bbox"][3] - inst["bbox"][1] >= min_height
                }
                assert members == expected, (name, subset)
            labels = face_labels(split_dir / "wider_face_val_bbx_gt.txt")[name]
            for column, label in ((0, "blur"), (4, "occlusion")):
                in_mat = val[f"{label}_label_list"][e, 0][i, 0].ravel().tolist()
                assert in_mat == ([row[column] for row in labels] or [0]), (name, label)
            seen += 1
    assert seen == len(records)


def test_mat_files_load_with_the_evaluation_loader(demo_dir):
    from scrfd_search.evaluation.ground_truth import load_ground_truth

    gt = load_ground_truth(demo_dir / "wider_face_split")
    assert len(gt) == SMALL.num_val
    assert gt.num_faces("easy") <= gt.num_faces("medium") <= gt.num_faces("hard") <= gt.num_faces()


def test_val_subsets_nest_by_size_and_summary_is_written(tmp_path):
    info = write_demo_dataset(tmp_path / "d", DemoConfig(num_train=2, num_val=30, seed=0))
    kept = info["splits"]["val"]["kept"]
    assert 0 < kept["easy"] < kept["medium"] < kept["hard"]
    assert json.loads((tmp_path / "d" / "demo_data.json").read_text()) == info


def test_faces_have_dark_eyes_on_lighter_skin(demo_dir):
    """Drawn faces carry features: at the eye landmarks of clear, unoccluded faces the image is darker
    than the face centre-top."""
    darker = total = 0
    labels = face_labels(demo_dir / "wider_face_split" / "wider_face_train_bbx_gt.txt")
    for rec in parse_retinaface_txt(demo_dir / "train" / "labelv2.txt"):
        img = cv2.imread(str(demo_dir / "train" / "images" / rec.name), cv2.IMREAD_GRAYSCALE).astype(float)
        for inst, (blur, _, _, _, occlusion, _) in zip(rec.instances, labels[rec.name], strict=True):
            x1, y1, x2, y2 = inst["bbox"]
            if inst["ignore_flag"] or min(x2 - x1, y2 - y1) < 16 or blur or occlusion:
                continue
            kps = inst["keypoints"]
            forehead = (kps[0, :2] + kps[1, :2]) / 2 - (kps[2, :2] - (kps[0, :2] + kps[1, :2]) / 2)
            eyes = np.mean([img[int(round(y)), int(round(x))] for x, y in kps[:2, :2]])
            darker += eyes < img[int(round(forehead[1])), int(round(forehead[0]))] - 20
            total += 1
    assert total >= 5
    assert darker >= 0.9 * total


def test_keep_lists_nest_and_hard_is_strictly_larger(demo_like):
    gt = load_ground_truth(demo_like / "wider_face_split")
    for image in gt.images:
        easy, medium, hard = (set(image.keep[s].tolist()) for s in SUBSETS)
        assert easy <= medium <= hard, image.key
    assert 0 < gt.num_faces("easy") < gt.num_faces("medium") < gt.num_faces("hard") < gt.num_faces()


def _faces_by_class(root: Path) -> dict[str, list[tuple[float, int, int]]]:
    """(height / image width, blur, occlusion) of the valid val faces, by the hardest subset that keeps them."""
    gt = load_ground_truth(root / "wider_face_split")
    widths = {r.name: r.width for r in parse_retinaface_txt(root / "val" / "labelv2.txt")}
    labels = face_labels(root / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    out: dict[str, list[tuple[float, int, int]]] = {"easy": [], "medium": [], "hard": [], "none": []}
    for image in gt.images:
        name = f"{image.event}/{image.name}.jpg"
        keep = {s: set(image.keep[s].tolist()) for s in SUBSETS}
        for j, (blur, _, _, invalid, occlusion, _) in enumerate(labels[name]):
            if invalid:
                continue
            kind = next((s for s in SUBSETS if j in keep[s]), "none")
            out[kind].append((image.boxes[j, 3] / widths[name], blur, occlusion))
    return out


def test_hard_adds_the_small_and_mostly_heavily_blurred_or_occluded_faces(demo_like):
    classes = _faces_by_class(demo_like)
    assert all(len(faces) >= 20 for faces in classes.values()), {k: len(v) for k, v in classes.items()}
    # each harder subset adds smaller faces only, as WIDER's height thresholds do
    for easier, harder in (("easy", "medium"), ("medium", "hard"), ("hard", "none")):
        assert max(f[0] for f in classes[harder]) < min(f[0] for f in classes[easier])

    def heavy(kind: str, column: int) -> float:
        return float(np.mean([f[column] == 2 for f in classes[kind]]))

    # WIDER's val faces (face_sizes.json): heavily blurred 7 % of easy, 29 % of medium-only, 76 % of hard-only
    assert heavy("easy", 1) < 0.2 < heavy("medium", 1) < 0.5 < heavy("hard", 1)
    assert heavy("hard", 2) > heavy("easy", 2)  # heavy occlusion: 20 % against 11 % in WIDER


def degraded_detections(root: Path) -> dict[tuple[str, str], np.ndarray]:
    """A fixed detector that finds every valid face at least 10 px tall at its own box, scored lower for smaller,
    heavily blurred or occluded faces, plus one false alarm per image scored 0.4."""
    gt = load_ground_truth(root / "wider_face_split")
    labels = face_labels(root / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    out = {}
    for image in gt.images:
        rows = [[2.0, 2.0, 12.0, 12.0, 0.4]]
        for box, (blur, _, _, invalid, occlusion, _) in zip(
            image.boxes, labels[f"{image.event}/{image.name}.jpg"], strict=False
        ):
            if invalid or box[3] < 10:
                continue
            score = box[3] / (box[3] + 16) * (0.6 if blur == 2 else 1.0) * (0.8 if occlusion == 2 else 1.0)
            rows.append([*box, score])
        out[image.key] = np.array(rows)
    return out


def test_a_fixed_degraded_detector_scores_easy_above_medium_above_hard(demo_like):
    gt = load_ground_truth(demo_like / "wider_face_split")
    ap = evaluate(gt, degraded_detections(demo_like)).ap
    assert ap["easy"] > ap["medium"] > ap["hard"], ap
    perfect = {  # every face at its own box (scores must differ: the protocol min-max normalises them)
        image.key: np.hstack([image.boxes, np.linspace(1, 0.5, image.num_faces)[:, None]]) for image in gt.images
    }
    assert evaluate(gt, perfect).ap == pytest.approx(dict.fromkeys(SUBSETS, 1.0))  # the gap is the detector's


def test_refuses_non_empty_folder_without_force_and_replaces_with_force(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        write_demo_dataset(out, DemoConfig(num_train=1, num_val=1))
    assert (out / "keep.txt").read_text() == "mine"
    write_demo_dataset(out, DemoConfig(num_train=1, num_val=1), force=True)
    assert not (out / "keep.txt").exists() and (out / "demo_data.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folders left behind


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["demo-data", "--out", str(out), "--train", "3", "--val", "2", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train: 3 images" in printed and "val: 2 images" in printed
    assert main(["demo-data", "--out", str(out), "--train", "3", "--val", "2"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["demo-data", "--out", str(tmp_path / "x"), "--train", "0"]) == 2
    assert not (tmp_path / "x").exists()


def test_cli_image_and_face_sizes(tmp_path, capsys):
    out = tmp_path / "small"
    args = ["demo-data", "--out", str(out), "--train", "6", "--val", "2", "--min-width", "192", "--max-width", "256"]
    assert main([*args, "--min-face", "20"]) == 0
    for image in parse_wider_txt(out / "wider_face_split" / "wider_face_train_bbx_gt.txt"):
        width = cv2.imread(str(out / "WIDER_train" / "images" / image.name)).shape[1]
        assert 192 <= width <= 256
        for face in image.instances:
            x1, y1, x2, y2 = face["bbox"]
            assert ((x2 - x1) * (y2 - y1)) ** 0.5 >= 19  # at least the requested size, sqrt(w*h), less rounding
    assert main(["demo-data", "--out", str(tmp_path / "bad"), "--min-width", "300", "--max-width", "200"]) == 2
    assert "--min-width/--max-width: 300..200" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["demo-data", "--out", str(tmp_path / "bad"), "--size-scale", "0"]) == 2
    assert "--size-scale: 0.0 is not in (0, 20.0]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_default_faces_go_down_to_a_few_pixels_and_clear_faces_have_no_blur(tmp_path, demo_like):
    heights = [
        inst["bbox"][3] - inst["bbox"][1]
        for rec in parse_wider_txt(demo_like / "wider_face_split" / "wider_face_val_bbx_gt.txt")
        for inst in rec.instances
    ]
    assert min(heights) <= 4
    write_demo_dataset(tmp_path / "clear", DemoConfig(num_train=1, num_val=10, seed=0, clear_faces=True))
    labels = face_labels(tmp_path / "clear" / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    valid = [row for rows in labels.values() for row in rows if not row[3]]
    assert len(valid) >= 10 and all(row[0] == 0 for row in valid)
