"""Evaluation in detectron2's model-zoo style: COCO AP with faster-coco-eval; classification
accuracy."""

from .coco import COCOEvaluator, FasterCOCOeval, segm_ground_truth
from .classification import ClassificationEvaluator, classification_metrics

__all__ = [
    "ClassificationEvaluator",
    "classification_metrics",
    "COCOEvaluator",
    "FasterCOCOeval",
    "segm_ground_truth",
]
