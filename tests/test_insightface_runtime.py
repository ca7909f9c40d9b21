"""insightface's own SCRFD runtime (the client deployed face detectors run in) reads our ONNX files.

The runtime is the `insightface` package from the registry (a dev dependency), not a decoder written
here: exported searched models (with and without keypoints, with their dynamic batch axis) and the
released model must give it the faces that `scrfd-search detect --onnx` finds, box for box.

The searched models are untrained, so their weights are set to give face-like outputs: every tower
and classifier weight is perturbed (seeded) so that scores differ from anchor to anchor, and the box
regressors output a constant 1.5 strides on each side (boxes of three strides a side). With one box
size per stride, no pair of boxes has an IoU near the NMS threshold (0.4), where insightface's `+ 1`
pixel convention and torchvision's NMS may decide differently
(docs/differences.md, "Differences from the reference, on purpose").
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from insightface.model_zoo.scrfd import SCRFD

from scrfd_search.builders import build_model
from scrfd_search.cli import main
from scrfd_search.inference import OnnxDetector, letterbox
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

pytest.importorskip("mmcv.ops", reason="mmcv with its ops is needed to build detectors")

REPO = Path(__file__).resolve().parents[1]
RELEASED_DIR = REPO.parent / "shared" / "released_scrfd"
ONNX_500M = RELEASED_DIR / "scrfd_500m_bnkps.onnx"
PHOTO = RELEASED_DIR / "six_faces.jpg"
SPACE = REPO / "search_spaces" / "scrfd_0.5gf_step2.yaml"
SIZE = 640
NMS_IOU = 0.4
BOX_HALF_SIDE = 1.5  # strides from the anchor centre to each side of every box of the set-up models

needs_photo = pytest.mark.skipif(not PHOTO.is_file(), reason=f"{PHOTO} missing")


def searched_arch(tmp_path: Path, keypoints: bool) -> ArchSpec:
    """An architecture the 0.5 GF step-2 space samples (seeded), with or without a keypoint head."""
    text = SPACE.read_text().replace("keypoints: false", f"keypoints: {str(keypoints).lower()}")
    space_file = tmp_path / f"space_kps_{keypoints}.yaml"
    space_file.write_text(text)
    return sample_candidates(SearchSpace.load(space_file), 1, seed=4, confirm=False)[0].arch


def face_like_checkpoint(arch: ArchSpec, path: Path, seed: int) -> Path:
    """A checkpoint whose scores vary by anchor and whose boxes are all 2 x BOX_HALF_SIDE strides a side."""
    torch.manual_seed(seed)
    model = build_model(arch)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".conv_reg." in name:
                p.fill_(0.0 if name.endswith("weight") else BOX_HALF_SIDE)
            elif ".scales." not in name:
                p.add_(0.05 * torch.randn_like(p))
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def exported_onnx(tmp_path: Path, arch: ArchSpec, stem: str) -> Path:
    """`scrfd-search export --arch --checkpoint --onnx` of the architecture with its face-like weights."""
    (tmp_path / f"{stem}.json").write_text(arch.to_json())
    ckpt = face_like_checkpoint(arch, tmp_path / f"{stem}.pth", seed=len(stem))
    out = tmp_path / f"export_{stem}"
    args = ["export", "--arch", str(tmp_path / f"{stem}.json"), "--checkpoint", str(ckpt), "--onnx", "--out", str(out)]
    assert main(args) == 0
    return out / f"{stem}.onnx"


def threshold_keeping(onnx_path: Path, image: np.ndarray, count: int) -> float:
    """A score threshold halfway between the count-th and the next best anchor score on this image."""
    outputs = OnnxDetector(onnx_path).raw(letterbox(image, SIZE).tensor)
    scores = np.sort(np.concatenate([o[:, 0] for o in outputs[:3]]))[::-1]
    return float((scores[count - 1] + scores[count]) / 2)


def insightface_faces(onnx_path: Path, image: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
    """What insightface's SCRFD runtime detects: N x 5 (box, score) and N x 5 x 2 landmarks (or None)."""
    runtime = SCRFD(model_file=str(onnx_path))
    runtime.prepare(-1, det_thresh=threshold, nms_thresh=NMS_IOU, input_size=(SIZE, SIZE))
    return runtime.detect(image, input_size=(SIZE, SIZE))


def detect_faces(onnx_path: Path, threshold: float, out: Path) -> list[dict]:
    """What `scrfd-search detect --onnx` writes for the photo."""
    args = ["detect", str(PHOTO), "--onnx", str(onnx_path), "--out", str(out)]
    assert main([*args, "--score-thr", repr(threshold), "--nms-iou", str(NMS_IOU), "--size", str(SIZE)]) == 0
    return json.loads((out / f"{PHOTO.stem}.json").read_text())["faces"]


def assert_same_faces(faces: list[dict], dets: np.ndarray, kps: np.ndarray | None, keypoints: bool) -> None:
    """Same number of faces; matched by score, boxes and landmarks within 0.5 px, scores within 1e-4."""
    assert len(faces) == len(dets) > 0
    assert (kps is not None) == keypoints
    ours = sorted(faces, key=lambda f: -f["score"])
    order = np.argsort(-dets[:, 4])
    for face, i in zip(ours, order, strict=True):
        assert np.abs(np.array(face["box"]) - dets[i, :4]).max() <= 0.5, (face["box"], dets[i])
        assert abs(face["score"] - dets[i, 4]) <= 1e-4
        if keypoints:
            assert np.abs(np.array(face["landmarks"]) - kps[i]).max() <= 0.5  # type: ignore[index]


@needs_photo
@pytest.mark.parametrize("keypoints", [True, False], ids=["with_keypoints", "without_keypoints"])
def test_insightface_runs_an_exported_searched_model_as_detect_does(tmp_path: Path, keypoints: bool) -> None:
    arch = searched_arch(tmp_path, keypoints)
    assert arch.head.keypoints is keypoints
    onnx_path = exported_onnx(tmp_path, arch, f"searched_{'kps' if keypoints else 'nokps'}")
    image = cv2.imread(str(PHOTO))
    threshold = threshold_keeping(onnx_path, image, count=40)
    dets, kps = insightface_faces(onnx_path, image, threshold)
    assert len(dets) >= 3  # several faces after NMS: the comparison below is not about one box
    assert_same_faces(detect_faces(onnx_path, threshold, tmp_path / "det"), dets, kps, keypoints)


@needs_photo
@pytest.mark.skipif(not ONNX_500M.is_file(), reason=f"{ONNX_500M} missing")
def test_insightface_runs_the_released_model_as_detect_does(tmp_path: Path) -> None:
    image = cv2.imread(str(PHOTO))
    dets, kps = insightface_faces(ONNX_500M, image, 0.5)
    assert len(dets) == 6  # the six faces of the photo
    assert_same_faces(detect_faces(ONNX_500M, 0.5, tmp_path / "det"), dets, kps, keypoints=True)
