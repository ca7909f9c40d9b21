"""Released SCRFD models: import-weights (ONNX and reference checkpoints), detect, and the released ONNX layout.

The released `scrfd_500m_bnkps.onnx` and insightface's demo photo `six_faces.jpg` are read from
../shared/released_scrfd/ (never copied into the repository). The decoder below is written here
from the published description of the released files (SCRFD_FACTS.md), independently of the package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scrfd_search.builders import build_model
from scrfd_search.cli import main
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.errors import UserError
from scrfd_search.evaluation.predictions import read_prediction_file
from scrfd_search.export.onnx_file import export_onnx_bytes
from scrfd_search.export.released_format import released_head_module
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec
from scrfd_search.space.published import RELEASED
from scrfd_search.weights import import_weights, load_onnx, self_check, state_from_onnx

pytest.importorskip("mmcv.ops", reason="mmcv with its ops is needed to build detectors")
onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[1]
RELEASED_DIR = REPO.parent / "shared" / "released_scrfd"
ONNX_500M = RELEASED_DIR / "scrfd_500m_bnkps.onnx"
PHOTO = RELEASED_DIR / "six_faces.jpg"
ARCH_500M = REPO / "configs" / "scrfd" / "scrfd_500m_bnkps.json"
ARCH_2_5G = REPO / "configs" / "scrfd" / "scrfd_2.5g_bnkps.json"
STRIDES = (8, 16, 32)

needs_released = pytest.mark.skipif(
    not (ONNX_500M.is_file() and PHOTO.is_file()), reason=f"released SCRFD test files not in {RELEASED_DIR}"
)


# ------------------------------------------------------------------ an independent decoder


def insightface_letterbox(image: np.ndarray, size: int = 640) -> tuple[np.ndarray, float]:
    """Keep the ratio, fit into size x size, pad right/bottom with black; RGB (x - 127.5) / 128 as NCHW."""
    h, w = image.shape[:2]
    if h / w > 1:
        nh, nw = size, int(size * w / h)
    else:
        nw, nh = size, int(size * h / w)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh))
    blob = (canvas[..., ::-1].astype(np.float32) - 127.5) / 128.0
    return blob.transpose(2, 0, 1)[None].copy(), nh / h


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Plain greedy NMS on x1 y1 x2 y2 boxes."""
    order, keep = list(np.argsort(-scores)), []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        i, order = order[0], order[1:]
        keep.append(i)
        rest = np.array(order, dtype=int)
        if not len(rest):
            break
        xx1, yy1 = np.maximum(boxes[i, 0], boxes[rest, 0]), np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2, yy2 = np.minimum(boxes[i, 2], boxes[rest, 2]), np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / (areas[i] + areas[rest] - inter)
        order = [int(j) for j, o in zip(rest, overlap, strict=True) if o <= iou]
    return keep


def decode_released(
    outputs: list[np.ndarray], hw: tuple[int, int], det_scale: float, thr: float = 0.5, iou: float = 0.4
):
    """Released outputs (score_*, bbox_*, kps_*) -> boxes, scores, landmarks in original pixels."""
    boxes, scores, kps = [], [], []
    for level, stride in enumerate(STRIDES):
        fh, fw = hw[0] // stride, hw[1] // stride
        ys, xs = np.mgrid[:fh, :fw]
        centres = np.repeat(np.stack([xs, ys], -1).reshape(-1, 2) * stride, 2, axis=0).astype(np.float32)
        score = outputs[level].reshape(-1)
        dist = outputs[3 + level].reshape(-1, 4) * stride
        offs = outputs[6 + level].reshape(-1, 5, 2) * stride
        keep = score >= thr
        c = centres[keep]
        boxes.append(np.concatenate([c - dist[keep][:, :2], c + dist[keep][:, 2:]], 1))
        scores.append(score[keep])
        kps.append(c[:, None] + offs[keep])
    boxes_a, scores_a, kps_a = np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)
    keep = greedy_nms(boxes_a, scores_a, iou)
    return boxes_a[keep] / det_scale, scores_a[keep], kps_a[keep] / det_scale


def reference_detections(onnx_path: Path, image_path: Path):
    """What insightface's runtime finds in the photo with this ONNX file (boxes, scores, landmarks)."""
    blob, det_scale = insightface_letterbox(cv2.imread(str(image_path)))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: blob})
    return decode_released(outputs, blob.shape[2:], det_scale)


