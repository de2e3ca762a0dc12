#!/usr/bin/env python
"""
Run a trained detector on images or folders: writes each image with masks, boxes, class names
and scores drawn, and predictions.json (COCO format, loadable by pycocotools) with all of them.
Images of the config's test or training dataset keep their json's image ids, so that
pycocotools' COCO(that json).loadRes(predictions["annotations"]) scores them; the log says how
many were found.
With ``--model DIR/model.onnx`` in place of ``--checkpoint`` the exported model runs with ONNX
Runtime (tools/export_model.py). With a semantic segmentation config (configs/SemSeg/) it writes
each image with the classes drawn, a label PNG per image and sem_seg_predictions.json.

  python tools/predict.py --config-file configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py \
      --checkpoint output/model_final.pth --input photo.jpg more_photos/ --output predictions/

Videos and cameras, like detectron2's demo: ``--video-input clip.mp4`` (or ``--webcam``) writes
the annotated video to ``--output`` (a .mp4 / .avi file, or a folder for ``<clip>.mp4``).

The images are preprocessed like the config's test loader. Trailing key=value pairs override
the config (e.g. the dataset paths of a fine-tuning config, which give the class names).
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
from pvt_fpn_d2.engine.predictor import Predictor, run_prediction, run_video  # noqa: E402
from pvt_fpn_d2.model_zoo import resolve_config_file  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    """The command line (options, then trailing ``key=value`` config overrides in ``opts``)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", required=True, help="the LazyConfig the model was trained with"
    )
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="model weights (.pth)")
    weights.add_argument(
        "--model", help="an exported model.onnx (tools/export_model.py), run by ONNX Runtime"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files and/or folders")
    source.add_argument("--video-input", help="a video file: writes the annotated video")
    source.add_argument("--webcam", action="store_true", help="camera 0: writes its video")
    parser.add_argument(
        "--output",
        required=True,
        help="folder for the pictures and predictions.json; for a video, the .mp4/.avi to write "
        "(or a folder: <video name>.mp4)",
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument(
        "--max-images", type=int, default=None, help="only the first N images (or video frames)"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    return parser


def main(argv=None) -> None:
    args = parse_args(get_parser(), argv)  # options after the overrides count too
    setup_logger(name="pvt_fpn_d2")
    setup_logger(name="detectron2", abbrev_name="d2").setLevel(logging.WARNING)

    cfg = apply_overrides(LazyConfig.load(resolve_config_file(args.config_file)), args.opts)
    if args.model:
        from pvt_fpn_d2.deploy import OnnxPredictor

        predictor = OnnxPredictor(args.model, cfg)
    else:
        predictor = Predictor(cfg, args.checkpoint)
    if args.video_input or args.webcam:
        source = args.video_input or "webcam:0"
        output = args.output
        if not output.lower().endswith((".mp4", ".avi")):
            stem = os.path.splitext(os.path.basename(args.video_input or "webcam"))[0]
            output = os.path.join(output, f"{stem}.mp4")
        video = run_video(
            predictor, source, output, args.confidence_threshold, max_frames=args.max_images
        )
        print(f"{video['frames']} frames ({video['fps']:.2f} frames/s) -> {output}")
        return
    result = run_prediction(
        predictor,
        args.input,
        args.output,
        score_threshold=args.confidence_threshold,
        max_images=args.max_images,
    )
    if isinstance(result, list) and result and "depth_file" in result[0]:  # depth
        print(f"{len(result)} images -> {args.output}/*_depth.png, depth_predictions.json")
    elif isinstance(result, list) and result and "top5" in result[0]:  # classification
        print(f"{len(result)} images -> {args.output}/classification_predictions.json")
    elif isinstance(result, list):  # semantic segmentation
        print(f"{len(result)} images -> {args.output}/*.png, sem_seg_predictions.json")
    else:
        print(
            f"{len(result['images'])} images, {len(result['annotations'])} instances -> "
            f"{args.output}/predictions.json"
        )


if __name__ == "__main__":
    main()
