"""Write a small synthetic face data set in the WIDER FACE layout, for demos and tests.

DIR gets WIDER_{train,val}/images/<event>/<image>.jpg, wider_face_split/ with
wider_face_{train,val}_bbx_gt.txt and the four evaluation files (wider_face_val.mat,
wider_{easy,medium,hard}_val.mat), the RetinaFace layout {train,val}/labelv2.txt (with landmarks;
{train,val}/images link to the WIDER_* images) and demo_data.json. Faces are drawn shapes whose
sizes follow the real WIDER FACE val distribution (crowds of small faces included) scaled by
--size-scale, down to --min-face pixels, blurred and occluded as often as WIDER's faces of their size
are; the easy/medium/hard keep lists go by face height as WIDER's do (docs/demo.md). The same seed
gives byte-identical files. The set is written into a temporary folder beside DIR and renamed into
place.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scrfd_search.errors import UserError, check_seed
from scrfd_search.io_utils import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare --out, --train, --val, --seed, the image and face sizes, and --force."""
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    parser.add_argument("--train", type=int, default=200, metavar="N", help="training images (default 200)")
    parser.add_argument("--val", type=int, default=50, metavar="M", help="validation images (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--min-width", type=int, default=320, metavar="PX", help="narrowest image (default 320)")
    parser.add_argument("--max-width", type=int, default=480, metavar="PX", help="widest image (default 480)")
    parser.add_argument(
        "--min-face",
        type=float,
        default=3.0,
        metavar="PX",
        help="smallest face size, sqrt(w*h) in pixels (default 3)",
    )
    parser.add_argument(
        "--size-scale",
        type=float,
        metavar="X",
        help="faces and subset heights are WIDER's, relative to image width, times X (default 640/192: as "
        "large in a 192 px network input as WIDER's are in a 640 px one)",
    )
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")


def run(args: argparse.Namespace) -> int:
    """Generate the data set and print what was written."""
    from scrfd_search.data.demo import DemoConfig, write_demo_dataset  # cv2/scipy: keeps --help fast

    if not 32 <= args.min_width <= args.max_width:
        raise UserError(f"--min-width/--max-width: {args.min_width}..{args.max_width} is not a range of at least 32 px")
    if not 1 <= args.min_face < args.min_width / 2:
        raise UserError(f"--min-face: {args.min_face} must be at least 1 and under half of --min-width")

    check_seed(args.seed)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file, expected a folder")
    check_writable(out, "--out")
    start = time.perf_counter()
    scale = {} if args.size_scale is None else {"size_scale": args.size_scale}
    config = DemoConfig(
        num_train=args.train,
        num_val=args.val,
        seed=args.seed,
        min_width=args.min_width,
        max_width=args.max_width,
        min_face_px=args.min_face,
        **scale,
    )
    info = write_demo_dataset(args.out, config, force=args.force)
    elapsed = time.perf_counter() - start
    for split, entry in info["splits"].items():
        kept = entry.get("kept")
        kept_text = f"; kept easy/medium/hard {kept['easy']}/{kept['medium']}/{kept['hard']}" if kept else ""
        print(
            f"{split}: {entry['images']} images, {entry['faces']} faces ({entry['invalid_faces']} invalid){kept_text}"
        )
    print(f"wrote {args.out} in {elapsed:.1f} s")
    return 0
