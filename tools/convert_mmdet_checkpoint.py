#!/usr/bin/env python
"""
Convert an mmdetection checkpoint (Mask R-CNN, Faster R-CNN, RetinaNet or Cascade Mask R-CNN
with a PVT-v2 backbone, mmdetection 2.x or 3.x: the official PVT-v2 COCO models, mmdetection's
model zoo) into a checkpoint of this project's detectron2 model:

  python tools/convert_mmdet_checkpoint.py mask_rcnn_pvt_v2_b0.pth mask_rcnn_pvt_v2_b0_d2.pth \\
      --config-file COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py

Without --config-file the COCO config of the checkpoint's detector and PVT-v2 variant is used.
Trailing key=value pairs override the config (e.g. model.roi_heads.num_classes=20 for a
checkpoint trained on 20 classes). Every tensor must find its place in the model and every
parameter must be filled, otherwise nothing is written and the keys are named. The checkpoint
is read with torch.load(weights_only=True). The framework differences that the conversion
handles are listed in pvt_fpn_d2/modeling/mmdet_weights.py.
"""

import argparse
import logging
import shlex

# known third-party notices are hidden by exact message before anything emits them
from pvt_fpn_d2.cli import silence_known_warnings  # isort: skip

silence_known_warnings()

from detectron2.config import LazyConfig  # noqa: E402

from pvt_fpn_d2.config import apply_overrides  # noqa: E402
from pvt_fpn_d2.engine.checkpoint import convert_mmdet_checkpoint  # noqa: E402
from pvt_fpn_d2.model_zoo import resolve_config_file  # noqa: E402
from pvt_fpn_d2.modeling.mmdet_weights import MMDetCheckpointError  # noqa: E402
from pvt_fpn_d2.modeling.weights import UnsafeCheckpointError  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    """The command line: input, output, options and ``key=value`` overrides in any order."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="mmdetection checkpoint (.pth)")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth)")
    parser.add_argument(
        "--config-file",
        default=None,
        help="LazyConfig (file or model-zoo name) of the model; default: the COCO config of the "
        "checkpoint's detector and variant",
    )
    parser.add_argument("opts", nargs="*", help="config overrides key=value")
    return parser


def main(argv=None) -> None:
    parser = get_parser()
    args = parser.parse_intermixed_args(argv)  # options before, between or after the others
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg, config_file = None, args.config_file  # as given: a file or a model-zoo name
    if args.config_file:
        cfg = apply_overrides(LazyConfig.load(resolve_config_file(config_file)), args.opts)
    elif args.opts:
        parser.error("config overrides need --config-file")
    try:
        conversion, cfg = convert_mmdet_checkpoint(args.input, args.output, cfg)
    except (MMDetCheckpointError, UnsafeCheckpointError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    if config_file is None:
        config_file = conversion.config
    overrides = " ".join(shlex.quote(o) for o in [*args.opts, *conversion.config_overrides])
    print(f"wrote {args.output}")
    print(
        "Evaluate:  python train_net.py --config-file "
        f"{config_file} --eval-only train.init_checkpoint={args.output} {overrides}".rstrip()
    )
    print(
        f"Predict:   python tools/predict.py --config-file {config_file} --checkpoint "
        f"{args.output} --input IMAGES --output OUT_DIR {overrides}".rstrip()
    )


if __name__ == "__main__":
    main()
