"""No compiled mmcv kernel on the trial path: inference NMS is torchvision's, and training, validation,
detect-style inference and ONNX export all run with every mmcv kernel made to fail.

setup builds mmcv's CPU kernels only (no nvcc on a GPU machine), so any mmcv.ops call on a CUDA
tensor would fail there; these tests show none is made, on this CPU machine.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmengine.config import ConfigDict
from mmengine.dataset import Compose
from mmengine.structures import InstanceData
from torch import Tensor

from scrfd_search.builders import build_model
from scrfd_search.config_builder import DataSettings, Schedule
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.data.pipelines import test_pipeline
from scrfd_search.export.checkpoints import load_detector
from scrfd_search.export.writer import export_arch
from scrfd_search.models.head import SCRFDHead
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec
from scrfd_search.training.candidate import train_candidate

KPS_ARCH = ArchSpec(
    block="depthwise",
    stem_width=8,
    stages=tuple(StageSpec(1, w) for w in (8, 16, 16, 32)),
    neck=NeckSpec(16),
    head=HeadSpec(num_convs=1, width=16, norm="gn", gn_groups=4, keypoints=True),
)


RELEASED = Path(__file__).resolve().parents[1].parent / "shared" / "released_scrfd"


class ForbiddenKernel(RuntimeError):
    """An mmcv kernel was called."""


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the small models here gain nothing from more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real-sized demo images (480-640 px wide): 4 training, 2 validation."""
    root = tmp_path_factory.mktemp("nokernels") / "demo"
    write_demo_dataset(root, DemoConfig(num_train=4, num_val=2, seed=5, min_width=480, max_width=640))
    return root


