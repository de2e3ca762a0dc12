"""Evaluation in detectron2's model-zoo style: COCO AP with faster-coco-eval, classification
accuracy, depth metrics."""

from .coco import COCOEvaluator, FasterCOCOeval, segm_ground_truth
from .classification import ClassificationEvaluator, classification_metrics
from .depth import DEPTH_METRICS, DepthEvaluator, depth_metrics

__all__ = [
    "DEPTH_METRICS",
    "DepthEvaluator",
    "depth_metrics",
    "ClassificationEvaluator",
    "classification_metrics",
    "COCOEvaluator",
    "FasterCOCOeval",
    "segm_ground_truth",
]
