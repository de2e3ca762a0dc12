"""
Monocular depth on the PVT-v2 FPN, as a detectron2 meta-architecture (written the way
detectron2's ``SemanticSegmentor`` is): the seed design's "upsample and fuse the P-levels, then
predict a continuous map", ``depth = sigmoid(head(fusion)) * max_depth``.

Losses, on the pixels with a depth (> 0; padding and sensor holes are 0):

* ``"silog"``: the scale-invariant log loss of Eigen et al. (NIPS 2014) in the form of BTS
  (Lee et al. 2019) and AdaBins: ``10 * sqrt(mean(g^2) - 0.85 * mean(g)^2)``, ``g = log(pred) -
  log(gt)``;
* ``"l1"``: mean absolute error in metres.
"""

from typing import Dict, List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList

from .semantic import _as_shape_spec, _select_features

__all__ = ["DepthHead", "DepthEstimator", "silog_loss", "DEPTH_LOSSES"]

DEPTH_LOSSES = ("silog", "l1")


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, variance_focus: float = 0.85) -> torch.Tensor:
    """BTS's scale-invariant log loss over the pixels where ``gt > 0``."""
    valid = gt > 0
    g = torch.log(pred[valid].clamp(min=1e-6)) - torch.log(gt[valid])
    return 10.0 * torch.sqrt((g**2).mean() - variance_focus * g.mean() ** 2 + 1e-12)


class DepthHead(nn.Module):
    """Every level upsampled to the finest, concatenated, two 3x3 convs, one channel: the
    depth logit at the finest stride."""

    def __init__(
        self, input_shape: Dict[str, ShapeSpec], in_features: Sequence[str], conv_dims: int = 128
    ):
        super().__init__()
        shapes = {k: _as_shape_spec(k, v) for k, v in input_shape.items()}
        in_features = _select_features(shapes, in_features)
        self.in_features = in_features
        channels = sum(shapes[f].channels for f in in_features)
        self.fuse = Conv2d(channels, conv_dims, 3, padding=1, activation=F.relu)
        self.predictor = nn.Conv2d(conv_dims, 1, 3, padding=1)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        xs = [features[f] for f in self.in_features]
        size = max((x.shape[-2:] for x in xs), key=lambda s: s[0] * s[1])
        xs = [
            (
                x
                if x.shape[-2:] == size
                else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            )
            for x in xs
        ]
        return self.predictor(self.fuse(torch.cat(xs, dim=1)))


@META_ARCH_REGISTRY.register()
class DepthEstimator(nn.Module):
    """
    backbone (detectron2's FPN on PVT-v2) -> :class:`DepthHead` -> ``sigmoid * max_depth``,
    upsampled (bilinear) to the input. Training inputs carry ``"depth"`` (H, W) in metres, 0
    where unknown; inference returns ``[{"depth": (height, width) metres}]`` at each image's
    original size.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        max_depth: float,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        loss: str = "silog",
        loss_weight: float = 1.0,
    ):
        super().__init__()
        if max_depth <= 0:
            raise ValueError(f"max_depth must be > 0 (metres), got {max_depth}.")
        if loss not in DEPTH_LOSSES:
            raise ValueError(f"loss must be one of {DEPTH_LOSSES}, got {loss!r}.")
        self.backbone = backbone
        self.head = head
        self.max_depth = float(max_depth)
        self.loss = loss
        self.loss_weight = loss_weight
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "head": DepthHead(
                backbone.output_shape(), cfg.MODEL.DEPTH.IN_FEATURES, cfg.MODEL.DEPTH.CONVS_DIM
            ),
            "max_depth": cfg.MODEL.DEPTH.MAX_DEPTH,
            "loss": cfg.MODEL.DEPTH.LOSS,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W) depth in metres for a padded, normalised batch (N, 3, H, W)."""
        logits = self.head(self.backbone(images))
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(logits.float())[:, 0] * self.max_depth

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        images = ImageList.from_tensors(images, self.backbone.size_divisibility)
        depth = self.predict(images.tensor)
        if self.training:
            gt = ImageList.from_tensors(
                [x["depth"].to(self.device) for x in batched_inputs],
                self.backbone.size_divisibility,
                pad_value=0.0,  # padding: no depth
            ).tensor
            valid = gt > 0
            if not valid.any():
                return {"loss_depth": depth.sum() * 0.0}
            if self.loss == "silog":
                loss = silog_loss(depth, gt)
            else:
                loss = (depth[valid] - gt[valid]).abs().mean()
            return {"loss_depth": loss * self.loss_weight}
        results = []
        for d, (h, w), x in zip(depth, images.image_sizes, batched_inputs):
            d = d[:h, :w]
            out_h, out_w = x.get("height", h), x.get("width", w)
            if (out_h, out_w) != (h, w):
                d = F.interpolate(
                    d[None, None], size=(out_h, out_w), mode="bilinear", align_corners=False
                )[0, 0]
            results.append({"depth": d})
        return results
