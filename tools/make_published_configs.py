"""Write configs/_base_/ and, for each released SCRFD model, configs/scrfd/<name>.py + <name>.json.

The same writer as `scrfd-search export` (scrfd_search/config_writer.py), for the architectures in
scrfd_search/space/published.py (the four of the paper and the three keypoint variants), with the
reference's full schedule and the per-model settings its configs use.

Usage: .venv/bin/python tools/make_published_configs.py [--out-dir CONFIGS_DIR] [--check]
With --check nothing is written; the exit status is 1 when a file is missing or out of date.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from scrfd_search.config_builder import build_config, retinaface_data, widerface_data
from scrfd_search.config_writer import full_schedule, write_bases, write_child
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.published import KEYPOINT_VARIANTS, RELEASED

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "configs"
HEADER = (
    "{name}: the released SCRFD architecture, trained with the reference's full 640-epoch schedule.\n"
    "Written by tools/make_published_configs.py (from scrfd_search/space/published.py); do not edit.\n"
    "Its ArchSpec is {name}.json beside this file. Train with: python tools/train.py configs/scrfd/{name}.py"
)
# Per-model settings read from the reference's configs/scrfd/*.py:
# boxes stay unclipped in crop and resize in its 2.5GF and 10GF configs (GN and *_bnkps); the others clip.
UNCLIPPED_BOXES = {"scrfd_2.5g", "scrfd_10g", "scrfd_2.5g_bnkps", "scrfd_10g_bnkps"}
# The keypoint variants train on the RetinaFace labels (labelv2.txt, with landmarks); the 0.5GF one
# with 16 images per GPU. All train on 4 GPUs, and the lr is for that whole batch.
BATCH_PER_GPU = {"scrfd_500m_bnkps": 16}
REFERENCE_GPUS = 4


def published_config(name: str, arch: ArchSpec) -> dict:
    """The full training config of one released model, with the reference's per-model settings."""
    data = retinaface_data() if name in KEYPOINT_VARIANTS else widerface_data("data/widerface/")
    batch = BATCH_PER_GPU.get(name, data.batch_size)
    data = replace(data, bbox_clip_border=name not in UNCLIPPED_BOXES, batch_size=batch)
    schedule = replace(full_schedule(arch), base_batch_size=batch * REFERENCE_GPUS)
    return build_config(arch, data=data, schedule=schedule, work_dir=f"work_dirs/{name}")


def write_published(out_dir: Path) -> None:
    """Write _base_/ and every published child config (+ ArchSpec JSON) under out_dir."""
    write_bases(out_dir)
    for name, arch in RELEASED.items():
        cfg = published_config(name, arch)
        layout = "retinaface" if name in KEYPOINT_VARIANTS else "wider"
        write_child(out_dir / "scrfd" / f"{name}.py", arch, cfg, HEADER.format(name=name), "../_base_", layout)


def stale_files(out_dir: Path) -> list[Path]:
    """Files under out_dir that differ from (or are missing against) a fresh write."""
    with tempfile.TemporaryDirectory(prefix="scrfd-configs-") as tmp:
        fresh = Path(tmp)
        write_published(fresh)
        wanted = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
        return [
            out_dir / rel
            for rel in wanted
            if not (out_dir / rel).is_file() or (out_dir / rel).read_text() != (fresh / rel).read_text()
        ]


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the published configs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="the configs folder (default: configs/)")
    parser.add_argument("--check", action="store_true", help="only report files that are missing or stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out_dir)
        for path in stale:
            print(f"out of date: {path}")
        return 1 if stale else 0
    write_published(args.out_dir)
    print(f"wrote {args.out_dir / '_base_'} and {len(RELEASED)} configs in {args.out_dir / 'scrfd'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
