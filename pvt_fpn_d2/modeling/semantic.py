"""
Semantic segmentation on the PVT-v2 FPN, with detectron2's own ``SemanticSegmentor``.

* :class:`FPNConcatSemSegHead`: the seed design's head. Every FPN level is upsampled to the
  finest one (P2, stride 4), the levels are concatenated along channels, one 3x3 conv predicts
  per-pixel class logits, and the logits are upsampled bilinearly to the input size. Trained with
  cross-entropy (an ignore label is skipped) or, for one-class masks, with binary cross-entropy
  on a single logit. Registered in detectron2's ``SEM_SEG_HEADS_REGISTRY``.

detectron2's Semantic FPN head (``SemSegFPNHead``, the head of the PVT papers' ADE20K results) is
used as it is; see ``configs/SemSeg/``.
"""

import logging
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

__all__ = ["SEM_SEG_LOSS_TYPES", "FPNConcatSemSegHead"]

logger = logging.getLogger(__name__)

# "binary_cross_entropy": one logit for background (0) vs foreground (1), see FPNConcatSemSegHead
SEM_SEG_LOSS_TYPES = ("cross_entropy", "binary_cross_entropy")


def _as_shape_spec(name: str, shape: Any) -> ShapeSpec:
    """A ShapeSpec from a ShapeSpec or from a mapping with ``channels`` and ``stride``.

    detectron2's ``instantiate`` leaves a plain dict of ``L(ShapeSpec)(...)`` as a dict of configs,
    so a LazyConfig's ``input_shape`` may arrive in either form (as for ``SemSegFPNHead``).
    """
    if isinstance(shape, ShapeSpec):
        channels, stride = shape.channels, shape.stride
    elif isinstance(shape, Mapping):
        channels, stride = shape.get("channels"), shape.get("stride")
    else:
        raise TypeError(f"input_shape[{name!r}] must be a ShapeSpec, got {type(shape).__name__}.")
    if channels is None or stride is None:
        raise ValueError(f"input_shape[{name!r}] needs channels and stride, got {shape}.")
    return ShapeSpec(channels=int(channels), stride=int(stride))


def _select_features(
    shapes: Dict[str, ShapeSpec], in_features: Optional[Sequence[str]], minimum: int = 1
) -> List[str]:
    """The levels a head uses: ``in_features`` checked against its input shapes (None: all of
    them, finest first)."""
    if in_features is None:
        in_features = sorted(shapes, key=lambda k: shapes[k].stride)
    in_features = list(in_features)
    missing = [f for f in in_features if f not in shapes]
    if len(in_features) < minimum or missing:
        what = "a non-empty subset" if minimum == 1 else "two or more"
        raise ValueError(
            f"in_features must be {what} of the input features {list(shapes)}, "
            f"got {in_features} (missing: {missing})."
        )
    return in_features


