#!/usr/bin/env python
"""
Benchmark PVT-v2 backbones and detectors: latency (median, p90), images/s, peak memory, GFLOPs,
and the fast COCO evaluation. Models get random weights: nothing is downloaded.

  # PVT-v2-b2 bottom-up network against detectron2's ResNet-50, 800x1333, alternated A B B A ...
  python tools/benchmark.py --config-file configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py \\
      --task backbone --compare detectron2:R50-FPN
  # the PVTv2Backbone wrapper against timm's stages called one by one (same weights and input)
  python tools/benchmark.py --config-file configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py \\
      --task backbone --vs-timm
  # whole Mask R-CNN in eval mode, with a per-component breakdown
  python tools/benchmark.py --config-file configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py \\
      --task inference --compare detectron2:R50-FPN
  # one training step; peak memory and losses with and without activation checkpointing
  python tools/benchmark.py --config-file configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py \\
      --task train --batch-size 2 --compare-act-checkpoint
  # pycocotools against faster-coco-eval on 500 synthetic images x 20 objects
  python tools/benchmark.py --task eval
  # a COCO json of 50000 images x 10 objects: registration, first batch, evaluator set-up, memory
  # (--other-checkout DIR: the same with another checkout's pvt_fpn_d2, e.g. an older commit)
  python tools/benchmark.py --task data
  # the ONNX export (tools/export_model.py) run by ONNX Runtime (and OpenVINO where installed)
  # against the eager model, same weights, image and threads; --profile N: ORT's top operators
  python tools/benchmark.py --config-file configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py \\
      --task export --compare configs/COCO/retinanet_pvt_v2_b0_fpn_1x.py
  # a folder of tools/export_model.py (exported with --checkpoint) against its eager model
  python tools/benchmark.py --task export --onnx output/demo/onnx

CFG is a LazyConfig file or detectron2:R50-FPN (detectron2's model-zoo Mask R-CNN R50-FPN,
common/models/mask_rcnn_fpn.py). With --compare, A is --config-file and B is --compare: every ratio
is A/B. Trailing key=value pairs override CFG (A); --compare-opt KEY=VALUE (repeatable) overrides
CFG2 (B). Without --compare, --compare-opt makes B = CFG with A's overrides plus these:

  # channels-last weights (A) against the default layout (B)
  python tools/benchmark.py --config-file configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py \\
      --task backbone model.backbone.bottom_up.channels_last=True \\
      --compare-opt model.backbone.bottom_up.channels_last=False
"""

import argparse
import builtins
import json
import logging
import os
import warnings

# third-party deprecation notices (as in setup.cfg's pytest filters), here and in the children
_QUIET = (
    "ignore:pkg_resources is deprecated:UserWarning",
    "ignore:`torch.jit:FutureWarning",
    "ignore:torch.meshgrid:UserWarning",
    "ignore:`create_unbacked_symint` is deprecated:FutureWarning",  # torchvision's nms, export
)
for _f in _QUIET:
    _action, _message, _category = _f.split(":")
    warnings.filterwarnings(_action, _message, getattr(builtins, _category))

from pvt_fpn_d2.cli import silence_known_warnings  # noqa: E402

silence_known_warnings()  # and the notices third-party code logs (onnxruntime.quantization)

from benchmarks import (  # noqa: E402
    DEFAULT_INSTANCES,
    DEFAULT_ITERS,
    R50_FPN,
    TASKS,
    BenchmarkSettings,
    ModelSpec,
    environment_info,
    format_report,
    run_benchmark,
    run_data_benchmark,
    run_eval_benchmark,
    run_export_benchmark,
)


