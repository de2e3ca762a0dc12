#!/usr/bin/env python
"""
COCO AP of exported models (tools/export_model.py) on the config's test set, with the test
loader and evaluator train_net.py --eval-only uses, side by side with the eager checkpoint:

  python tools/evaluate_exported.py --model output/demo/onnx/model.onnx \
      output/demo/onnx/model_int8.onnx --checkpoint output/demo/model_final.pth

The config is the one saved beside the first file (config.yaml), or --config-file; trailing
key=value pairs override it (e.g. dataset.val_json=... dataset.val_images=... to evaluate on
other images). Writes --output/eval_exported.json (default: the first file's folder).
"""

import argparse
import json
import logging
import os

# known third-party notices are hidden by exact message before anything emits them
from pvt_fpn_d2.cli import parse_args, silence_known_warnings  # isort: skip

silence_known_warnings()

from detectron2.config import LazyConfig  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from pvt_fpn_d2.config import apply_overrides  # noqa: E402
from pvt_fpn_d2.deploy.evaluate import (  # noqa: E402
    evaluate_checkpoint,
    evaluate_exported,
    headline,
)
from pvt_fpn_d2.model_zoo import resolve_config_file  # noqa: E402

logger = logging.getLogger("pvt_fpn_d2")


def get_parser() -> argparse.ArgumentParser:
    """The command line (options, then trailing ``key=value`` config overrides in ``opts``)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", nargs="+", required=True, help="exported files (model.onnx, model_int8.onnx)"
    )
    parser.add_argument("--checkpoint", default="", help="also evaluate these eager weights")
    parser.add_argument(
        "--config-file", default="", help="default: config.yaml beside the first --model"
    )
    parser.add_argument(
        "--output", default="", help="folder for eval_exported.json (default: the first model's)"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    return parser


def _folder(path: str) -> str:
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def main(argv=None) -> dict:
    args = parse_args(get_parser(), argv)
    setup_logger(name="pvt_fpn_d2")
    setup_logger(name="detectron2", abbrev_name="d2").setLevel(logging.WARNING)
    folder = _folder(args.model[0])
    config_file = (
        resolve_config_file(args.config_file)
        if args.config_file
        else os.path.join(folder, "config.yaml")
    )
    if not os.path.isfile(config_file):
        raise FileNotFoundError(
            f"{config_file} not found: give --config-file, the config the model was exported from."
        )
    cfg = apply_overrides(LazyConfig.load(config_file), args.opts)
    output = args.output or folder
    os.makedirs(output, exist_ok=True)
    cfg.dataloader.evaluator.output_dir = output

    results = {}
    if args.checkpoint:
        logger.info(f"Evaluating the eager model with {args.checkpoint} ...")
        results[f"eager {args.checkpoint}"] = evaluate_checkpoint(cfg, args.checkpoint)
    for model in args.model:
        logger.info(f"Evaluating {model} with ONNX Runtime ...")
        results[model] = evaluate_exported(cfg, model)
    tasks = sorted({t for r in results.values() for t in r})
    width = max(len(n) for n in results)
    print(f"{'model':<{width}}" + "".join(f"{t:>10}" for t in tasks))  # AP, or mIoU
    for name, ret in results.items():
        aps = [headline(ret[t]) if t in ret else float("nan") for t in tasks]
        print(f"{name:<{width}}" + "".join(f"{ap:>10.2f}" for ap in aps))
    with open(os.path.join(output, "eval_exported.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
