"""Make the synthetic shapes dataset used by the CPU demo and the tests.

Writes a COCO-format instance-segmentation dataset of filled circles, triangles and squares with
random colours, sizes, rotations and occlusion on textured backgrounds (see
``pvt_fpn_d2.data.synthetic``)::

    OUT/train/images/*.jpg  OUT/train/annotations.json  OUT/train/sem_seg/*.png
    OUT/val/images/*.jpg    OUT/val/annotations.json    OUT/val/sem_seg/*.png

The semantic PNGs (skipped with ``--no-semantic``) hold 0 for background and the category id
(1 circle, 2 triangle, 3 square) of the visible object elsewhere. With ``--classification`` it
also writes a classification set in the ImageNet folder layout, each image labelled with the
shape that covers the most pixels (96 px, 300 / 50 images)::

    OUT/classification/{train,val}/{circle,triangle,square}/*.png

and with ``--depth`` a monocular depth set (RGB + 16-bit PNG depth in millimetres, 96 px)::

    OUT/depth/{train,val}/images/*.jpg   OUT/depth/{train,val}/depth/*.png

The same arguments always give the same files.

Usage::

    python datasets/prepare_synthetic.py --out datasets/synthetic [--num-train 300] [--num-val 50] \
        [--size 160] [--seed 0] [--no-semantic] [--classification] [--depth]
"""

import argparse
import json
import logging
import time

# known third-party notices are hidden by exact message before anything emits them
from pvt_fpn_d2.cli import silence_known_warnings  # isort: skip

silence_known_warnings()

from pvt_fpn_d2.data.synthetic import (  # noqa: E402
    generate_synthetic_classification,
    generate_synthetic_coco,
    generate_synthetic_depth,
)


def get_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="datasets/synthetic", help="output folder")
    parser.add_argument("--num-train", type=int, default=300, help="training images")
    parser.add_argument("--num-val", type=int, default=50, help="validation images")
    parser.add_argument(
        "--size", type=int, nargs="+", default=[160], help="image size: SIZE or HEIGHT WIDTH"
    )
    parser.add_argument("--seed", type=int, default=0, help="base random seed (>= 0)")
    parser.add_argument(
        "--no-semantic", action="store_true", help="do not write the semantic label PNGs"
    )
    parser.add_argument(
        "--classification",
        action="store_true",
        help="also write the classification set (OUT/classification)",
    )
    parser.add_argument("--depth", action="store_true", help="also write the depth set (OUT/depth)")
    return parser


def main(argv=None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if len(args.size) > 2:
        parser.error("--size takes one value (square) or two (height width)")
    logging.basicConfig(level=logging.WARNING)

    start = time.perf_counter()
    splits = generate_synthetic_coco(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.size[0] if len(args.size) == 1 else tuple(args.size),
        seed=args.seed,
        semantic=not args.no_semantic,
    )
    for split, paths in splits.items():
        with open(paths["json_file"]) as f:
            coco = json.load(f)
        print(
            f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} instances "
            f"-> {paths['json_file']}"
        )
    if args.classification:
        folders = generate_synthetic_classification(
            f"{args.out}/classification",
            num_train=args.num_train,
            num_val=args.num_val,
            seed=args.seed,
        )
        for split, folder in folders.items():
            print(f"classification {split}: -> {folder}/<class>/")
    if args.depth:
        depth = generate_synthetic_depth(
            f"{args.out}/depth", num_train=args.num_train, num_val=args.num_val, seed=args.seed
        )
        for split, paths in depth.items():
            print(f"depth {split}: -> {paths['image_root']}, {paths['depth_root']}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
