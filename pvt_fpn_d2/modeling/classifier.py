"""
Image classification on the PVT-v2 pyramid: the seed design's "global average pooling on the
coarsest level, then a linear classifier", as a detectron2 meta-architecture.
"""

from typing import Dict, List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList

__all__ = ["ImageClassifier"]


@META_ARCH_REGISTRY.register()
class ImageClassifier(nn.Module):
    """
    ``backbone`` -> one level (``in_feature``: the FPN's coarsest, or ``res5`` of the bottom-up
    network as timm's own head does) -> global average pooling over the image's own area (the
    padding of a batch is left out) -> dropout -> linear. Trained with cross-entropy
    (``label_smoothing`` optional) on the inputs' ``"label"``.

    Inference returns, per image, ``{"scores": (num_classes,) softmax probabilities,
    "pred_class": int}``.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        in_feature: str,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
    ):
        """
        Args:
            backbone: a detectron2 backbone (detectron2's FPN on PVT-v2, or PVT-v2 alone).
            num_classes: number of classes.
            in_feature: the backbone output to pool, e.g. "p5" (FPN) or "res5".
            pixel_mean, pixel_std: input normalisation (RGB/BGR as the input format).
            dropout: before the linear layer.
            label_smoothing: of the cross-entropy, in [0, 1).
        """
        super().__init__()
        shapes = backbone.output_shape()
        if in_feature not in shapes:
            raise ValueError(
                f"in_feature={in_feature!r} is not an output of the backbone: {list(shapes)}."
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.backbone = backbone
        self.in_feature = in_feature
        self.stride = shapes[in_feature].stride
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(shapes[in_feature].channels, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        return {
            "backbone": build_backbone(cfg),
            "num_classes": cfg.MODEL.CLASSIFIER.NUM_CLASSES,
            "in_feature": cfg.MODEL.CLASSIFIER.IN_FEATURE,
            "dropout": cfg.MODEL.CLASSIFIER.DROPOUT,
            "label_smoothing": cfg.MODEL.CLASSIFIER.LABEL_SMOOTHING,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def pooled(self, images: ImageList) -> torch.Tensor:
        """(N, C) average of ``in_feature`` over each image's own area."""
        x = self.backbone(images.tensor)[self.in_feature]
        rows = torch.arange(x.shape[-2], device=x.device)
        cols = torch.arange(x.shape[-1], device=x.device)
        s = self.stride
        # the cells each image covers (ceil of its size / stride), without in-place writes or
        # floor divisions of negative numbers, which ONNX's integer Div rounds the other way
        mask = torch.stack(
            [
                (rows < (h + s - 1) // s)[:, None] & (cols < (w + s - 1) // s)[None]
                for h, w in images.image_sizes
            ]
        )[:, None].to(x.dtype)
        return (x * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3))

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        """
        Args:
            batched_inputs: dicts with "image" (C, H, W) and, in training, "label" (int).

        Returns:
            training: {"loss_cls": ...}; inference: a list of {"scores", "pred_class"}.
        """
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        images = ImageList.from_tensors(images, self.backbone.size_divisibility)
        logits = self.classifier(self.dropout(self.pooled(images)))
        if self.training:
            labels = torch.as_tensor([int(x["label"]) for x in batched_inputs], device=self.device)
            bad = [int(v) for v in labels if not 0 <= v < self.num_classes]
            if bad:
                raise ValueError(
                    f"labels {bad} are outside the {self.num_classes} classes of the model "
                    "(model.num_classes); set it to the dataset's number of classes."
                )
            return {
                "loss_cls": F.cross_entropy(
                    logits.float(), labels, label_smoothing=self.label_smoothing
                )
            }
        probs = logits.float().softmax(dim=1)
        return [{"scores": p, "pred_class": int(p.argmax())} for p in probs]
