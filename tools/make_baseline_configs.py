"""Write configs/baselines/: SCRFD's neck and head on mmdet's own ResNet-50 and Res2Net-101 backbones.

The reference points for a search at the 34 GF scale: the same PAFPN neck and SCRFD head as the released
SCRFD-34GF (neck 128 channels, two shared GN head convs of width 256), the same data, recipe and full
640-epoch schedule, with a hand-designed ImageNet backbone instead of a searched one. ImageNet weights
go in through mmdet's `init_cfg` when they are at hand (--pretrained, or a local file); without them the
backbone trains from scratch, and the config says which.

Usage: .venv/bin/python tools/make_baseline_configs.py [--out-dir DIR] [--pretrained] [--check]
With --check nothing is written; the exit status is 1 when a file is missing or out of date.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from scrfd_search.config_writer import full_config, write_config
from scrfd_search.space.published import PUBLISHED

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "configs"
NECK_HEAD_FROM = "scrfd_34g"
NORM = dict(type="BN", requires_grad=True)
# name -> (mmdet backbone, its C2..C5 output channels, ImageNet weights as mmdet names them)
BACKBONES: dict[str, tuple[dict[str, Any], list[int], str]] = {
    "scrfd_resnet50": (
        dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), style="pytorch"),
        [256, 512, 1024, 2048],
        "torchvision://resnet50",
    ),
    "scrfd_res2net101": (
        dict(
            type="Res2Net", depth=101, scales=4, base_width=26, num_stages=4, out_indices=(0, 1, 2, 3), style="pytorch"
        ),
        [256, 512, 1024, 2048],
        "open-mmlab://res2net101_v1d_26w_4s",
    ),
}
HEADER = (
    "{name}: written by tools/make_baseline_configs.py; do not edit.\n"
    "SCRFD-34GF's PAFPN neck and SCRFD head on mmdet's {backbone} backbone, SCRFD's data and 640-epoch\n"
    "recipe. Backbone weights: {weights}\n"
    "FLOPs by component: scrfd-search flops configs/baselines/{name}.py"
)
FROM_SCRATCH = (
    "from scratch (no ImageNet weights were at hand when this was written; add\n"
    "  init_cfg=dict(type='Pretrained', checkpoint='{checkpoint}')\n"
    "to model.backbone, or rerun the tool with --pretrained, to start from ImageNet)."
)


def baseline_config(name: str, pretrained: bool) -> dict[str, Any]:
    """The full config dict of one baseline: the published neck/head config with the backbone swapped."""
    backbone, channels, checkpoint = BACKBONES[name]
    cfg = full_config(PUBLISHED[NECK_HEAD_FROM], work_dir=f"work_dirs/{name}")
    model = cfg["model"]
    model["backbone"] = dict(
        backbone,
        norm_cfg=NORM,
        norm_eval=False,
        init_cfg=dict(type="Pretrained", checkpoint=checkpoint) if pretrained else None,
    )
    model["neck"]["in_channels"] = channels
    return cfg


def header_text(name: str, pretrained: bool) -> str:
    """The comment at the top of one baseline's config."""
    checkpoint = BACKBONES[name][2]
    weights = f"ImageNet ({checkpoint}) via init_cfg." if pretrained else FROM_SCRATCH.format(checkpoint=checkpoint)
    backbone = BACKBONES[name][0]["type"] + f"-{BACKBONES[name][0]['depth']}"
    return HEADER.format(name=name, backbone=backbone, weights=weights)


def write_baselines(out_dir: Path, pretrained: bool) -> None:
    """Write configs/baselines/<name>.py (children of out_dir/_base_/, which make_published_configs writes)."""
    for name in BACKBONES:
        path = out_dir / "baselines" / f"{name}.py"
        write_config(path, baseline_config(name, pretrained), header_text(name, pretrained), "../_base_")


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the baseline configs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="the configs folder (default: configs/)")
    parser.add_argument(
        "--pretrained", action="store_true", help="ImageNet weights via init_cfg (downloaded by mmengine)"
    )
    parser.add_argument("--check", action="store_true", help="only report files that are missing or stale")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory(prefix="scrfd-baselines-") as tmp:
            write_baselines(Path(tmp), args.pretrained)
            stale = [
                args.out_dir / "baselines" / p.name
                for p in sorted((Path(tmp) / "baselines").iterdir())
                if not (args.out_dir / "baselines" / p.name).is_file()
                or (args.out_dir / "baselines" / p.name).read_text() != p.read_text()
            ]
        for path in stale:
            print(f"{path}: missing or out of date", file=sys.stderr)
        return 1 if stale else 0
    write_baselines(args.out_dir, args.pretrained)
    print(f"wrote {len(BACKBONES)} configs in {args.out_dir / 'baselines'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
