"""Write configs/_base_/ and, for each released SCRFD architecture, configs/scrfd/<name>.py + <name>.json.

The same writer as `scrfd-search export` (scrfd_search/config_writer.py), for the architectures in
scrfd_search/space/published.py, on WIDER FACE at data/widerface/ with the reference's full schedule.

Usage: .venv/bin/python tools/make_published_configs.py [--out-dir CONFIGS_DIR] [--check]
With --check nothing is written; the exit status is 1 when a file is missing or out of date.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from scrfd_search.config_writer import full_config, merged_bases, write_bases, write_child
from scrfd_search.space.published import PUBLISHED

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "configs"
HEADER = (
    "{name}: the released SCRFD architecture, trained with the reference's full 640-epoch schedule.\n"
    "Written by tools/make_published_configs.py (from scrfd_search/space/published.py); do not edit.\n"
    "Its ArchSpec is {name}.json beside this file. Train with: python tools/train.py configs/scrfd/{name}.py"
)


def write_published(out_dir: Path) -> None:
    """Write _base_/ and every published child config (+ ArchSpec JSON) under out_dir."""
    write_bases(out_dir)
    bases = merged_bases()
    for name, arch in PUBLISHED.items():
        cfg = full_config(arch, work_dir=f"work_dirs/{name}")
        write_child(out_dir / "scrfd" / f"{name}.py", arch, cfg, HEADER.format(name=name), "../_base_", bases)


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
    print(f"wrote {args.out_dir / '_base_'} and {len(PUBLISHED)} configs in {args.out_dir / 'scrfd'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
