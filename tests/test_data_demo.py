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
from search_helpers import SHARED_GT

from scrfd_search.cli import main
from scrfd_search.data.annotations import parse_retinaface_txt, parse_wider_txt
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.errors import UserError

REAL_GT = SHARED_GT
SMALL = DemoConfig(num_train=8, num_val=6, seed=3)
MAT_FILES = ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat")


@pytest.fixture(scope="module")
def demo_dir(demo_factory) -> Path:
    return demo_factory(SMALL)


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
            valid = {j + 1 for j, inst in enumerate(rec.instances) if not inst["ignore_flag"]}
            assert kept["hard"] == valid  # hard keeps every valid face
            assert kept["easy"] <= kept["medium"] <= kept["hard"]
            for j in kept["medium"] - kept["easy"]:  # easy drops only faces smaller than it keeps
                small = rec.instances[j - 1]["bbox"]
                assert all(
                    (small[2] - small[0]) * (small[3] - small[1]) <= (b[2] - b[0]) * (b[3] - b[1]) + 1e-6
                    for b in (rec.instances[k - 1]["bbox"] for k in kept["easy"])
                )
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
    """Drawn faces carry features: at the eye landmarks the image is darker than the face centre-top."""
    darker = total = 0
    for rec in parse_retinaface_txt(demo_dir / "train" / "labelv2.txt"):
        img = cv2.imread(str(demo_dir / "train" / "images" / rec.name), cv2.IMREAD_GRAYSCALE).astype(float)
        for inst in rec.instances:
            x1, y1, x2, y2 = inst["bbox"]
            if inst["ignore_flag"] or min(x2 - x1, y2 - y1) < 16:
                continue
            kps = inst["keypoints"]
            forehead = (kps[0, :2] + kps[1, :2]) / 2 - (kps[2, :2] - (kps[0, :2] + kps[1, :2]) / 2)
            eyes = np.mean([img[int(round(y)), int(round(x))] for x, y in kps[:2, :2]])
            darker += eyes < img[int(round(forehead[1])), int(round(forehead[0]))] - 20
            total += 1
    assert total >= 5
    assert darker >= 0.9 * total


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
