"""Closed-form FLOPs and parameters of the detector an ArchSpec builds, counted the way fvcore counts.

pycls-style: every building block (conv, norm, upsample, residual block, neck, head) has a small cost
function returning (flops, params, output size). The structure mirrored here is the one
scrfd_search.models builds (a test holds the two equal); fvcore's conventions: a convolution costs
out_channels * in_channels/groups * k * k * out_h * out_w (bias ignored), eval-mode BatchNorm 2 per
element, GroupNorm 5 per element, nearest upsampling 1 per output element; ReLU, additions and
pooling are not counted. The sampler needs thousands of evaluations per second, while building and
tracing a model takes 0.2-1.5 s, and counters such as fvcore's only count built models.
"""

from __future__ import annotations

import functools

from scrfd_search.flops.report import DEFAULT_INPUT_SHAPE, FlopsReport
from scrfd_search.space.arch import BOTTLENECK_EXPANSION, WIDTH_STEP, ArchSpec, HeadSpec

Size = tuple[int, int]  # (height, width) of a feature map
Cost = tuple[int, int, Size]  # (flops, params, output size)

HEAD_STRIDES = 3  # the head runs on the three PAFPN outputs (strides 8, 16, 32)
NUM_ANCHORS = 2
BOX_OUTPUTS = 4
KEYPOINT_OUTPUTS = 10
CLASS_OUTPUTS = 1


