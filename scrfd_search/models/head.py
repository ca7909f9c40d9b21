"""SCRFDHead: one conv tower shared by the class and box (and keypoint) predictors, on mmdet's AnchorHead.

Boxes are regressed as the four distances from the anchor centre to the box sides in units of the
level's stride; classification is a joint face/IoU-quality score trained with Quality Focal Loss;
assignment is mmdet's ATSSAssigner. Only the layers and the target/loss/predict glue live here
(mmdet has no head with a shared cls/reg tower plus a keypoint branch); the assigner, sampler,
losses, anchor generator and box coder are mmdet's. NMS is torchvision's: mmdet's calls mmcv's
compiled kernel, which the project's mmcv build has for the CPU only.
"""

from __future__ import annotations

import copy

import torch
import torchvision
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule, Scale
from mmdet.models.dense_heads.anchor_head import AnchorHead
from mmdet.models.dense_heads.gfl_head import GFLHead
from mmdet.models.task_modules.prior_generators import anchor_inside_flags
from mmdet.models.utils import filter_scores_and_topk, unmap, unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet.utils import reduce_mean
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from scrfd_search.head_settings import ANCHOR_GENERATOR, LOSS_BBOX, LOSS_CLS, LOSS_KPS

NUM_KEYPOINTS = 5
HEAD_INIT = {
    "type": "Normal",
    "layer": "Conv2d",
    "std": 0.01,
    "override": {"type": "Normal", "name": "conv_cls", "std": 0.01, "bias_prob": 0.01},
}


def _flatten_levels(preds: list[Tensor], channels: int) -> Tensor:
    """(N, A*C, H, W) per level -> (N * sum(H*W*A), C), image-major, anchors in mmdet's prior order."""
    batch = preds[0].size(0)
    per_image = torch.cat([p.permute(0, 2, 3, 1).reshape(batch, -1, channels) for p in preds], dim=1)
    return per_image.reshape(-1, channels)


def _group_norm_for(norm_cfg: dict, channels: int) -> dict:
    """GN config whose group count divides `channels` (the largest divisor of both); other norms as is."""
    if norm_cfg.get("type") != "GN":
        return norm_cfg
    groups = norm_cfg.get("num_groups", 32)
    fitted = max(g for g in range(1, groups + 1) if groups % g == 0 and channels % g == 0)
    return {**norm_cfg, "num_groups": fitted}


