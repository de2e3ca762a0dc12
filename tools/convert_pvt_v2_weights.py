#!/usr/bin/env python
"""
Convert PVT-v2 ImageNet weights (official release .pth, timm .pth/.safetensors, or Hugging Face
PvtV2) into a detectron2 checkpoint that ``train.init_checkpoint`` (LazyConfig) or
``MODEL.WEIGHTS`` (yacs) loads directly, also with detectron2's plain DetectionCheckpointer.

  python tools/convert_pvt_v2_weights.py pvt_v2_b2.pth pvt_v2_b2_d2.pth

(train_net.py also accepts the original files directly; converting once suits tools that use
detectron2's own checkpointer.)
"""

import argparse
import logging

# known third-party notices are hidden by exact message before anything emits them
from pvt_fpn_d2.cli import silence_known_warnings  # isort: skip

silence_known_warnings()

from pvt_fpn_d2.engine.checkpoint import convert_to_detectron2_checkpoint  # noqa: E402
from pvt_fpn_d2.modeling.weights import (  # noqa: E402
    D2_BACKBONE_PREFIX,
    detect_format,
    extract_state_dict,
    guess_variant,
    read_checkpoint,
    to_timm_state_dict,
)


def get_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("input", help="PVT-v2 ImageNet checkpoint (.pth / .safetensors / .bin)")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth)")
    parser.add_argument(
        "--prefix",
        default=D2_BACKBONE_PREFIX,
        help=f"key prefix of the timm model inside the detector (default {D2_BACKBONE_PREFIX})",
    )
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    sd = extract_state_dict(read_checkpoint(args.input))
    fmt = detect_format(sd)
    variant = guess_variant(to_timm_state_dict(sd)[0])
    if variant is None:
        raise SystemExit(
            f"error: {args.input} ({fmt} format) does not match any PVT-v2 variant's parameters "
            "exactly; it may be truncated or from another model."
        )
    n = convert_to_detectron2_checkpoint(args.input, args.output, prefix=args.prefix)
    print(f"{args.input}: {variant}, {fmt} format -> {args.output}: {n} tensors")


if __name__ == "__main__":
    main()