def conv_out(size: Size, kernel: int, stride: int, padding: int) -> Size:
    """Output size of a convolution (floor arithmetic, as torch computes it)."""
    h, w = size
    return (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


def pool_out(size: Size, kernel: int, stride: int, ceil_mode: bool) -> Size:
    """Output size of an unpadded max/avg pooling with torch's ceil_mode rule."""

    def one(n: int) -> int:
        """One spatial dimension."""
        if not ceil_mode:
            return (n - kernel) // stride + 1
        out = -(-(n - kernel) // stride) + 1
        # torch drops a last window that would start outside the input
        return out - 1 if (out - 1) * stride >= n else out

    return one(size[0]), one(size[1])


def conv(size: Size, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False) -> Cost:
    """A 2-D convolution with 'same' padding (kernel // 2)."""
    out = conv_out(size, kernel, stride, kernel // 2)
    weights = c_out * (c_in // groups) * kernel * kernel
    return weights * out[0] * out[1], weights + (c_out if bias else 0), out


def batch_norm(size: Size, channels: int) -> Cost:
    """Eval-mode affine BatchNorm: fvcore counts 2 per element."""
    return 2 * channels * size[0] * size[1], 2 * channels, size


def group_norm(size: Size, channels: int) -> Cost:
    """Affine GroupNorm: fvcore counts 5 per element."""
    return 5 * channels * size[0] * size[1], 2 * channels, size


def norm(kind: str, size: Size, channels: int) -> Cost:
    """BatchNorm ('bn') or GroupNorm ('gn')."""
    return batch_norm(size, channels) if kind == "bn" else group_norm(size, channels)


def upsample_nearest(out_size: Size, channels: int) -> int:
    """Nearest-neighbour resize: fvcore counts one FLOP per output element."""
    return channels * out_size[0] * out_size[1]


def conv_norm(
    size: Size, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, kind: str = "bn"
) -> Cost:
    """Conv (no bias) followed by a norm layer; the ReLU after it costs nothing in fvcore."""
    f1, p1, out = conv(size, c_in, c_out, kernel, stride, groups)
    f2, p2, _ = norm(kind, out, c_out)
    return f1 + f2, p1 + p2, out


def separable(size: Size, c_in: int, c_out: int, stride: int = 1, kind: str = "bn") -> Cost:
    """Depthwise 3x3 conv + norm, then pointwise 1x1 conv + norm (MobileNetV1 unit)."""
    f1, p1, mid = conv_norm(size, c_in, c_in, 3, stride, groups=c_in, kind=kind)
    f2, p2, out = conv_norm(mid, c_in, c_out, 1, kind=kind)
    return f1 + f2, p1 + p2, out


def shortcut(size: Size, c_in: int, c_out: int, stride: int) -> Cost:
    """avg_down projection: AvgPool(stride, ceil_mode) (uncounted) then 1x1 conv + BN; none if not needed."""
    if stride == 1 and c_in == c_out:
        return 0, 0, size
    pooled = pool_out(size, stride, stride, ceil_mode=True) if stride != 1 else size
    return conv_norm(pooled, c_in, c_out, 1)


def basic_block(size: Size, c_in: int, width: int, stride: int) -> Cost:
    """mmdet BasicBlock: 3x3 (stride) + BN, 3x3 + BN, plus the shortcut."""
    f1, p1, mid = conv_norm(size, c_in, width, 3, stride)
    f2, p2, out = conv_norm(mid, width, width, 3)
    f3, p3, _ = shortcut(size, c_in, width, stride)
    return f1 + f2 + f3, p1 + p2 + p3, out


def bottleneck_block(size: Size, c_in: int, width: int, stride: int) -> Cost:
    """mmdet Bottleneck ('pytorch' style): 1x1 + BN, 3x3 (stride) + BN, 1x1 (x4) + BN, plus shortcut."""
    c_out = width * BOTTLENECK_EXPANSION
    f1, p1, mid = conv_norm(size, c_in, width, 1)
    f2, p2, mid = conv_norm(mid, width, width, 3, stride)
    f3, p3, out = conv_norm(mid, width, c_out, 1)
    f4, p4, _ = shortcut(size, c_in, c_out, stride)
    return f1 + f2 + f3 + f4, p1 + p2 + p3 + p4, out


def depthwise_block(size: Size, c_in: int, width: int, stride: int) -> Cost:
    """MobileNetV1 conv_dw unit (no shortcut)."""
    return separable(size, c_in, width, stride)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block, "depthwise": depthwise_block}


def resnet_stem(size: Size, width: int) -> Cost:
    """Deep stem: 3x3/2 (3 -> w/2), 3x3 (w/2 -> w/2), 3x3 (w/2 -> w), each + BN, then 2x2/2 max-pool."""
    half = width // 2
    f1, p1, out = conv_norm(size, 3, half, 3, 2)
    f2, p2, out = conv_norm(out, half, half, 3)
    f3, p3, out = conv_norm(out, half, width, 3)
    return f1 + f2 + f3, p1 + p2 + p3, pool_out(out, 2, 2, ceil_mode=False)


def mobilenet_stem(size: Size, width: int) -> Cost:
    """conv_bn(3, w, 2) then conv_dw(w, w, 1)."""
    f1, p1, out = conv_norm(size, 3, width, 3, 2)
    f2, p2, out = separable(out, width, width)
    return f1 + f2, p1 + p2, out


def stem_cost(block: str, size: Size, width: int) -> Cost:
    """The stem of a backbone built from `block` blocks (MobileNet stem for depthwise, ResNet deep stem else)."""
    return mobilenet_stem(size, width) if block == "depthwise" else resnet_stem(size, width)


def stage_stride(block: str, index: int) -> int:
    """Stride of stage `index` (0 = C2): C2 keeps the ResNet stem's pooled size; MobileNet's stem does not pool."""
    return 1 if index == 0 and block != "depthwise" else 2


def stage(block: str, size: Size, c_in: int, width: int, depth: int, stride: int) -> Cost:
    """One backbone layer: the first block strides and projects, the rest keep the size."""
    block_cost = BLOCKS[block]
    flops, params, size = block_cost(size, c_in, width, stride)
    c_out = width * BOTTLENECK_EXPANSION if block == "bottleneck" else width
    for _ in range(depth - 1):
        f, p, size = block_cost(size, c_out, width, 1)
        flops, params = flops + f, params + p
    return flops, params, size


def pafpn(sizes: list[Size], in_channels: list[int], channels: int) -> tuple[int, int]:
    """mmdet PAFPN over three levels (no norm, convs with bias, no extra levels): (flops, params)."""
    flops = params = 0
    for size, c_in in zip(sizes, in_channels, strict=True):
        f1, p1, _ = conv(size, c_in, channels, 1, bias=True)  # lateral
        f2, p2, _ = conv(size, channels, channels, 3, bias=True)  # fpn conv
        flops, params = flops + f1 + f2, params + p1 + p2
    for finer in sizes[:-1]:
        flops += upsample_nearest(finer, channels)  # top-down path
    for finer in sizes[:-1]:
        f1, p1, coarser = conv(finer, channels, channels, 3, 2, bias=True)  # bottom-up downsample
        f2, p2, _ = conv(coarser, channels, channels, 3, bias=True)  # pafpn conv
        flops, params = flops + f1 + f2, params + p1 + p2
    return flops, params


def head_unit(size: Size, c_in: int, head: HeadSpec) -> Cost:
    """One tower unit: 3x3 conv + norm, or depthwise-separable (dw 3x3 + norm, pw 1x1 + norm)."""
    if head.depthwise:
        return separable(size, c_in, head.width, kind=head.norm)
    return conv_norm(size, c_in, head.width, 3, kind=head.norm)


def head_level(size: Size, c_in: int, head: HeadSpec) -> tuple[int, int]:
    """The tower and the class/box(/keypoint) 3x3 predictors on one level: (flops, params)."""
    flops = params = 0
    for i in range(head.num_convs):
        f, p, _ = head_unit(size, c_in if i == 0 else head.width, head)
        flops, params = flops + f, params + p
    feat = head.width if head.num_convs else c_in
    outputs = [CLASS_OUTPUTS, BOX_OUTPUTS] + ([KEYPOINT_OUTPUTS] if head.keypoints else [])
    for per_anchor in outputs:
        f, p, _ = conv(size, feat, NUM_ANCHORS * per_anchor, 3, bias=True)
        flops, params = flops + f, params + p
    return flops, params


def head_cost(sizes: list[Size], c_in: int, head: HeadSpec) -> tuple[int, int]:
    """The head on all three levels; shared weights are counted once, plus one Scale per stride."""
    flops = params = 0
    for i, size in enumerate(sizes):
        f, p = head_level(size, c_in, head)
        flops += f
        if i == 0 or not head.shared:
            params += p
    return flops, params + HEAD_STRIDES


def count_flops(arch: ArchSpec, input_shape: tuple[int, int] = DEFAULT_INPUT_SHAPE) -> FlopsReport:
    """FLOPs and parameters per component of the detector built from arch, at input (H, W)."""
    size: Size = (int(input_shape[0]), int(input_shape[1]))
    gflops: dict[str, float] = {}
    params: dict[str, int] = {}
    flops, params["stem"], size = stem_cost(arch.block, size, arch.stem_width)
    gflops["stem"] = flops / 1e9
    c_in = arch.stem_width
    sizes: list[Size] = []
    for i, (spec, c_out) in enumerate(zip(arch.stages, arch.stage_out_channels, strict=True)):
        name = f"c{i + 2}"
        stride = stage_stride(arch.block, i)
        flops, params[name], size = stage(arch.block, size, c_in, spec.width, spec.depth, stride)
        gflops[name] = flops / 1e9
        sizes.append(size)
        c_in = c_out
    _count_neck_head(arch, sizes, gflops, params)
    return FlopsReport(gflops=gflops, params=params, input_shape=(int(input_shape[0]), int(input_shape[1])))


def _count_neck_head(arch: ArchSpec, sizes: list[Size], gflops: dict[str, float], params: dict[str, int]) -> None:
    """Fill in the neck's and the head's GFLOPs and parameters, given the C2..C5 output sizes."""
    flops, params["neck"] = pafpn(sizes[1:], list(arch.stage_out_channels[1:]), arch.neck.channels)
    gflops["neck"] = flops / 1e9
    flops, params["head"] = head_cost(sizes[1:], arch.neck.channels, arch.head)
    gflops["head"] = flops / 1e9


@functools.lru_cache(maxsize=64)
def stage_sizes(block: str, input_shape: tuple[int, int]) -> list[Size]:
    """Output sizes of C2..C5 at an input size (they depend on neither widths nor depths)."""
    size = stem_cost(block, input_shape, WIDTH_STEP)[2]
    sizes = []
    for i in range(4):
        size = stage(block, size, WIDTH_STEP, WIDTH_STEP, 1, stage_stride(block, i))[2]
        sizes.append(size)
    return sizes


def recount_neck_head(report: FlopsReport, arch: ArchSpec) -> FlopsReport:
    """count_flops of arch, given the report of an arch with the same backbone: only neck and head recounted."""
    gflops, params = dict(report.gflops), dict(report.params)
    _count_neck_head(arch, stage_sizes(arch.block, tuple(report.input_shape)), gflops, params)
    return FlopsReport(gflops=gflops, params=params, input_shape=report.input_shape)