@MODELS.register_module()
class SCRFDHead(AnchorHead):
    """SCRFD head: per level, `stacked_convs` 3x3 units, then 3x3 class, box and keypoint predictors.

    Args:
        shared_tower: one tower and one set of predictors for all strides (else one per stride).
        depthwise: the tower units are depthwise-separable (dw 3x3 + norm + ReLU, pw 1x1 + norm + ReLU).
        with_kps: predict five landmarks per anchor (offsets from the anchor centre, in strides).
        box_scale: a learnable Scale per stride multiplies the box distances (the reference's
            scale_mode; its 0.5GF keypoint model has none).
    """

    # Two helpers of mmdet's GFLHead (also an ATSS head) that read none of GFLHead's own state: this head
    # derives from AnchorHead and takes just these two as its own methods.
    anchor_center = GFLHead.anchor_center
    get_num_level_anchors_inside = GFLHead.get_num_level_anchors_inside

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 64,
        stacked_convs: int = 2,
        norm_cfg: dict | None = None,
        shared_tower: bool = True,
        depthwise: bool = False,
        with_kps: bool = False,
        box_scale: bool = True,
        anchor_generator: dict | None = None,
        bbox_coder: dict | None = None,
        loss_cls: dict | None = None,
        loss_bbox: dict | None = None,
        loss_kps: dict | None = None,
        train_cfg: dict | None = None,
        test_cfg: dict | None = None,
        init_cfg: dict | list | None = None,
    ) -> None:
        self.stacked_convs = stacked_convs
        self.norm_cfg = dict(norm_cfg or {"type": "GN", "num_groups": 16, "requires_grad": True})
        self.shared_tower = shared_tower
        self.depthwise = depthwise
        self.with_kps = with_kps
        self.box_scale = box_scale
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            feat_channels=feat_channels,
            anchor_generator=anchor_generator or ANCHOR_GENERATOR,
            bbox_coder=bbox_coder or {"type": "DistancePointBBoxCoder"},
            reg_decoded_bbox=True,
            loss_cls=loss_cls or LOSS_CLS,
            loss_bbox=loss_bbox or LOSS_BBOX,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg or HEAD_INIT,
        )
        self.loss_kps = MODELS.build(loss_kps or LOSS_KPS) if with_kps else None

    # Layers -------------------------------------------------------------------------------------

    def _tower_unit(self, in_channels: int) -> nn.Module:
        """One 3x3 tower unit (plain or depthwise separable) with norm and ReLU."""
        if not self.depthwise:
            return ConvModule(in_channels, self.feat_channels, 3, padding=1, norm_cfg=self.norm_cfg)
        return DepthwiseSeparableConvModule(
            in_channels,
            self.feat_channels,
            3,
            padding=1,
            dw_norm_cfg=_group_norm_for(self.norm_cfg, in_channels),
            pw_norm_cfg=self.norm_cfg,
        )

    def _init_layers(self) -> None:
        """Towers, predictors (one set, or one per stride) and, with box_scale, a learnable Scale per stride."""
        num_sets = 1 if self.shared_tower else self.prior_generator.num_levels
        out_channels = self.feat_channels if self.stacked_convs > 0 else self.in_channels
        anchors = self.num_base_priors
        self.towers = nn.ModuleList()
        self.conv_cls = nn.ModuleList()
        self.conv_reg = nn.ModuleList()
        self.conv_kps = nn.ModuleList()
        for _ in range(num_sets):
            units = [
                self._tower_unit(self.in_channels if i == 0 else self.feat_channels) for i in range(self.stacked_convs)
            ]
            self.towers.append(nn.Sequential(*units))
            self.conv_cls.append(nn.Conv2d(out_channels, anchors * self.cls_out_channels, 3, padding=1))
            self.conv_reg.append(nn.Conv2d(out_channels, anchors * 4, 3, padding=1))
            if self.with_kps:
                self.conv_kps.append(nn.Conv2d(out_channels, anchors * NUM_KEYPOINTS * 2, 3, padding=1))
        strides = self.prior_generator.strides
        self.scales = nn.ModuleList([Scale(1.0) if self.box_scale else nn.Identity() for _ in strides])

    def forward(self, x: tuple[Tensor, ...]) -> tuple[list[Tensor], ...]:
        """Class logits, box distances (in strides) and, with keypoints, landmark offsets per level."""
        cls_scores, bbox_preds, kps_preds = [], [], []
        for level, feat in enumerate(x):
            k = 0 if self.shared_tower else level
            feat = self.towers[k](feat)
            cls_scores.append(self.conv_cls[k](feat))
            bbox_preds.append(self.scales[level](self.conv_reg[k](feat)).float())
            if self.with_kps:
                kps_preds.append(self.conv_kps[k](feat))
        if self.with_kps:
            return cls_scores, bbox_preds, kps_preds
        return cls_scores, bbox_preds

    # Training -----------------------------------------------------------------------------------

    def loss(self, x: tuple[Tensor, ...], batch_data_samples: list) -> dict:
        """Forward, then losses against the data samples' gt_instances (and ignored_instances)."""
        outs = self(x)
        gts, gts_ignore, img_metas = unpack_gt_instances(batch_data_samples)
        kps_preds = outs[2] if self.with_kps else None
        return self.loss_by_feat(outs[0], outs[1], gts, img_metas, gts_ignore, kps_preds=kps_preds)

    def _image_targets(
        self,
        anchors: Tensor,
        valid_flags: Tensor,
        num_level_anchors: list[int],
        gt_instances: InstanceData,
        img_meta: dict,
        gt_instances_ignore: InstanceData | None,
    ) -> tuple[Tensor, ...]:
        """ATSS-assign one image's anchors; return labels, weights, box and keypoint targets per anchor."""
        inside = anchor_inside_flags(
            anchors, valid_flags, img_meta["img_shape"][:2], self.train_cfg.get("allowed_border", -1)
        )
        priors = InstanceData(priors=anchors[inside])
        level_inside = self.get_num_level_anchors_inside(num_level_anchors, inside)
        assign_result = self.assigner.assign(priors, level_inside, gt_instances, gt_instances_ignore)
        sampling = self.sampler.sample(assign_result, priors, gt_instances)

        num = priors.priors.size(0)
        labels = anchors.new_full((num,), self.num_classes, dtype=torch.long)
        label_weights = anchors.new_zeros(num)
        bbox_targets = anchors.new_zeros((num, 4))
        kps_targets = anchors.new_zeros((num, NUM_KEYPOINTS * 2))
        kps_weights = anchors.new_zeros((num, NUM_KEYPOINTS * 2))
        pos, neg = sampling.pos_inds, sampling.neg_inds
        if len(pos) > 0:
            bbox_targets[pos] = get_box_tensor(sampling.pos_gt_bboxes)
            labels[pos] = sampling.pos_gt_labels
            label_weights[pos] = 1.0
            if self.with_kps and "keypoints" in gt_instances:
                kps = torch.as_tensor(gt_instances.keypoints, dtype=anchors.dtype, device=anchors.device)
                kps = kps[sampling.pos_assigned_gt_inds]
                kps_targets[pos] = kps[..., :2].reshape(-1, NUM_KEYPOINTS * 2)
                # Invisible or absent landmarks (flag <= 0) get no keypoint loss.
                visible = (kps[..., 2:] > 0).to(anchors.dtype).expand(-1, -1, 2)
                kps_weights[pos] = visible.reshape(-1, NUM_KEYPOINTS * 2)
        label_weights[neg] = 1.0
        total = anchors.size(0)
        return (
            unmap(labels, total, inside, fill=self.num_classes),
            unmap(label_weights, total, inside),
            unmap(bbox_targets, total, inside),
            unmap(kps_targets, total, inside),
            unmap(kps_weights, total, inside),
            anchors.new_tensor(float(len(pos))),
        )

    def loss_by_feat(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        batch_gt_instances: list[InstanceData],
        batch_img_metas: list[dict],
        batch_gt_instances_ignore: list[InstanceData | None] | None = None,
        kps_preds: list[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """QFL (IoU-quality targets), DIoU on positives and Smooth L1 on visible landmarks.

        Args:
            cls_scores: per level, (N, A * C, H, W) class logits (A anchors per location, C classes).
            bbox_preds: per level, (N, A * 4, H, W) distances to the box sides, in units of the stride.
            batch_gt_instances: per image, `bboxes` (G, 4) and `labels` (G,), with `keypoints` (G, 5, 3)
                when the head predicts landmarks.
            batch_img_metas: per image, its meta information (`img_shape`, ...).
            batch_gt_instances_ignore: per image, faces to ignore (ATSS's ignore_iof_thr), or None.
            kps_preds: per level, (N, A * 10, H, W) landmark offsets from the anchor centre, in strides.

        Returns:
            loss_cls, loss_bbox and (with landmarks) loss_kps, each a scalar tensor.
        """
        anchors, strides, targets = self._batch_targets(
            cls_scores, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore
        )
        labels, label_weights, bbox_targets, kps_targets, kps_weights, num_pos = targets
        cls_score = _flatten_levels(cls_scores, self.cls_out_channels)  # (N * sum(H*W*A), C)
        bbox_pred = _flatten_levels(bbox_preds, 4)  # (N * sum(H*W*A), 4)
        pos = ((labels >= 0) & (labels < self.num_classes)).nonzero().squeeze(1)
        quality = label_weights.new_zeros(labels.shape)
        losses = {}
        if len(pos) > 0:
            pos_strides = strides[pos, None]
            centers = self.anchor_center(anchors[pos]) / pos_strides
            pos_pred_boxes = self.bbox_coder.decode(centers, bbox_pred[pos])
            pos_target_boxes = bbox_targets[pos] / pos_strides
            quality[pos] = bbox_overlaps(pos_pred_boxes.detach(), pos_target_boxes, is_aligned=True).clamp(0, 1)
            # Box and keypoint terms are averaged with each positive weighted by its predicted score.
            box_weights = cls_score.detach().sigmoid().max(dim=1)[0][pos]
            norm = reduce_mean(box_weights.sum()).clamp(min=1e-6).item()
            losses["loss_bbox"] = self.loss_bbox(pos_pred_boxes, pos_target_boxes, weight=box_weights, avg_factor=norm)
            if self.with_kps:
                kps_pred = _flatten_levels(kps_preds, NUM_KEYPOINTS * 2)[pos]
                offsets = kps_targets[pos].view(-1, NUM_KEYPOINTS, 2) / pos_strides[:, :, None] - centers[:, None]
                losses["loss_kps"] = self.loss_kps(
                    kps_pred,
                    offsets.reshape(-1, NUM_KEYPOINTS * 2),
                    weight=kps_weights[pos] * box_weights[:, None],
                    avg_factor=norm,
                )
        else:
            losses["loss_bbox"] = bbox_pred.sum() * 0
            if self.with_kps:
                losses["loss_kps"] = sum(k.sum() for k in kps_preds) * 0
        num_pos_avg = reduce_mean(num_pos.sum()).clamp(min=1.0).item()
        losses["loss_cls"] = self.loss_cls(cls_score, (labels, quality), weight=label_weights, avg_factor=num_pos_avg)
        return losses

    def _batch_targets(
        self,
        cls_scores: list[Tensor],
        batch_gt_instances: list[InstanceData],
        batch_img_metas: list[dict],
        batch_gt_instances_ignore: list[InstanceData | None] | None,
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """Anchors (N * M, 4), their strides (N * M,) and the ATSS targets of the whole batch, image-major.

        M is the anchors of one image over all levels. The targets are labels (N * M,), label weights
        (N * M,), box targets (N * M, 4), keypoint targets and weights (N * M, 10), and positives per image (N,).
        """
        num_imgs = len(batch_img_metas)
        featmap_sizes = [c.shape[-2:] for c in cls_scores]
        anchor_list, valid_list = self.get_anchors(featmap_sizes, batch_img_metas, device=cls_scores[0].device)
        num_level_anchors = [a.size(0) for a in anchor_list[0]]
        anchors = torch.cat(anchor_list[0])
        strides = torch.cat(
            [
                anchors.new_full((n,), float(s[0]))
                for n, s in zip(num_level_anchors, self.prior_generator.strides, strict=True)
            ]
        )
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs
        per_image = [
            self._image_targets(anchors, torch.cat(valid), num_level_anchors, gt, meta, ignore)
            for valid, gt, meta, ignore in zip(
                valid_list, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore, strict=True
            )
        ]
        targets = tuple(torch.cat(t) for t in list(zip(*per_image, strict=True))[:5])
        num_pos = torch.stack([t[5] for t in per_image])
        return anchors.repeat(num_imgs, 1), strides.repeat(num_imgs), (*targets, num_pos)

    # Inference ----------------------------------------------------------------------------------

    def predict_by_feat(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        kps_preds: list[Tensor] | None = None,
        batch_img_metas: list[dict] | None = None,
        cfg: dict | None = None,
        rescale: bool = False,
        with_nms: bool = True,
    ) -> list[InstanceData]:
        """Decode, threshold, (rescale) and NMS each image's detections; keypoints ride along."""
        cfg = ConfigDict(copy.deepcopy(self.test_cfg if cfg is None else cfg))
        featmap_sizes = [c.shape[-2:] for c in cls_scores]
        priors = self.prior_generator.grid_priors(featmap_sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device)
        results = []
        for img_id, img_meta in enumerate(batch_img_metas):
            levels = [
                (
                    cls_scores[i][img_id].detach(),
                    bbox_preds[i][img_id].detach(),
                    None if kps_preds is None else kps_preds[i][img_id].detach(),
                )
                for i in range(len(cls_scores))
            ]
            results.append(self._predict_image(levels, priors, img_meta, cfg, rescale, with_nms))
        return results

    def _predict_image(
        self,
        levels: list[tuple[Tensor, Tensor, Tensor | None]],
        priors: list[Tensor],
        img_meta: dict,
        cfg: ConfigDict,
        rescale: bool,
        with_nms: bool,
    ) -> InstanceData:
        """One image: per level keep scores above score_thr (top nms_pre), decode boxes and landmarks."""
        nms_pre = cfg.get("nms_pre", -1)
        kept = {"scores": [], "labels": [], "boxes": [], "priors": [], "kps": []}
        for (cls_score, bbox_pred, kps_pred), level_priors, stride in zip(
            levels, priors, self.prior_generator.strides, strict=True
        ):
            scores = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels).sigmoid()
            extras = {"boxes": bbox_pred.permute(1, 2, 0).reshape(-1, 4) * stride[0], "priors": level_priors}
            if kps_pred is not None:
                extras["kps"] = kps_pred.permute(1, 2, 0).reshape(-1, NUM_KEYPOINTS, 2) * stride[0]
            topk = nms_pre if nms_pre > 0 else scores.numel()
            scores, labels, _, extras = filter_scores_and_topk(scores, cfg.get("score_thr", 0.0), topk, extras)
            kept["scores"].append(scores)
            kept["labels"].append(labels)
            for key, value in extras.items():
                kept[key].append(value)
        centers = self.anchor_center(torch.cat(kept["priors"]))
        height, width = img_meta["img_shape"][:2]
        results = InstanceData()
        results.bboxes = self.bbox_coder.decode(centers, torch.cat(kept["boxes"]), max_shape=(height, width))
        results.scores = torch.cat(kept["scores"])
        results.labels = torch.cat(kept["labels"])
        if kept["kps"]:
            kps = centers[:, None, :] + torch.cat(kept["kps"])
            kps[..., 0].clamp_(0, width)
            kps[..., 1].clamp_(0, height)
            if rescale:
                kps = kps / kps.new_tensor(img_meta["scale_factor"][:2])
            results.keypoints = kps
        return self._bbox_post_process(results, cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)

    def _bbox_post_process(
        self,
        results: InstanceData,
        cfg: ConfigDict,
        rescale: bool = False,
        with_nms: bool = True,
        img_meta: dict | None = None,
    ) -> InstanceData:
        """mmdet's post-processing (rescale, size filter, NMS, keep max_per_img), NMS by torchvision.

        mmdet's version calls mmcv.ops.batched_nms, a compiled mmcv kernel: setup builds mmcv's CPU
        kernels only (no nvcc needed on a GPU machine), so on a CUDA tensor it would fail. torchvision's
        NMS runs the same greedy algorithm (suppress IoU > threshold, highest score first) and ships its
        CUDA kernels inside torch's own wheels.
        """
        results = super()._bbox_post_process(results, cfg, rescale=rescale, with_nms=False, img_meta=img_meta)
        if not with_nms or results.bboxes.numel() == 0:
            return results
        if cfg.get("min_bbox_size", -1) >= 0:  # mmdet applies its size filter only on its own NMS path
            boxes = get_box_tensor(results.bboxes)
            min_size = cfg["min_bbox_size"]
            valid = (boxes[:, 2] - boxes[:, 0] > min_size) & (boxes[:, 3] - boxes[:, 1] > min_size)
            if not valid.all():
                results = results[valid]
                if results.bboxes.numel() == 0:
                    return results
        nms = cfg.nms
        if nms.get("type", "nms") != "nms":
            raise ValueError(f"test_cfg.nms.type: only 'nms' is supported, got {nms.get('type')!r}")
        boxes = get_box_tensor(results.bboxes)
        if nms.get("class_agnostic", False):
            keep = torchvision.ops.nms(boxes, results.scores, float(nms.iou_threshold))
        else:
            keep = torchvision.ops.batched_nms(boxes, results.scores, results.labels, float(nms.iou_threshold))
        max_per_img = cfg.get("max_per_img", -1)
        return results[keep] if max_per_img is None or max_per_img < 0 else results[keep[:max_per_img]]