@SEM_SEG_HEADS_REGISTRY.register()
class FPNConcatSemSegHead(nn.Module):
    """
    Semantic segmentation from all FPN levels at once (the seed design): each level in
    ``in_features`` is upsampled (bilinear) to the resolution of the finest one (P2, stride 4),
    the levels are concatenated along channels, and a single 3x3 conv maps them to per-pixel
    class logits, which are upsampled (bilinear) by the finest stride to the input size.

    It follows the contract of detectron2's ``SemSegFPNHead`` so that detectron2's
    ``SemanticSegmentor`` runs it: ``forward(features, targets)`` returns ``(None, losses)`` in
    training and ``(logits, {})`` in inference, and ``ignore_value`` pads the targets.

    Losses:

    * ``"cross_entropy"``: softmax cross-entropy over ``num_classes`` logits, averaged over the
      pixels whose label is not ``ignore_value``.
    * ``"binary_cross_entropy"``: for one-class masks (``num_classes=2``: label 0 background, 1
      foreground). The conv predicts a single foreground logit ``x``, trained with sigmoid binary
      cross-entropy over the non-ignored pixels. Inference returns the two-channel logits
      ``[0, x]``: their softmax is ``[1 - sigmoid(x), sigmoid(x)]`` and their argmax is
      ``x > 0``, so ``SemanticSegmentor``'s resizing, ``SemSegEvaluator`` (with two
      ``stuff_classes``) and visualisers work unchanged, and ``sem_seg.softmax(0)[1]`` is the
      foreground probability.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_features: Optional[Sequence[str]] = None,
        ignore_value: int = 255,
        loss_weight: float = 1.0,
        loss_type: str = "cross_entropy",
    ):
        """
        Args:
            input_shape: shapes (channels and stride) of the backbone's outputs, e.g. a
                ``backbone.output_shape()`` of detectron2's FPN; a mapping with ``channels`` and
                ``stride`` works too.
            num_classes: classes of the output, background included (ADE20K: 150). Must be 2 for
                ``loss_type="binary_cross_entropy"``.
            in_features: the levels to use, e.g. ``["p2", "p3", "p4", "p5"]`` (``"p6"`` may be
                added). None: every entry of ``input_shape``. The finest level sets the output
                resolution.
            ignore_value: label of pixels that count in no loss (also the value that
                ``SemanticSegmentor`` pads the targets with).
            loss_weight: multiplier of the loss.
            loss_type: one of :data:`SEM_SEG_LOSS_TYPES`.
        """
        super().__init__()
        shapes = {k: _as_shape_spec(k, v) for k, v in input_shape.items()}
        in_features = _select_features(shapes, in_features)
        if loss_type not in SEM_SEG_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {SEM_SEG_LOSS_TYPES}, got {loss_type!r}.")
        if loss_type == "binary_cross_entropy" and num_classes != 2:
            raise ValueError(
                f"loss_type='binary_cross_entropy' segments background (label 0) from foreground "
                f"(label 1), so num_classes must be 2 (the classes of the output and of the "
                f"dataset's stuff_classes), got {num_classes}. The head predicts one logit x and "
                f"returns the logits [0, x]."
            )
        if loss_type == "cross_entropy" and num_classes < 2:
            raise ValueError(
                f"num_classes must be >= 2 (background included), got {num_classes}. For one-class "
                f"masks use num_classes=2, optionally with loss_type='binary_cross_entropy'."
            )
        # finest level first: it sets the resolution everything is upsampled to
        self.in_features = sorted(in_features, key=lambda f: shapes[f].stride)
        self.common_stride = shapes[self.in_features[0]].stride
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.loss_type = loss_type

        in_channels = sum(shapes[f].channels for f in self.in_features)
        out_channels = 1 if loss_type == "binary_cross_entropy" else num_classes
        self.predictor = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        # a linear classifier on the features: small weights, as mmsegmentation's conv_seg
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict[str, Any]:
        """yacs: ``cfg.MODEL.SEM_SEG_HEAD`` (``LOSS_TYPE`` from :func:`add_pvt_v2_sem_seg_config`)."""
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "in_features": list(head.IN_FEATURES),
            "num_classes": head.NUM_CLASSES,
            "ignore_value": head.IGNORE_VALUE,
            "loss_weight": head.LOSS_WEIGHT,
            "loss_type": head.get("LOSS_TYPE", "cross_entropy"),
        }

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """
        Args:
            features: name -> Tensor of shape (N, C_l, H_l, W_l), at least ``in_features``.

        Returns:
            Tensor of shape (N, K, H_0, W_0): logits at the finest level's resolution; K is
            ``num_classes``, or 1 for the binary loss.
        """
        finest = features[self.in_features[0]]
        size = finest.shape[-2:]
        x = [finest] + [
            F.interpolate(features[f], size=size, mode="bilinear", align_corners=False)
            for f in self.in_features[1:]
        ]
        return self.predictor(torch.cat(x, dim=1))

    def forward(
        self, features: Dict[str, torch.Tensor], targets: Optional[torch.Tensor] = None
    ) -> Tuple[Optional[torch.Tensor], Dict[str, torch.Tensor]]:
        """
        Args:
            features: name -> Tensor of shape (N, C_l, H/s_l, W/s_l) from the backbone.
            targets: Tensor of shape (N, H, W), int64 labels in [0, num_classes) or
                ``ignore_value``; needed in training only.

        Returns:
            In training, ``(None, {"loss_sem_seg": scalar Tensor})``. In inference,
            ``(Tensor of shape (N, num_classes, H, W) of logits, {})`` with
            ``(H, W) = common_stride * (H_0, W_0)``, the (padded) input size.
        """
        x = self.layers(features)
        if self.training:
            if targets is None:
                raise ValueError(
                    f"{type(self).__name__} needs targets in training: (N, H, W) label maps "
                    f"(SemanticSegmentor passes the inputs' 'sem_seg')."
                )
            return None, self.losses(x, targets)
        x = F.interpolate(x, scale_factor=self.common_stride, mode="bilinear", align_corners=False)
        if self.loss_type == "binary_cross_entropy":
            x = torch.cat([torch.zeros_like(x), x], dim=1)
        return x, {}

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            predictions: Tensor of shape (N, K, H_0, W_0), the output of :meth:`layers`.
            targets: Tensor of shape (N, H, W), int64 labels or ``ignore_value``.

        Returns:
            ``{"loss_sem_seg": scalar Tensor}``: the mean loss over the non-ignored pixels
            times ``loss_weight`` (0 when every pixel is ignored).
        """
        # upsample in fp32 (https://github.com/pytorch/pytorch/issues/48163)
        predictions = F.interpolate(
            predictions.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False
        )
        valid = targets != self.ignore_value
        # the sum over valid pixels / their count: a mean that stays finite when none is valid
        num_valid = valid.sum().clamp(min=1)
        if self.loss_type == "cross_entropy":
            loss = F.cross_entropy(
                predictions, targets, ignore_index=self.ignore_value, reduction="sum"
            )
        else:
            bad = valid & (targets != 0) & (targets != 1)
            if bad.any():
                raise ValueError(
                    f"loss_type='binary_cross_entropy' needs labels 0 (background), 1 "
                    f"(foreground) or ignore_value={self.ignore_value}, found "
                    f"{sorted(torch.unique(targets[bad]).tolist())}."
                )
            labels = torch.where(valid, targets, torch.zeros_like(targets)).float()
            loss = F.binary_cross_entropy_with_logits(predictions[:, 0], labels, reduction="none")
            loss = (loss * valid).sum()
        return {"loss_sem_seg": loss / num_valid * self.loss_weight}