def assert_same_faces(faces: list[dict], expected) -> None:
    """detect's JSON faces equal the expected detections: boxes within 0.5 px, scores within 1e-3."""
    boxes, scores, kps = expected
    assert len(faces) == len(scores)
    got = sorted(faces, key=lambda f: -f["score"])
    order = np.argsort(-scores)
    for face, i in zip(got, order, strict=True):
        assert np.abs(np.array(face["box"]) - boxes[i]).max() <= 0.5, (face, boxes[i])
        assert abs(face["score"] - scores[i]) <= 1e-3
        assert np.abs(np.array(face["landmarks"]) - kps[i]).max() <= 0.5


# ------------------------------------------------------------------ ONNX import + detect


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The released 0.5GF keypoint model imported into a checkpoint of this project's detector."""
    if not ONNX_500M.is_file():
        pytest.skip(f"{ONNX_500M} missing")
    out = tmp_path_factory.mktemp("imported") / "scrfd_500m_bnkps.pth"
    assert main(["import-weights", str(ONNX_500M), "--arch", str(ARCH_500M), "--out", str(out)]) == 0
    return out


@needs_released
def test_imported_release_detects_the_six_faces_as_the_onnx_file_does(imported: Path, tmp_path: Path, capsys) -> None:
    expected = reference_detections(ONNX_500M, PHOTO)
    assert len(expected[1]) == 6
    out = tmp_path / "det"
    assert main(["detect", str(PHOTO), "--checkpoint", str(imported), "--arch", str(ARCH_500M), "--out", str(out)]) == 0
    result = json.loads((out / "six_faces.json").read_text())
    assert (result["score_thr"], result["nms_iou"]) == (0.5, 0.4)
    assert_same_faces(result["faces"], expected)
    drawn = cv2.imread(str(out / "six_faces.png"))
    original = cv2.imread(str(PHOTO))
    assert drawn.shape == original.shape and not np.array_equal(drawn, original)
    # the same run straight from the ONNX file, and from the checkpoint's own record of its architecture
    assert main(["detect", str(PHOTO), "--onnx", str(ONNX_500M), "--out", str(tmp_path / "onnx")]) == 0
    assert_same_faces(json.loads((tmp_path / "onnx" / "six_faces.json").read_text())["faces"], expected)
    assert main(["detect", str(PHOTO), "--checkpoint", str(imported), "--out", str(tmp_path / "meta")]) == 0
    assert_same_faces(json.loads((tmp_path / "meta" / "six_faces.json").read_text())["faces"], expected)