@pytest.fixture
def no_mmcv_kernels(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every function of mmcv's compiled extension (what mmcv.ops calls) by one that raises."""
    importlib.import_module("mmcv.ops")
    ext = importlib.import_module("mmcv._ext")
    called: list[str] = []

    def forbidden(name: str):
        def call(*args, **kwargs):
            called.append(name)
            raise ForbiddenKernel(f"mmcv kernel {name} was called")

        return call

    names = [n for n in dir(ext) if not n.startswith("_") and callable(getattr(ext, n))]
    assert "nms" in names and len(names) > 50  # the real extension, with its kernels
    for name in names:
        monkeypatch.setattr(ext, name, forbidden(name))
    return called


def released_predictions(head: SCRFDHead, cfg: dict) -> InstanceData:
    """Detections of the released SCRFD-500M (insightface's ONNX) on a real photo, through our head.

    The photo (1280x886) is scaled by 0.5 into a 640x640 input as insightface does (padded below);
    the model's per-stride scores, box distances and landmark offsets (in strides, anchors in mmdet's
    prior order) become the head's per-level maps, and predict_by_feat decodes, thresholds and NMSes.
    """
    import onnxruntime

    image = cv2.imread(str(RELEASED / "six_faces.jpg"))
    height, width = image.shape[:2]
    scale = 640 / max(height, width)
    resized = cv2.resize(image, (round(width * scale), round(height * scale)))
    canvas = np.zeros((640, 640, 3), np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    blob = ((canvas[..., ::-1].astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
    session = onnxruntime.InferenceSession(str(RELEASED / "scrfd_500m_bnkps.onnx"), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input.1": blob}), strict=True))
    maps: dict[str, list[Tensor]] = {"score": [], "bbox": [], "kps": []}
    for stride in (8, 16, 32):
        side = 640 // stride
        for kind in maps:
            flat = torch.from_numpy(outputs[f"{kind}_{stride}"][0])  # (side * side * 2, C)
            if kind == "score":  # the ONNX applies the sigmoid; the head expects logits
                flat = torch.logit(flat.double()).float()
            maps[kind].append(flat.reshape(side, side, -1).permute(2, 0, 1)[None].contiguous())
    meta = {"img_shape": resized.shape[:2], "ori_shape": (height, width), "scale_factor": (scale, scale)}
    test_cfg = ConfigDict({**head.test_cfg, **cfg})
    (result,) = head.predict_by_feat(
        maps["score"], maps["bbox"], maps["kps"], batch_img_metas=[meta], cfg=test_cfg, rescale=True
    )
    return result


@pytest.mark.parametrize("score_thr", [0.02, 0.001])
def test_torchvision_nms_keeps_exactly_the_boxes_of_mmcv_nms(score_thr: float) -> None:
    """0.02 is the project's threshold (a few hundred candidates); 0.001 keeps 16767 of the 16800
    anchors (mmcv's per-class path above 10^4 boxes). Lower still, the released model's background
    scores hold exact ties between overlapping boxes, and the two differ in which one survives:
    mmcv's CPU kernel sorts scores unstably, torchvision stably (the lower index first)."""
    head = build_model(KPS_ARCH).bbox_head
    settings = {"score_thr": score_thr, "max_per_img": 100000}
    ours = released_predictions(head, settings)
    with mock.patch.object(SCRFDHead, "_bbox_post_process", BaseDenseHead._bbox_post_process):
        mmdets = released_predictions(head, settings)
    assert len(ours) == len(mmdets) > 6
    assert (ours.scores > 0.5).sum() == 6  # the photo's six faces
    for key in ("bboxes", "scores", "labels", "keypoints"):
        assert torch.equal(ours.get(key), mmdets.get(key)), key


def test_max_per_img_keeps_the_best() -> None:
    head = build_model(KPS_ARCH).bbox_head
    full = released_predictions(head, {"score_thr": 0.02, "max_per_img": 100000})
    top = released_predictions(head, {"score_thr": 0.02, "max_per_img": 4})
    assert len(top) == 4 and torch.equal(full.bboxes[:4], top.bboxes)


def test_the_forbidden_kernels_really_fail(no_mmcv_kernels: list[str]) -> None:
    from mmcv.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    with pytest.raises(ForbiddenKernel):
        nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert no_mmcv_kernels == ["nms"]


def test_training_validation_inference_and_export_call_no_mmcv_kernel(
    no_mmcv_kernels: list[str], demo_data: Path, tmp_path: Path
) -> None:
    data = DataSettings(
        data_root=str(demo_data), gt_dir=str(demo_data / "wider_face_split"), img_size=128, batch_size=2,
        num_workers=0, with_keypoints=True,
    )  # fmt: skip
    result = train_candidate(
        KPS_ARCH, data, Schedule(epochs=1, warmup_iters=1, val_interval=1), tmp_path / "w", device="cpu", progress=None
    )
    assert result.epochs_run == 1 and result.hard is not None and result.checkpoint is not None
    # detect-style inference: the trained checkpoint, one image through the test pipeline, predict mode
    model = load_detector(KPS_ARCH, Path(result.checkpoint))
    model.bbox_head.test_cfg.score_thr = 0.0
    image = next((demo_data / "WIDER_val" / "images").rglob("*.jpg"))
    packed = Compose(test_pipeline(640))({"img_path": str(image), "img_id": image.stem, "instances": []})
    with torch.no_grad():
        (sample,) = model.test_step({"inputs": [packed["inputs"]], "data_samples": [packed["data_samples"]]})
    height, width = packed["data_samples"].ori_shape
    pred = sample.pred_instances
    assert len(pred) > 0 and pred.keypoints.shape == (len(pred), 5, 2)
    assert float(pred.bboxes[:, 2].max()) <= width + 1e-3 and float(pred.bboxes[:, 3].max()) <= height + 1e-3
    # export with ONNX (traced, then checked against PyTorch with onnxruntime)
    (tmp_path / "arch.json").write_text(KPS_ARCH.to_json())
    out, index = export_arch(tmp_path / "arch.json", tmp_path / "export", with_onnx=True)
    assert (out / "arch.onnx").is_file() and index["onnx"] is True
    assert no_mmcv_kernels == []
    assert np.isfinite(result.hard)
