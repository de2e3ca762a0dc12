"""
Evaluate an exported file like a checkpoint: detectron2's ``inference_on_dataset`` with the
config's test loader and evaluator, as ``train_net.py --eval-only`` runs them, with the file run
by ONNX Runtime in place of the eager model.
"""

from collections import OrderedDict
from typing import Dict, List

import numpy as np
import torch

from detectron2.config import instantiate
from detectron2.evaluation import inference_on_dataset

from ..engine.checkpoint import PVTCheckpointer
from .onnx_predictor import OnnxPredictor

__all__ = ["ExportedModel", "evaluate_checkpoint", "evaluate_exported", "headline"]


class ExportedModel(torch.nn.Module):
    """An exported file as a detectron2 model in eval mode: it takes the test loader's batches
    (``image``: the resized (3, h, w) tensor, ``height``/``width``: the original size) and
    returns what the eager model returns for them (``instances``, ``sem_seg``, ...)."""

    def __init__(self, predictor: OnnxPredictor, image_format: str):
        super().__init__()
        order = predictor.spec["input"]["channel_order"]
        if image_format != order:
            raise ValueError(
                f"The test loader reads {image_format} images but the exported file takes "
                f"{order}: evaluate with the config the file was exported from."
            )
        self.predictor = predictor

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        outputs = []
        for inputs in batched_inputs:
            x = inputs["image"].numpy().astype(np.float32)
            h, w = x.shape[1:]
            outputs.append(self.predictor.run(x, inputs.get("height", h), inputs.get("width", w)))
        return outputs


def evaluate_exported(cfg, model: str) -> "OrderedDict[str, Dict]":
    """The evaluator's results (``{"bbox": {"AP": ...}, "segm": ...}``) for the exported file
    ``model`` (a ``model.onnx`` / ``model_int8.onnx`` or its folder) on the config's test set."""
    predictor = OnnxPredictor(model, cfg)
    mapper_format = instantiate(cfg.dataloader.test.mapper).image_format
    return inference_on_dataset(
        ExportedModel(predictor, mapper_format),
        instantiate(cfg.dataloader.test),
        instantiate(cfg.dataloader.evaluator),
    )


def evaluate_checkpoint(cfg, checkpoint: str) -> "OrderedDict[str, Dict]":
    """The same for the eager model with ``checkpoint``'s weights, on the CPU (what
    ``train_net.py --eval-only train.init_checkpoint=...`` gives with ``train.device=cpu``)."""
    model = instantiate(cfg.model).eval()
    PVTCheckpointer(model).load(checkpoint)
    with torch.no_grad():
        return inference_on_dataset(
            model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
        )


def headline(metrics: Dict[str, float]) -> float:
    """The one figure of an evaluator's task results: AP (boxes, masks), mIoU (semantic
    segmentation), else the first."""
    for key in ("AP", "mIoU", "top1"):
        if key in metrics:
            return float(metrics[key])
    return float(next(iter(metrics.values()), float("nan")))