@needs_released
def test_import_of_the_wrong_architecture_names_the_first_mismatch(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.pth"
    assert main(["import-weights", str(ONNX_500M), "--arch", str(ARCH_2_5G), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("scrfd-search import-weights: error:")
    # the 2.5GF deep stem's first conv is 12x3x3x3; the 0.5GF stem's is 16x3x3x3
    assert "backbone.stem.0.conv (12, 3, 3, 3)" in err and "(16, 3, 3, 3)" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@needs_released
def test_import_rejects_a_file_that_is_not_onnx_and_writes_nothing(tmp_path: Path, capsys) -> None:
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"this is not a protobuf" * 10)
    out = tmp_path / "out.pth"
    assert main(["import-weights", str(fake), "--arch", str(ARCH_500M), "--out", str(out)]) == 2
    assert "not an ONNX" in capsys.readouterr().err
    fake_pth = tmp_path / "fake.pth"
    fake_pth.write_bytes(b"garbage")
    assert main(["import-weights", str(fake_pth), "--arch", str(ARCH_500M), "--out", str(out)]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    assert main(["import-weights", str(tmp_path / "missing.onnx"), "--arch", str(ARCH_500M), "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not out.exists()


@needs_released
def test_self_check_names_the_first_layer_that_differs() -> None:
    arch = ArchSpec.load(ARCH_500M)
    model = build_model(arch).eval()
    proto = load_onnx(ONNX_500M)
    model.load_state_dict(state_from_onnx(ONNX_500M, proto, model, arch))
    assert self_check(ONNX_500M, proto, model, arch) <= 1e-4
    with torch.no_grad():  # a wrong copy in the middle of the backbone
        model.backbone.layer2[1].pointwise_conv.conv.weight.mul_(1.5)
    with pytest.raises(UserError, match=r"first differing layer: backbone\.layer2\.1\.pointwise_conv\.bn"):
        self_check(ONNX_500M, proto, model, arch)


@needs_released
def test_detect_on_folders_skips_a_corrupt_image_and_writes_wider_files(imported: Path, tmp_path: Path, capsys) -> None:
    event = tmp_path / "images" / "12--Group"
    event.mkdir(parents=True)
    shutil.copy(PHOTO, event / "six_faces.jpg")
    (event / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    common = ["--checkpoint", str(imported), "--arch", str(ARCH_500M)]
    assert main(["detect", str(tmp_path / "images"), *common, "--out", str(tmp_path / "det")]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "not a readable image" in err
    assert (tmp_path / "det" / "12--Group" / "six_faces.json").is_file()
    assert not (tmp_path / "det" / "12--Group" / "broken.json").exists()

    assert main(["detect", str(tmp_path / "images"), *common, "--wider", "--out", str(tmp_path / "wider")]) == 1
    name, boxes = read_prediction_file(tmp_path / "wider" / "12--Group" / "six_faces.txt")
    assert name == "six_faces"
    assert boxes.shape[1] == 5 and boxes[:, 4].min() >= 0.02 and (boxes[:, 4] >= 0.5).sum() == 6


def test_detect_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    arch = tmp_path / "arch.json"
    arch.write_text(RELEASED["scrfd_500m_bnkps"].to_json())
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    other = tmp_path / "other.pth"  # weights of another architecture
    torch.save({"state_dict": build_model(RELEASED["scrfd_2.5g_bnkps"]).state_dict()}, other)
    cases = [
        (["--checkpoint", str(tmp_path / "none.pth"), "--arch", str(arch)], "no such file"),
        (["--checkpoint", str(garbage), "--arch", str(arch)], "not a PyTorch checkpoint"),
        (["--checkpoint", str(other), "--arch", str(arch)], "does not fit"),
        (["--onnx", str(tmp_path / "none.onnx")], "no such file"),
        ([], "exactly one"),
    ]
    for extra, message in cases:
        assert main(["detect", str(image), "--out", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    ckpt = tmp_path / "m.pth"
    torch.save({"state_dict": build_model(RELEASED["scrfd_500m_bnkps"]).state_dict()}, ckpt)
    assert main(["detect", str(bad), "--checkpoint", str(ckpt), "--arch", str(arch), "--out", str(tmp_path / "o")]) == 2
    assert "could be read" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ the released ONNX layout


@needs_released
def test_exported_onnx_follows_the_released_convention(imported: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    args = ["export", "--arch", str(ARCH_500M), "--checkpoint", str(imported), "--onnx", "--out", str(out)]
    assert main(args) == 0
    path = out / "scrfd_500m_bnkps.onnx"
    model = onnx.load(str(path))
    assert len(model.graph.input) == 1
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims] == ["batch", 3, "height", "width"]
    released = onnx.load(str(ONNX_500M))
    assert [o.name for o in model.graph.output] == [o.name for o in released.graph.output]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    blob, _ = insightface_letterbox(cv2.imread(str(PHOTO)))
    ours = session.run(None, {"input": blob})
    theirs = onnxruntime.InferenceSession(str(ONNX_500M), providers=["CPUExecutionProvider"]).run(
        None, {"input.1": blob}
    )
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4  # same shapes, same units
    # the released file is fixed at batch 1; the exported one takes a batch (three images at once here)
    flipped = blob[..., ::-1].copy()
    batched = session.run(None, {"input": np.concatenate([flipped, blob, flipped])})
    for one, three in zip(ours, batched, strict=True):
        assert three.shape == (3, *one.shape[1:]) and np.abs(three[1] - one[0]).max() <= 1e-4
    assert json.loads((out / "onnx.json").read_text())["check"]["batches"] == [1, 3]
    # decoded independently, the exported file finds what `detect` finds with the checkpoint
    assert main(["detect", str(PHOTO), "--checkpoint", str(imported), "--out", str(tmp_path / "det")]) == 0
    faces = json.loads((tmp_path / "det" / "six_faces.json").read_text())["faces"]
    assert_same_faces(faces, reference_detections(path, PHOTO))


# ------------------------------------------------------------------ reference (mmdet 2.x) checkpoints


def reference_name(ours: str, arch: ArchSpec) -> str:
    """The reference's name for one of our parameters, written from its module layout:
    MobileNetV1 units Sequential(dw conv, BN, ReLU, pw conv, BN, ReLU), stem Sequential(conv_bn, conv_dw);
    ResNetV1e deep stem Sequential(conv, BN, ReLU) x 3; head ModuleDicts keyed by str((s, s))."""
    parts = ours.split(".")
    unit = {"depthwise_conv.conv": "0", "depthwise_conv.bn": "1", "pointwise_conv.conv": "3", "pointwise_conv.bn": "4"}
    if parts[:2] == ["backbone", "stem"]:
        if arch.block == "depthwise":
            if parts[2] == "0":
                return ".".join(["backbone.stem.0", {"conv": "0", "bn": "1"}[parts[3]], *parts[4:]])
            return ".".join(["backbone.stem.1", unit[".".join(parts[3:5])], *parts[5:]])
        return ".".join(["backbone.stem", str(3 * int(parts[2]) + {"conv": 0, "bn": 1}[parts[3]]), *parts[4:]])
    if parts[0] == "backbone" and arch.block == "depthwise":
        return ".".join([*parts[:3], unit[".".join(parts[3:5])], *parts[5:]])
    if parts[0] == "bbox_head" and parts[1] in ("towers", "conv_cls", "conv_reg", "conv_kps"):
        key = "0" if arch.head.shared else str((STRIDES[int(parts[2])],) * 2)
        group = {"towers": "cls_stride_convs", "conv_cls": "stride_cls", "conv_reg": "stride_reg"}
        return ".".join(["bbox_head", group.get(parts[1], "stride_kps"), key, *parts[3:]])
    return ours


def reference_checkpoint(arch: ArchSpec, path: Path, seed: int) -> dict[str, str]:
    """Save a reference-style checkpoint of random tensors for arch; our name -> its name."""
    gen = torch.Generator().manual_seed(seed)
    names, state = {}, {}
    for ours, value in build_model(arch).state_dict().items():
        theirs = reference_name(ours, arch)
        names[ours] = theirs
        if value.dtype == torch.long:
            state[theirs] = value.clone()
        elif ours.endswith("running_var"):
            state[theirs] = torch.rand(value.shape, generator=gen) + 0.5
        else:  # small, so that the random detector stays finite through its depth
            state[theirs] = (torch.rand(value.shape, generator=gen) - 0.5) * 0.2
    state["bbox_head.integral.project"] = torch.linspace(0, 8, 9)  # the reference head's unused DFL buffer
    torch.save({"meta": {"mmdet_version": "2.7.0", "CLASSES": ("FG",)}, "state_dict": state}, path)
    return names


def small_resnet_kps() -> ArchSpec:
    """A small ResNet detector with the *_bnkps head (unshared, BN, keypoints, a Scale per stride)."""
    stages = tuple(StageSpec(d, w) for d, w in ((1, 8), (2, 16), (1, 16), (1, 24)))
    head = HeadSpec(num_convs=2, width=16, norm="bn", shared=False, keypoints=True, box_scale=True)
    return ArchSpec("basic", 16, stages, NeckSpec(16), head)  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", [RELEASED["scrfd_500m_bnkps"], small_resnet_kps()], ids=["mobilenet", "resnet"])
def test_reference_checkpoint_is_renamed_tensor_by_tensor(arch: ArchSpec, tmp_path: Path) -> None:
    src, arch_file, out = tmp_path / "ref.pth", tmp_path / "arch.json", tmp_path / "ours.pth"
    arch_file.write_text(arch.to_json())
    names = reference_checkpoint(arch, src, seed=3)
    if arch.block == "depthwise":  # names pinned from the reference's code
        assert {"backbone.stem.1.3.weight", "bbox_head.stride_kps.(32, 32).weight"} <= set(names.values())
    else:
        assert {"backbone.stem.6.weight", "backbone.stem.7.running_var", "bbox_head.scales.2.scale"} <= set(
            names.values()
        )
    assert main(["import-weights", str(src), "--arch", str(arch_file), "--out", str(out)]) == 0
    source = torch.load(src, weights_only=True)["state_dict"]
    written = torch.load(out, weights_only=False)
    assert ArchSpec.from_dict(written["meta"]["scrfd_arch"]) == arch
    for ours, theirs in names.items():
        assert torch.equal(written["state_dict"][ours], source[theirs]), ours


def test_reference_checkpoint_that_does_not_fit_names_the_layer_and_both_shapes(tmp_path: Path, capsys) -> None:
    arch = small_resnet_kps()
    src, arch_file, out = tmp_path / "ref.pth", tmp_path / "arch.json", tmp_path / "ours.pth"
    arch_file.write_text(arch.to_json())
    reference_checkpoint(arch, src, seed=4)
    data = torch.load(src, weights_only=True)
    data["state_dict"]["backbone.layer2.0.conv1.weight"] = torch.zeros(24, 8, 3, 3)
    torch.save(data, src)
    assert main(["import-weights", str(src), "--arch", str(arch_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "backbone.layer2.0.conv1.weight" in err and "(24, 8, 3, 3)" in err and "(16, 8, 3, 3)" in err
    assert not out.exists()


def test_onnx_with_folded_norms_and_box_scales_round_trips(tmp_path: Path) -> None:
    """An ONNX file like the released 2.5GF/10GF ones (ResNet, BN folded, a Scale Mul per stride) imports exactly."""
    arch = small_resnet_kps()
    torch.manual_seed(2)
    model = build_model(arch).eval()
    with torch.no_grad():  # trained-looking norms and scales, so that folding and the Muls matter
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn_like(buf))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand_like(buf))
        for name, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
            if name.startswith("bbox_head.scales."):
                p.fill_(0.5 + float(name[-7]))  # scales.0 -> 0.5, scales.1 -> 1.5, scales.2 -> 2.5
    path = tmp_path / "folded.onnx"
    path.write_bytes(export_onnx_bytes(released_head_module(model), True, (128, 128)))
    (tmp_path / "arch.json").write_text(arch.to_json())
    out = tmp_path / "imported.pth"
    assert main(["import-weights", str(path), "--arch", str(tmp_path / "arch.json"), "--out", str(out)]) == 0
    state = torch.load(out, weights_only=False)["state_dict"]
    assert [float(state[f"bbox_head.scales.{i}.scale"]) for i in range(3)] == pytest.approx([0.5, 1.5, 2.5])
    imported = build_model(arch).eval()
    imported.load_state_dict(state)
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        for a, b in zip(released_head_module(imported)(x), released_head_module(model)(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4)
    # the same file read as an architecture without a box Scale is refused, naming the stride
    no_scale = tmp_path / "no_scale.json"
    no_scale.write_text(
        ArchSpec.from_dict({**arch.to_dict(), "head": {**arch.to_dict()["head"], "box_scale": False}}).to_json()
    )
    with pytest.raises(UserError, match="stride-8 box output by 0.5"):
        import_weights(path, no_scale, tmp_path / "never.pth")
    assert not (tmp_path / "never.pth").exists()


@needs_released
@pytest.mark.slow  # about 30 s: one tiny epoch from the imported weights, then tools/test.py on demo data
def test_imported_checkpoint_trains_with_load_from_and_tests_with_tools_test(imported: Path, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    write_demo_dataset(demo, DemoConfig(num_train=2, num_val=2, seed=1))
    work = tmp_path / "work"
    args = ["train", "--arch", str(ARCH_500M), "--data", str(demo), "--epochs", "1", "--img-size", "128"]
    args += ["--batch-size", "2", "--workers", "0", "--device", "cpu", "--work-dir", str(work)]
    assert main([*args, "--load-from", str(imported)]) == 0
    trained = torch.load(work / "epoch_1.pth", weights_only=False)["state_dict"]
    start = torch.load(imported, weights_only=False)["state_dict"]
    key = "backbone.layer4.5.pointwise_conv.conv.weight"
    # one warm-up step at lr 1e-5 barely moves the imported weights (a fresh start would be unrelated)
    assert torch.allclose(trained[key], start[key], atol=1e-3)
    # a checkpoint of another architecture is refused before training
    assert (
        main([*args, "--load-from", str(imported), "--arch", str(ARCH_2_5G), "--work-dir", str(tmp_path / "w2")]) == 2
    )

    options = []
    for part in (
        "dataset.data_root",
        "dataset.ann_file",
        "dataset.data_prefix.img",
        "num_workers",
        "persistent_workers",
    ):
        value = {
            "dataset.data_root": demo,
            "dataset.ann_file": "val/labelv2.txt",
            "dataset.data_prefix.img": "val/images/",
        }
        options.append(f"test_dataloader.{part}={value.get(part, 0 if part == 'num_workers' else False)}")
    options.append(f"test_evaluator.gt_dir={demo / 'wider_face_split'}")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "test.py"), str(REPO / "configs" / "scrfd" / "scrfd_500m_bnkps.py")]
        + [str(imported), "--work-dir", str(tmp_path / "test"), "--cfg-options", *options],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "widerface/hard" in proc.stdout
