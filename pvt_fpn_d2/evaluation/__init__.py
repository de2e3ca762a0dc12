"""Evaluation in detectron2's model-zoo style: COCO AP with faster-coco-eval."""

from .coco import COCOEvaluator, FasterCOCOeval, segm_ground_truth

__all__ = [
    "COCOEvaluator",
    "FasterCOCOeval",
    "segm_ground_truth",
]
