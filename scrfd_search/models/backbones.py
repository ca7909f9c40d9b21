"""SCRFD backbones (ResNet with a deep stem, MobileNetV1) with free per-stage depths and widths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from mmdet.models.layers import ResLayer
from mmdet.registry import MODELS
from mmengine.model import BaseModule, constant_init
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

RESNET_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
STAGE_STRIDES = (1, 2, 2, 2)
DEFAULT_NORM = {"type": "BN", "requires_grad": True}
DEFAULT_INIT = [
    {"type": "Kaiming", "layer": "Conv2d"},
    {"type": "Constant", "val": 1, "layer": ["_BatchNorm", "GroupNorm"]},
]


def _check_stages(depths: Sequence[int], widths: Sequence[int]) -> None:
    """Require four stages given as depths and widths of equal length."""
    if len(depths) != 4 or len(widths) != 4:
        raise ValueError(f"expected 4 stage depths and widths, got {list(depths)} and {list(widths)}")


class _StagedBackbone(BaseModule):
    """Shared forward of both backbones: stem, then layer1..layer4, returning the chosen stage outputs."""

    def __init__(self, out_indices: Sequence[int], norm_eval: bool, init_cfg: list | dict | None) -> None:
        super().__init__(init_cfg=init_cfg if init_cfg is not None else DEFAULT_INIT)
        self.out_indices = tuple(out_indices)
        self.norm_eval = norm_eval

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run stem and the four stages; return C2..C5 (those in out_indices)."""
        x = self.stem(x)
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> _StagedBackbone:
        """Switch mode, keeping BatchNorm layers in eval mode when norm_eval is set."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


@MODELS.register_module()
class SCRFDResNet(_StagedBackbone):
    """ResNet with a three-conv deep stem and average-pool shortcuts (ResNet-D style), any depths/widths.

    Stage k has ``depths[k]`` blocks of width ``widths[k]`` (the inner width for bottlenecks, whose
    output is 4x wider); layer1 keeps stride 4, layers 2-4 halve the resolution. With
    ``zero_init_residual`` (the reference ResNetV1e's default) each block's last norm starts at zero,
    so that every residual block starts as the identity.
    """

    def __init__(
        self,
        block: str,
        stem_width: int,
        depths: Sequence[int],
        widths: Sequence[int],
        norm_cfg: dict | None = None,
        norm_eval: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        zero_init_residual: bool = True,
        init_cfg: list | dict | None = None,
    ) -> None:
        super().__init__(out_indices, norm_eval, init_cfg)
        self.zero_init_residual = zero_init_residual
        if block not in RESNET_BLOCKS:
            raise ValueError(f"block: {block!r} is not one of {', '.join(RESNET_BLOCKS)}")
        _check_stages(depths, widths)
        norm_cfg = dict(norm_cfg or DEFAULT_NORM)
        block_cls = RESNET_BLOCKS[block]
        half = stem_width // 2
        self.stem = nn.Sequential(
            ConvModule(3, half, 3, stride=2, padding=1, norm_cfg=norm_cfg),
            ConvModule(half, half, 3, stride=1, padding=1, norm_cfg=norm_cfg),
            ConvModule(half, stem_width, 3, stride=1, padding=1, norm_cfg=norm_cfg),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        in_channels = stem_width
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            layer = ResLayer(
                block=block_cls,
                inplanes=in_channels,
                planes=width,
                num_blocks=depth,
                stride=STAGE_STRIDES[i],
                avg_down=True,
                style="pytorch",
                norm_cfg=norm_cfg,
            )
            self.add_module(f"layer{i + 1}", layer)
            in_channels = width * block_cls.expansion

    def init_weights(self) -> None:
        """Kaiming convs and unit norms (init_cfg), then zero each block's last norm (zero_init_residual)."""
        super().init_weights()
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    constant_init(m.norm3, 0)
                elif isinstance(m, BasicBlock):
                    constant_init(m.norm2, 0)


def _conv_dw(in_channels: int, out_channels: int, stride: int, norm_cfg: dict) -> nn.Module:
    """MobileNetV1 unit: depthwise 3x3 + norm + ReLU, then pointwise 1x1 + norm + ReLU."""
    return DepthwiseSeparableConvModule(in_channels, out_channels, 3, stride=stride, padding=1, norm_cfg=norm_cfg)


@MODELS.register_module()
class SCRFDMobileNet(_StagedBackbone):
    """MobileNetV1 (depthwise separable convs) with free per-stage depths and widths.

    stem = 3x3 conv (stride 2) + one depthwise separable unit; each stage starts with a stride-2 unit.
    """

    def __init__(
        self,
        stem_width: int,
        depths: Sequence[int],
        widths: Sequence[int],
        norm_cfg: dict | None = None,
        norm_eval: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        init_cfg: list | dict | None = None,
    ) -> None:
        super().__init__(out_indices, norm_eval, init_cfg)
        _check_stages(depths, widths)
        norm_cfg = dict(norm_cfg or DEFAULT_NORM)
        self.stem = nn.Sequential(
            ConvModule(3, stem_width, 3, stride=2, padding=1, norm_cfg=norm_cfg),
            _conv_dw(stem_width, stem_width, 1, norm_cfg),
        )
        in_channels = stem_width
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            units = [_conv_dw(in_channels, width, 2, norm_cfg)]
            units += [_conv_dw(width, width, 1, norm_cfg) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
            in_channels = width