def get_parser() -> argparse.ArgumentParser:
    """The command line: options and trailing ``key=value`` overrides of CFG, in any order."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", metavar="CFG", help=f"LazyConfig file or {R50_FPN}")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument(
        "--compare", metavar="CFG2", help="a second config (B), run alternately with CFG (A)"
    )
    parser.add_argument(
        "--compare-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for B (repeatable); without --compare, B is CFG with A's overrides + these",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--amp", choices=["fp16", "bf16"], default="", help="autocast dtype")
    parser.add_argument(
        "--image-size",
        nargs=2,
        type=int,
        default=[800, 1333],
        metavar=("H", "W"),
        help="image size (backbone task: the tensor, padded to a multiple of 32)",
    )
    parser.add_argument(
        "--layout",
        choices=["best", "default"],
        default="best",
        help="best (default): every bottom-up network channels-last on the CPU, detectron2's "
        "ResNet included; default: each as its config builds it (PVT-v2 channels_last=False)",
    )
    parser.add_argument(
        "--onnx",
        metavar="DIR",
        default="",
        help="--task export: measure this export folder (tools/export_model.py --checkpoint) "
        "instead of exporting CFG with random weights",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--iters", type=int, default=None, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="write every figure to this json file")
    parser.add_argument(
        "--vs-timm",
        action="store_true",
        help="backbone task: time the PVTv2Backbone wrapper against timm's stages called directly",
    )
    parser.add_argument(
        "--act-checkpoint",
        action="store_true",
        help="activation checkpointing in the PVT-v2 backbone(s) (other backbones: unchanged)",
    )
    parser.add_argument(
        "--compare-act-checkpoint",
        action="store_true",
        help="train task: CFG with activation checkpointing (A) against without (B)",
    )
    parser.add_argument("--no-flops", action="store_true", help="skip the GFLOPs count")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print the N costliest operators"
    )
    parser.add_argument(
        "--memory-iters", type=int, default=2, help="iterations of each peak-memory child"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=None,
        help=f"objects per image (train: {DEFAULT_INSTANCES['train']}, "
        f"eval: {DEFAULT_INSTANCES['eval']})",
    )
    parser.add_argument(
        "--num-images", type=int, default=None, help="eval task: images (500); data: (50000)"
    )
    parser.add_argument(
        "--data-dir",
        default="datasets/large_coco",
        help="data task: where the generated dataset is written (and reused)",
    )
    parser.add_argument(
        "--other-checkout",
        metavar="DIR",
        help="data task: run the same measurement with the pvt_fpn_d2 of DIR too (B), e.g. a "
        "git worktree of an older commit",
    )
    parser.add_argument("opts", nargs="*", default=[], help="overrides of CFG (A): key=value")
    return parser


build_parser = get_parser  # the former name


def main(argv=None) -> dict:
    # key=value overrides may come before or after the options
    args = get_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("PYTHONWARNINGS", ",".join(_QUIET))
    iters, warmup = DEFAULT_ITERS[args.task]
    iters = args.iters if args.iters is not None else iters
    warmup = args.warmup if args.warmup is not None else warmup
    instances = args.instances or DEFAULT_INSTANCES.get(args.task, 5)

    if args.task == "eval":
        result = {
            "task": "eval",
            "settings": {"iters": iters, "warmup": warmup, "seed": args.seed},
            "environment": environment_info("cpu"),
            "eval": run_eval_benchmark(args.num_images or 500, instances, iters, warmup, args.seed),
        }
    elif args.task == "data":
        result = {
            "task": "data",
            "settings": {"iters": iters, "seed": args.seed},
            "environment": environment_info("cpu"),
            "data": run_data_benchmark(
                args.data_dir,
                args.num_images or 50000,
                instances,
                iters,
                args.other_checkout,
                args.seed,
            ),
        }
    elif args.task == "export":
        if not args.config_file and not args.onnx:
            raise SystemExit("--task export needs --config-file or --onnx")
        configs = [ModelSpec(args.config_file or args.onnx, list(args.opts))]
        if args.compare:  # another model measured the same way, after the first
            configs.append(ModelSpec(args.compare, list(args.compare_opt)))
        size = tuple(args.image_size)
        result = {
            "task": "export",
            "settings": {"iters": iters, "warmup": warmup, "image_size": list(size)},
            "export": [
                run_export_benchmark(
                    m, size, iters, warmup, args.threads, args.seed, args.profile, args.onnx
                )
                for m in configs
            ],
        }
        result["environment"] = environment_info("cpu")  # after: torch threads as measured
    else:
        if not args.config_file:
            raise SystemExit(f"--config-file is required for --task {args.task}")
        device = args.device
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        settings = BenchmarkSettings(
            task=args.task,
            device=device,
            amp=args.amp,
            image_size=tuple(args.image_size),
            batch_size=args.batch_size,
            iters=iters,
            warmup=warmup,
            threads=args.threads,
            seed=args.seed,
            instances=instances,
            flops=not args.no_flops,
            profile=args.profile,
            memory_iters=args.memory_iters,
            vs_timm=args.vs_timm,
            layout=args.layout,
        )
        models = [ModelSpec(args.config_file, list(args.opts), args.act_checkpoint)]
        if args.compare:
            b = ModelSpec(args.compare, list(args.compare_opt), args.act_checkpoint)
        elif args.compare_opt:  # CFG against itself with other overrides
            b = ModelSpec(args.config_file, args.opts + args.compare_opt, args.act_checkpoint)
        if args.compare or args.compare_opt:
            if args.compare_opt:
                b.label += " [" + " ".join(args.compare_opt) + "]"
            models.append(b)
        result = run_benchmark(settings, models, args.compare_act_checkpoint)

    print(format_report(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"figures written to {args.json}")
    return result


if __name__ == "__main__":
    main()
