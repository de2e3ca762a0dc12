"""
Training and inference glue around detectron2's engine: the training loop (AMP, non-finite loss
checks, the data/model checks train_net runs first), the moving average of the weights
(``train.ema``), checkpointing (the weight formats,
mmdetection checkpoints, the class-specific layers of fine-tuning) and the predictor behind
``tools/predict.py``.
"""

from .trainer import (
    NonFiniteLossError,
    Trainer,
    amp_dtype,
    check_classes,
    check_data_fits_model,
    detections_per_image,
    resolve_device,
)
from .checkpoint import (
    PVTCheckpointer,
    TimmHubHandler,
    convert_mmdet_checkpoint,
    convert_to_detectron2_checkpoint,
)
from .predictor import Predictor, find_images, predictions_to_coco, run_prediction

__all__ = [
    "NonFiniteLossError",
    "Trainer",
    "amp_dtype",
    "check_classes",
    "check_data_fits_model",
    "detections_per_image",
    "resolve_device",
    "PVTCheckpointer",
    "TimmHubHandler",
    "convert_to_detectron2_checkpoint",
    "convert_mmdet_checkpoint",
    "Predictor",
    "find_images",
    "predictions_to_coco",
    "run_prediction",
]
