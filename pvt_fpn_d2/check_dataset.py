"""
Check a COCO-format instance dataset before training and report every problem in one pass:

  python -m pvt_fpn_d2.check_dataset --json data/train.json --images data/train [--full]

Exits with status 1 if any problem would stop or corrupt training (ERROR lines), else 0.
"""

import argparse
import sys

from .data.validation import check_coco_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--json", required=True, help="COCO annotation file")
    parser.add_argument("--images", required=True, help="folder the file_name entries are in")
    parser.add_argument(
        "--full", action="store_true", help="decode every image (finds truncated files; slower)"
    )
    args = parser.parse_args(argv)
    report = check_coco_dataset(args.json, args.images, images="full" if args.full else "header")
    print(report.summary())
    print("FAILED: fix the ERROR lines before training." if report.fatal else "OK for training.")
    return 1 if report.fatal else 0


if __name__ == "__main__":
    sys.exit(main())
