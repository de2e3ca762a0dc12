"""
Check a COCO-format instance dataset before training and report every problem in one pass:

  python -m pvt_fpn_d2.check_dataset --json data/train.json --images data/train [--full]

It reads the json as training does (exports of Roboflow, CVAT, Label Studio, labelme: see
docs/CUSTOM_DATASETS.md), checks every image and annotation whatever else is wrong, says once
per kind what it finds and what training does with it (a kind of many: the count and the first
places), and gives the dataset's facts: classes, masks (and what each config family does with
boxes without one), the most objects in one image.

Exits with status 1 if any problem would stop or corrupt training (ERROR lines), else 0.
"""

import argparse
import sys

# python -m pvt_fpn_d2.check_dataset (an entry point) hides the known third-party notices;
# importing this module changes no filter. (pvt_fpn_d2/__init__.py runs first and imports
# detectron2, so its import-time torch.jit.script notice still shows until that import is lazy.)
if __name__ == "__main__":
    from .cli import silence_known_warnings

    silence_known_warnings()

from .data.validation import check_coco_dataset  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--json", required=True, help="COCO annotation file")
    parser.add_argument("--images", required=True, help="folder the file_name entries are in")
    parser.add_argument(
        "--full", action="store_true", help="decode every image (finds truncated files; slower)"
    )
    parser.add_argument(
        "--drop-empty-categories",
        action="store_true",
        help="drop categories without annotations (config: dataset.drop_empty_categories=True)",
    )
    parser.add_argument(
        "--crowd-masks",
        default="auto",
        choices=("auto", "objects", "crowd"),
        help="what iscrowd=1 masks are (config: dataset.crowd_masks); auto: objects in CVAT "
        "exports, crowd regions elsewhere",
    )
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    report = check_coco_dataset(
        args.json,
        args.images,
        images="full" if args.full else "header",
        drop_empty_categories=args.drop_empty_categories,
        crowd_masks=args.crowd_masks,
    )
    print(report.summary())
    print("FAILED: fix the ERROR lines before training." if report.fatal else "OK for training.")
    return 1 if report.fatal else 0


if __name__ == "__main__":
    sys.exit(main())
