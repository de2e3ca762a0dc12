#!/usr/bin/env python
"""
Export a model to ONNX with PyTorch's torch.export-based exporter, for ONNX Runtime (or any
ONNX runtime): writes DIR/model.onnx (dynamic height and width), DIR/export.json (inputs,
outputs, classes, and the steps that run outside the graph) and DIR/config.yaml.

  python tools/export_model.py --config-file configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py \
      --checkpoint output/model_final.pth --output exported/
  python tools/predict.py --config-file configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py \
      --model exported/model.onnx --input photo.jpg --output predictions/

Supported: Faster / Mask R-CNN, Cascade (Mask) R-CNN, RetinaNet, the semantic segmentation
models, the classifier and the depth model. --ops standard writes only standard ONNX operators
(for OpenVINO, TensorRT); the default file uses ONNX Runtime's MultiHeadAttention. TorchScript
is not offered: torch 2.14 deprecates torch.jit. Trailing key=value pairs override the config,
as in train_net.py.
"""

import argparse
import logging
import os

# known third-party notices are hidden by exact message before anything emits them
from pvt_fpn_d2.cli import parse_args, silence_known_warnings  # isort: skip

silence_known_warnings()

from detectron2.config import LazyConfig  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from pvt_fpn_d2.config import apply_overrides  # noqa: E402
from pvt_fpn_d2.deploy import export_onnx  # noqa: E402
from pvt_fpn_d2.deploy.pvt_layers import OPS  # noqa: E402
from pvt_fpn_d2.deploy.quantize import (  # noqa: E402
    DEFAULT_CALIBRATION_IMAGES,
    quantize_int8,
    record_ap,
)
from pvt_fpn_d2.model_zoo import resolve_config_file  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    """The command line (options, then trailing ``key=value`` config overrides in ``opts``)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="the model's LazyConfig")
    parser.add_argument("--output", required=True, help="folder for model.onnx and export.json")
    parser.add_argument("--checkpoint", default="", help="trained weights (default: random)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="only onnx")
    parser.add_argument(
        "--sample-image", default=None, help="an example input (default: a noise image)"
    )
    parser.add_argument(
        "--ops",
        default="onnxruntime",
        choices=OPS,
        help="onnxruntime (default): PVT-v2 attention as ONNX Runtime's MultiHeadAttention, "
        "faster there; standard: standard ONNX operators only, for other runtimes (OpenVINO)",
    )
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="also write model_int8.onnx: post-training int8 quantization (ONNX Runtime, QDQ), "
        "calibrated on images of the training dataset",
    )
    parser.add_argument(
        "--calibration-dataset",
        default=None,
        help="registered dataset of the calibration images (default: the config's training set)",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help="how many (default: %(default)s, or all when fewer)",
    )
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="with --quantize: the COCO AP of model.onnx and model_int8.onnx on the config's "
        "test set, printed and recorded in export.json",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    return parser


def main(argv=None) -> None:
    parser = get_parser()
    args = parse_args(parser, argv)
    if args.evaluate and not args.quantize:
        parser.error(
            "--evaluate compares model.onnx with model_int8.onnx: add --quantize int8 (any "
            "exported file: tools/evaluate_exported.py)"
        )
    setup_logger(name="pvt_fpn_d2")
    setup_logger(name="detectron2", abbrev_name="d2").setLevel(logging.WARNING)
    cfg = apply_overrides(LazyConfig.load(resolve_config_file(args.config_file)), args.opts)
    spec = export_onnx(
        cfg,
        args.output,
        checkpoint=args.checkpoint,
        sample_image=args.sample_image,
        config_file=args.config_file,
        ops=args.ops,
    )
    print(f"{spec['meta_architecture']} -> {args.output}/model.onnx, {args.output}/export.json")
    print(f"outside the graph: {'; '.join(spec['outside_the_graph'])}")
    if not args.quantize:
        return
    int8 = quantize_int8(
        args.output, cfg, dataset=args.calibration_dataset, num_images=args.calibration_images
    )
    layers = ", ".join(f"{n} {op}" for op, n in int8["quantized"].items())
    print(
        f"int8 -> {args.output}/{int8['file']} ({layers}; calibrated on "
        f"{int8['calibration']['images']} images of {int8['calibration']['dataset']})"
    )
    if args.evaluate:
        from pvt_fpn_d2.deploy.evaluate import evaluate_exported, headline

        cfg.dataloader.evaluator.output_dir = args.output
        results = {}
        for name in (spec["file"], int8["file"]):
            ret = evaluate_exported(cfg, os.path.join(args.output, name))
            results[name] = {task: headline(ret[task]) for task in ret}  # AP, or mIoU
        test_set = _test_dataset(cfg)
        record_ap(args.output, results, dataset=test_set)
        tasks = list(results[spec["file"]])
        print(f"{'AP on ' + test_set:<24}" + "".join(f"{t:>8}" for t in tasks))
        for name, ap in results.items():
            print(f"{name:<24}" + "".join(f"{ap[t]:>8.2f}" for t in tasks))


def _test_dataset(cfg) -> str:
    from detectron2.config import instantiate

    names = instantiate(cfg.dataloader.test.dataset.names)
    return names if isinstance(names, str) else ", ".join(names)


if __name__ == "__main__":
    main()
