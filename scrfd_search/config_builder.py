"""The mmdet 3.x config of an SCRFD detector built from an ArchSpec, and the detector itself.

`build_config` makes every training config in the project: the short search-time runs and the
exported full-schedule configs differ only in the `Schedule` and `DataSettings` they are given.
Its parts (`model_defaults`, `dataloader_config`, `schedule_config`, `runtime_config`) are also
what `config_writer` renders as the `_base_` files of the config files it writes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from scrfd_search.data.pipelines import CUSTOM_IMPORTS, GT_SUBDIR, LARGE_CROPS, dataset_config
from scrfd_search.errors import UserError
from scrfd_search.head_settings import ANCHOR_GENERATOR, ATSS_TOPK, LOSS_BBOX, LOSS_CLS, LOSS_KPS
from scrfd_search.recipe import Recipe
from scrfd_search.space.arch import ArchSpec

LAYOUTS = ("wider", "retinaface")
PIXEL_MEAN = [127.5, 127.5, 127.5]
PIXEL_STD = [128.0, 128.0, 128.0]
SIZE_DIVISOR = 32  # the deepest backbone stride
# Reference recipe (insightface SCRFD configs): 640 epochs, lr steps at epochs 440 and 544, lr 0.01
# for 8 images x 4 GPUs, linear warm-up over 1500 iterations from 0.001 x lr (the optimiser's own
# numbers: scrfd_search.recipe.OPTIMIZERS).
REFERENCE_EPOCHS = 640
REFERENCE_STEPS = (440, 544)
REFERENCE_BATCH = 32
REFERENCE_EVAL_INTERVAL = 80
# The reference keeps every detection (max_per_img=-1); mmdet needs a bound. WIDER FACE val has at
# most 709 faces in one image, so 1000 never cuts a true face from the ranking.
MAX_DETECTIONS = 1000
# The reference never uses ignored faces (its ATSS ignore_iof_thr is -1); we keep anchors lying
# mostly inside an ignored (invalid) face out of the negatives instead of teaching "not a face".
IGNORE_IOF_THR = 0.5
GRAD_CLIP_NORM = 35.0  # a safety net for short, noisy search runs; inactive in normal training
AMP_DTYPES = ("bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


def _require(ok: bool, message: str) -> None:
    """Raise UserError(message) unless ok."""
    if not ok:
        raise UserError(message)


@dataclass(frozen=True)
class DataSettings:
    """Where the data lives and how it is fed: layout, sizes, batch, optional subsets.

    `layout` 'wider' is the official WIDER FACE tree (wider_face_split/, WIDER_train/images/, ...),
    'retinaface' the SCRFD tree (train/labelv2.txt + train/images/, val/...). The *_ann/*_img fields
    override the layout's annotation file and image folder (relative to data_root).
    """

    data_root: str
    gt_dir: str
    layout: str = "wider"
    train_ann: str | None = None
    train_img: str | None = None
    val_ann: str | None = None
    val_img: str | None = None
    img_size: int = 640
    batch_size: int = 8
    val_batch_size: int = 1
    num_workers: int = 2
    with_keypoints: bool = False
    crop_choice: tuple[float, ...] = LARGE_CROPS
    bbox_clip_border: bool = True
    max_train_images: int | None = None
    max_val_images: int | None = None

    def __post_init__(self) -> None:
        """Validate every field, naming the first one that is wrong."""
        _require(self.layout in LAYOUTS, f"data layout: {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        _require(
            isinstance(self.img_size, int) and self.img_size >= 64 and self.img_size % SIZE_DIVISOR == 0,
            f"img_size: {self.img_size!r} is not allowed (expected a multiple of {SIZE_DIVISOR}, at least 64)",
        )
        for name in ("batch_size", "val_batch_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, f"{name}: expected an integer >= 1, got {value!r}")
        _require(
            isinstance(self.num_workers, int) and self.num_workers >= 0,
            f"num_workers: expected an integer >= 0, got {self.num_workers!r}",
        )
        for name in ("max_train_images", "max_val_images"):
            value = getattr(self, name)
            _require(
                value is None or (isinstance(value, int) and value >= 1),
                f"{name}: expected an integer >= 1 or nothing, got {value!r}",
            )
        _require(
            len(self.crop_choice) > 0 and all(c > 0 for c in self.crop_choice),
            f"crop_choice: expected positive crop ratios, got {self.crop_choice!r}",
        )


def widerface_data(data_root: str) -> DataSettings:
    """Real WIDER FACE in the official layout: 640x640 large-crop training, metric ground truth beside it."""
    _require(bool(data_root.strip()), "data root: empty (expected the WIDER FACE folder, e.g. data/widerface)")
    root = data_root.rstrip("/") + "/"
    return DataSettings(data_root=root, gt_dir=f"{root}{GT_SUBDIR}/", layout="wider", crop_choice=LARGE_CROPS)


RETINAFACE_DATA_ROOT = "data/retinaface/"


def retinaface_data(data_root: str = RETINAFACE_DATA_ROOT) -> DataSettings:
    """WIDER FACE in the RetinaFace layout with landmarks (train/labelv2.txt, val/...; the .mat files in val/gt/)."""
    root = data_root.rstrip("/") + "/"
    return DataSettings(data_root=root, gt_dir=f"{root}val/gt/", layout="retinaface", with_keypoints=True)


@dataclass(frozen=True)
class Schedule:
    """The optimisation schedule: the recipe's optimiser, linear warm-up, two lr steps at 440/640 and 544/640.

    `recipe.lr` is the learning rate for a total batch of `base_batch_size` images; mmengine scales it
    linearly to the real batch (set base_batch_size to None to use it as given).
    """

    epochs: int
    recipe: Recipe = Recipe()
    base_batch_size: int | None = REFERENCE_BATCH
    warmup_iters: int = 1500
    warmup_ratio: float = 0.001
    val_interval: int | None = None
    checkpoint_interval: int | None = None
    log_interval: int = 50

    def __post_init__(self) -> None:
        """Validate the numbers."""
        _require(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs: expected >= 1, got {self.epochs!r}")
        _require(isinstance(self.recipe, Recipe), f"recipe: expected a Recipe, got {self.recipe!r}")
        _require(self.warmup_iters >= 0, f"warmup_iters: expected >= 0, got {self.warmup_iters!r}")
        _require(0 < self.warmup_ratio <= 1, f"warmup_ratio: expected in (0, 1], got {self.warmup_ratio!r}")
        for name in ("val_interval", "checkpoint_interval"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"{name}: expected >= 1 or nothing, got {value!r}")

    @property
    def lr(self) -> float:
        """The recipe's learning rate (for base_batch_size images)."""
        return float(self.recipe.lr)  # type: ignore[arg-type]

    @classmethod
    def full(cls, recipe: Recipe | None = None) -> Schedule:
        """The reference's full schedule: 640 epochs, validation and checkpoints every 80."""
        return cls(
            epochs=REFERENCE_EPOCHS,
            recipe=recipe or Recipe(),
            val_interval=REFERENCE_EVAL_INTERVAL,
            checkpoint_interval=REFERENCE_EVAL_INTERVAL,
        )

    @classmethod
    def search(cls, epochs: int = 80, recipe: Recipe | None = None, val_interval: int | None = None) -> Schedule:
        """The search trials' schedule: shortened to `epochs` (lr steps at the same fractions), the lr used
        as given (the reference trains each candidate with 8 images at 0.01, unscaled); validate at the end."""
        return cls(epochs=epochs, recipe=recipe or Recipe(), base_batch_size=None, val_interval=val_interval)

    @property
    def milestones(self) -> tuple[int, int]:
        """Epochs where the lr drops tenfold: the reference's 440/640 and 544/640 of the schedule."""
        return tuple(max(1, round(self.epochs * s / REFERENCE_EPOCHS)) for s in REFERENCE_STEPS)  # type: ignore[return-value]


def _norm_cfg(arch: ArchSpec) -> dict:
    """The head's norm layer: GroupNorm with the arch's groups, or BatchNorm."""
    if arch.head.norm == "gn":
        return dict(type="GN", num_groups=arch.head.gn_groups, requires_grad=True)
    return dict(type="BN", requires_grad=True)


def backbone_config(arch: ArchSpec) -> dict:
    """SCRFDMobileNet for depthwise blocks, SCRFDResNet for basic/bottleneck blocks."""
    cfg = dict(
        stem_width=arch.stem_width,
        depths=list(arch.depths),
        widths=list(arch.widths),
        norm_cfg=dict(type="BN", requires_grad=True),
    )
    if arch.block == "depthwise":
        return dict(type="SCRFDMobileNet", **cfg)
    # zero_init_residual: as the reference's ResNetV1e, each residual block starts as the identity
    return dict(type="SCRFDResNet", block=arch.block, zero_init_residual=True, **cfg)


def head_config(arch: ArchSpec) -> dict:
    """The SCRFDHead settings an ArchSpec decides (anchors and losses are in model_defaults)."""
    return dict(
        in_channels=arch.neck.channels,
        feat_channels=arch.head.width,
        stacked_convs=arch.head.num_convs,
        norm_cfg=_norm_cfg(arch),
        shared_tower=arch.head.shared,
        depthwise=arch.head.depthwise,
        with_kps=arch.head.keypoints,
        box_scale=arch.head.box_scale,
    )


def model_defaults() -> dict:
    """The parts of the mmdet `model=` dict every SCRFD detector shares: anchors, losses, assigner, tests."""
    return dict(
        type="SingleStageDetector",
        data_preprocessor=dict(
            type="FaceDataPreprocessor",
            mean=PIXEL_MEAN,
            std=PIXEL_STD,
            bgr_to_rgb=True,
            pad_size_divisor=SIZE_DIVISOR,
        ),
        neck=dict(type="PAFPN", start_level=1, add_extra_convs="on_output", num_outs=3),
        bbox_head=dict(
            type="SCRFDHead",
            num_classes=1,
            anchor_generator=copy.deepcopy(ANCHOR_GENERATOR),
            bbox_coder=dict(type="DistancePointBBoxCoder"),
            loss_cls=dict(LOSS_CLS),
            loss_bbox=dict(LOSS_BBOX),
            loss_kps=dict(LOSS_KPS),
        ),
        train_cfg=dict(
            assigner=dict(type="ATSSAssigner", topk=ATSS_TOPK, ignore_iof_thr=IGNORE_IOF_THR), allowed_border=-1
        ),
        test_cfg=dict(
            nms_pre=-1,
            min_bbox_size=0,
            score_thr=0.02,
            nms=dict(type="nms", iou_threshold=0.45),
            max_per_img=MAX_DETECTIONS,
        ),
    )


def arch_model_config(arch: ArchSpec) -> dict:
    """The parts of the `model=` dict an ArchSpec decides: backbone, neck channels, head tower."""
    return dict(
        backbone=backbone_config(arch),
        neck=dict(in_channels=list(arch.stage_out_channels), out_channels=arch.neck.channels),
        bbox_head=head_config(arch),
    )


def model_config(arch: ArchSpec) -> dict:
    """The mmdet `model=` dict: preprocessor, backbone, PAFPN neck, SCRFD head, train/test settings."""
    merged = merge_dicts(model_defaults(), arch_model_config(arch))
    first = ("type", "data_preprocessor", "backbone")  # the order a reader expects, the data flow's
    return {**{k: merged[k] for k in first}, **merged}


def merge_dicts(base: dict, update: dict) -> dict:
    """A new dict: base with update merged in key by key, recursively (mmengine's rule for configs)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def _dataset(data: DataSettings, split: str, device: str = "auto") -> dict:
    """One split's dataset config, with the layout defaults, overrides and optional subset.

    Photometric distortion runs on the GPU unless the run is on the CPU (see train_pipeline).
    """
    is_train = split == "train"
    cfg = dataset_config(
        data.data_root,
        split=split,
        img_size=data.img_size,
        crop_choice=data.crop_choice,
        with_keypoints=data.with_keypoints,
        layout=data.layout,
        bbox_clip_border=data.bbox_clip_border,
        photometric_on_device=device != "cpu",
    )
    ann, img = (data.train_ann, data.train_img) if is_train else (data.val_ann, data.val_img)
    if ann:
        cfg["ann_file"] = ann
    if img:
        cfg["data_prefix"] = dict(img=img)
    limit = data.max_train_images if is_train else data.max_val_images
    if limit:
        cfg["indices"] = limit
    return cfg


def dataloader_config(data: DataSettings, device: str = "auto") -> dict:
    """train/val/test dataloaders and the WIDER FACE evaluators (pinned host memory for a GPU)."""
    workers = dict(num_workers=data.num_workers, persistent_workers=data.num_workers > 0)
    if device == "cuda":
        workers["pin_memory"] = True
    val_loader = dict(
        batch_size=data.val_batch_size,
        drop_last=False,
        sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=_dataset(data, "val", device),
        **workers,
    )
    evaluator = dict(type="WiderFaceMetric", gt_dir=data.gt_dir)
    return dict(
        train_dataloader=dict(
            batch_size=data.batch_size,
            sampler=dict(type="DefaultSampler", shuffle=True),
            dataset=_dataset(data, "train", device),
            **workers,
        ),
        val_dataloader=val_loader,
        test_dataloader=dict(val_loader),
        val_evaluator=evaluator,
        test_evaluator=dict(evaluator),
    )


def _optim_wrapper(schedule: Schedule, amp_dtype: str | None) -> dict:
    """The recipe's optimiser with gradient clipping; with amp_dtype, mmengine's AmpOptimWrapper.

    float16 needs dynamic loss scaling (its range is small); bfloat16 has float32's range, so its
    scale stays fixed at 1 (the scaler then only skips steps with non-finite gradients).
    """
    wrapper = schedule.recipe.optim_wrapper(GRAD_CLIP_NORM)
    if amp_dtype is None:
        return wrapper
    _require(amp_dtype in AMP_DTYPES, f"amp dtype: {amp_dtype!r} is not one of {', '.join(AMP_DTYPES)}")
    _require(
        wrapper["type"] == "OptimWrapper",
        f"--amp: mixed precision does not combine with {schedule.recipe.optimizer}'s optimizer wrapper",
    )
    return {
        **wrapper,
        "type": "AmpOptimWrapper",
        "dtype": amp_dtype,
        "loss_scale": "dynamic" if amp_dtype == "float16" else 1.0,
    }


def schedule_config(schedule: Schedule, amp_dtype: str | None = None) -> dict:
    """Optimiser, lr schedule and loops."""
    schedulers = []
    if schedule.warmup_iters > 0:
        schedulers.append(
            dict(
                type="LinearLR",
                start_factor=schedule.warmup_ratio,
                by_epoch=False,
                begin=0,
                end=schedule.warmup_iters,
            )
        )
    schedulers.append(
        dict(
            type="MultiStepLR",
            by_epoch=True,
            begin=0,
            end=schedule.epochs,
            milestones=list(schedule.milestones),
            gamma=0.1,
        )
    )
    return dict(
        optim_wrapper=_optim_wrapper(schedule, amp_dtype),
        auto_scale_lr=dict(enable=schedule.base_batch_size is not None, base_batch_size=schedule.base_batch_size or 1),
        param_scheduler=schedulers,
        train_cfg=dict(
            type="EpochBasedTrainLoop",
            max_epochs=schedule.epochs,
            val_interval=schedule.val_interval or schedule.epochs,
        ),
        val_cfg=dict(type="ValLoop"),
        test_cfg=dict(type="TestLoop"),
    )


def runtime_config(schedule: Schedule, seed: int = 0, device: str = "auto") -> dict:
    """Hooks, logging, environment, seed and registry scope (mmdet's default runtime plus ours)."""
    return dict(
        default_scope="mmdet",
        custom_imports=dict(
            imports=[
                "scrfd_search.models",
                *CUSTOM_IMPORTS,
                "scrfd_search.evaluation.metric",
                *schedule.recipe.config_imports,
            ],
            allow_failed_imports=False,
        ),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=schedule.log_interval),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(
                type="CheckpointHook",
                interval=schedule.checkpoint_interval or schedule.epochs,
                max_keep_ckpts=2,
            ),
            sampler_seed=dict(type="DistSamplerSeedHook"),
            visualization=dict(type="DetVisualizationHook"),  # draws nothing unless asked to (draw=True)
        ),
        env_cfg=dict(
            # fixed 640x640 training inputs: cuDNN's per-shape algorithm search pays off on a GPU
            cudnn_benchmark=device == "cuda",
            mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
            dist_cfg=dict(backend="nccl"),
        ),
        visualizer=dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")]),
        log_processor=dict(type="LogProcessor", window_size=50, by_epoch=True),
        log_level="INFO",
        load_from=None,
        resume=False,
        randomness=dict(seed=seed, deterministic=False),
    )


def build_config(
    arch: ArchSpec,
    *,
    data: DataSettings,
    schedule: Schedule,
    work_dir: str | None = None,
    seed: int = 0,
    device: str = "auto",
    amp_dtype: str | None = None,
) -> dict:
    """A complete mmdet 3 config dict (model, data, optimiser, schedule, hooks, evaluator) for arch.

    device 'cuda' pins host memory and lets cuDNN pick algorithms per shape; amp_dtype ('bfloat16' or
    'float16') trains with mixed precision (see `_optim_wrapper`).
    """
    _require(device in DEVICES, f"device: {device!r} is not one of {', '.join(DEVICES)}")
    _require(isinstance(seed, int) and not isinstance(seed, bool), f"seed: expected an integer, got {seed!r}")
    cfg = dict(model=model_config(arch))
    cfg.update(dataloader_config(data, device))
    cfg.update(schedule_config(schedule, amp_dtype))
    cfg.update(runtime_config(schedule, seed, device))
    if work_dir is not None:
        cfg["work_dir"] = str(work_dir)
    return cfg
