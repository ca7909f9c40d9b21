"""WiderFaceDataset and RetinaFaceDataset on generated data: contents, errors, test/train modes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmengine.registry import init_default_scope

from scrfd_search.data.datasets import RetinaFaceDataset, WiderFaceDataset
from scrfd_search.data.demo import DemoConfig
from scrfd_search.data.pipelines import dataset_config
from scrfd_search.errors import UserError


@pytest.fixture(scope="module")
def demo_dir(demo_factory) -> Path:
    """Many images without faces (a third), which the datasets must keep or drop as configured."""
    return demo_factory(DemoConfig(num_train=10, num_val=8, seed=7, empty_fraction=0.3))


def ctor_kwargs(cfg: dict) -> dict:
    """A dataset config without its type and pipeline, for calling the class directly."""
    return {k: v for k, v in cfg.items() if k not in ("type", "pipeline")}


def tiny_official(root: Path, faces_txt: str, images: dict[str, tuple[int, int]]) -> None:
    """An official-layout folder with the given annotation text and blank images (name -> (w, h))."""
    for name, (w, h) in images.items():
        path = root / "WIDER_val" / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))
    (root / "wider_face_split").mkdir(parents=True, exist_ok=True)
    (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text(faces_txt)


def official(root: Path, **kwargs) -> WiderFaceDataset:
    return WiderFaceDataset(
        data_root=str(root),
        ann_file="wider_face_split/wider_face_val_bbx_gt.txt",
        data_prefix=dict(img="WIDER_val/images/"),
        **kwargs,
    )


TINY = """\
0--A/0_A_1.jpg
2
4 6 20 24 0 0 0 0 0 0
30 30 3 3 0 0 0 1 0 0
0--A/0_A_2.jpg
0
0 0 0 0 0 0 0 0 0 0
"""


def test_official_dataset_contents_and_lazy_image_size(tmp_path):
    tiny_official(tmp_path, TINY, {"0--A/0_A_1.jpg": (64, 48), "0--A/0_A_2.jpg": (40, 30)})
    ds = official(tmp_path, test_mode=True)
    assert ds.metainfo["classes"] == ("face",)
    assert len(ds) == 2  # test mode keeps the face-less image
    info = ds.get_data_info(0)
    assert info["img_path"] == str(tmp_path / "WIDER_val/images/0--A/0_A_1.jpg")
    assert (info["width"], info["height"]) == (64, 48)  # read from the image header
    assert [i["bbox"] for i in info["instances"]] == [[4, 6, 24, 30], [30, 30, 33, 33]]
    assert [i["ignore_flag"] for i in info["instances"]] == [0, 1]
    assert info["instances"][0]["keypoints"].shape == (5, 3)
    assert ds.get_data_info(1)["instances"] == []
    train = official(tmp_path, test_mode=False)
    assert [train.get_data_info(i)["img_id"] for i in range(len(train))] == ["0--A/0_A_1.jpg"]


def test_min_size_marks_small_faces_ignored(tmp_path):
    tiny_official(tmp_path, TINY, {"0--A/0_A_1.jpg": (64, 48), "0--A/0_A_2.jpg": (40, 30)})
    ds = official(tmp_path, test_mode=True, min_size=21)
    assert [i["ignore_flag"] for i in ds.get_data_info(0)["instances"]] == [1, 1]


def test_missing_image_is_named_when_the_dataset_is_built(tmp_path):
    tiny_official(tmp_path, TINY, {"0--A/0_A_1.jpg": (64, 48)})
    with pytest.raises(UserError) as err:
        official(tmp_path, test_mode=True)
    assert "0--A/0_A_2.jpg" in str(err.value) and "image not found" in str(err.value)
    assert "wider_face_val_bbx_gt.txt:5:" in str(err.value)


def test_malformed_annotation_fails_with_file_and_line(tmp_path):
    tiny_official(tmp_path, "0--A/0_A_1.jpg\n1\n4 6 20\n", {"0--A/0_A_1.jpg": (64, 48)})
    with pytest.raises(UserError, match=r"wider_face_val_bbx_gt.txt:3: expected 10 numbers"):
        official(tmp_path, test_mode=True)


def test_demo_data_in_both_layouts_gives_the_same_faces(demo_dir):
    wider = WiderFaceDataset(**ctor_kwargs(dataset_config(demo_dir, "val")))
    retina = RetinaFaceDataset(
        data_root=str(demo_dir), ann_file="val/labelv2.txt", test_mode=True
    )  # images default to val/images/
    assert len(wider) == len(retina) == 8
    saw_landmarks = False
    for i in range(len(wider)):
        a, b = wider.get_data_info(i), retina.get_data_info(i)
        assert Path(a["img_path"]).resolve() == Path(b["img_path"]).resolve()
        assert (a["width"], a["height"]) == (b["width"], b["height"])
        assert [x["bbox"] for x in a["instances"]] == [x["bbox"] for x in b["instances"]]
        for inst in b["instances"]:
            assert inst["keypoints"][:, 2].all() == (not inst["ignore_flag"])
            saw_landmarks |= bool(inst["keypoints"][:, 2].all())
    assert saw_landmarks


def test_train_mode_drops_images_without_valid_faces(demo_dir):
    cfg = ctor_kwargs(dataset_config(demo_dir, "train"))
    train = WiderFaceDataset(**cfg)
    everything = WiderFaceDataset(**{**cfg, "test_mode": True})
    assert len(everything) == 10
    with_faces = [
        i for i in range(len(everything)) if any(not x["ignore_flag"] for x in everything.get_data_info(i)["instances"])
    ]
    assert len(train) == len(with_faces) < 10


@pytest.mark.parametrize("layout", ["wider", "retinaface"])
def test_dataset_config_builds_and_yields_packed_samples(demo_dir, layout):
    init_default_scope("mmdet")
    train = DATASETS.build(dataset_config(demo_dir, "train", img_size=320, with_keypoints=True, layout=layout))
    sample = train[0]
    assert tuple(sample["inputs"].shape) == (3, 320, 320)
    gt = sample["data_samples"].gt_instances
    assert gt.keypoints.shape[1:] == (5, 3) and len(gt.keypoints) == len(gt.bboxes)
    val = DATASETS.build(dataset_config(demo_dir, "val", img_size=320, layout=layout))
    sample = val[0]
    meta = sample["data_samples"].metainfo
    assert max(sample["inputs"].shape[1:]) == 320
    assert meta["ori_shape"] == (val.get_data_info(0)["height"], val.get_data_info(0)["width"])
    assert {"img_path", "ori_shape", "img_shape", "scale_factor"} <= set(meta)
