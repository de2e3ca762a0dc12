"""
UPerNet (Xiao et al., "Unified Perceptual Parsing for Scene Understanding", ECCV 2018) as a
detectron2 semantic segmentation head, on the PVT-v2 stages (res2-res5): the head the Swin and
ConvNeXt ADE20K results use, written after mmsegmentation's ``UPerHead`` and ``FCNHead``.

* pyramid pooling (PPM, scales 1, 2, 3, 6) on the coarsest stage, concatenated with it and fused
  by a 3x3 conv;
* an FPN of its own: 1x1 laterals, the top-down path, a 3x3 conv per level;
* every level upsampled to the finest (stride 4) and concatenated, a 3x3 fuse conv, dropout and a
  1x1 classifier; the logits are upsampled to the input (bilinear) as detectron2's
  ``SemSegFPNHead`` does;
* optionally an auxiliary FCN head (3x3 conv, dropout, classifier) on ``res4``, trained with
  ``aux_loss_weight`` (0.4 in the common recipe) and not used at inference.

Registered in detectron2's ``SEM_SEG_HEADS_REGISTRY``; used by ``SemanticSegmentor`` with the
bottom-up network itself as the backbone (UPerNet brings its own FPN).
"""

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

from .semantic import _as_shape_spec, _select_features

__all__ = ["UPerNetHead"]


def _conv(in_channels: int, out_channels: int, kernel_size: int, norm: str) -> Conv2d:
    """conv + norm + ReLU, no bias (the norm has one), as mmsegmentation's ConvModule."""
    return Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        padding=kernel_size // 2,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )


@SEM_SEG_HEADS_REGISTRY.register()
class UPerNetHead(nn.Module):
    """
    UPerNet: pyramid pooling on the coarsest level, an FPN, all levels fused at the finest
    stride (see the module docstring). Outputs like detectron2's ``SemSegFPNHead``: logits at the
    input resolution (N, num_classes, H, W) at inference, ``{"loss_sem_seg": ...}`` (and
    ``"loss_sem_seg_aux"``) in training.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_features: Optional[Sequence[str]] = None,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        norm: str = "BN",
        dropout: float = 0.1,
        ignore_value: int = 255,
        loss_weight: float = 1.0,
        aux_in_feature: Optional[str] = "res4",
        aux_channels: int = 256,
        aux_loss_weight: float = 0.4,
    ):
        """
        Args:
            input_shape: shapes (channels, stride) of the backbone's outputs, e.g.
                ``PVTv2Backbone.output_shape()``; a mapping with ``channels`` and ``stride``
                works too.
            num_classes: classes of the output, background included (ADE20K: 150).
            in_features: the levels, finest first (default: every entry of ``input_shape``, by
                stride). The coarsest gets the pyramid pooling, the finest sets the resolution.
            channels: channels of the PPM, FPN and fuse convs (mmsegmentation: 512).
            pool_scales: output sizes of the PPM's adaptive average pools.
            norm: detectron2 norm name ("BN", "SyncBN", "GN", "" for none).
            dropout: before the classifiers (mmsegmentation: 0.1).
            ignore_value: label of pixels that count in no loss.
            loss_weight: multiplier of the main loss.
            aux_in_feature: the level of the auxiliary FCN head, None for none.
            aux_channels: channels of its conv (mmsegmentation: 256).
            aux_loss_weight: multiplier of its loss (0.4).
        """
        super().__init__()
        shapes = {k: _as_shape_spec(k, v) for k, v in input_shape.items()}
        in_features = _select_features(shapes, in_features, minimum=2)
        if aux_in_feature is not None and aux_in_feature not in shapes:
            raise ValueError(
                f"aux_in_feature={aux_in_feature!r} is not an input feature {list(shapes)}; "
                "set it to one of them or to None (no auxiliary head)."
            )
        if not pool_scales or min(pool_scales) < 1:
            raise ValueError(f"pool_scales must be positive output sizes, got {pool_scales}.")
        self.in_features = in_features
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.aux_loss_weight = aux_loss_weight
        self.aux_in_feature = aux_in_feature
        self.common_stride = shapes[in_features[0]].stride
        in_channels = [shapes[f].channels for f in in_features]

        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv(in_channels[-1], channels, 1, norm))
            for s in pool_scales
        )
        self.ppm_bottleneck = _conv(
            in_channels[-1] + len(pool_scales) * channels, channels, 3, norm
        )
        self.lateral_convs = nn.ModuleList(_conv(c, channels, 1, norm) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(_conv(channels, channels, 3, norm) for _ in in_channels[:-1])
        self.fpn_bottleneck = _conv(len(in_channels) * channels, channels, 3, norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.predictor = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)
        if aux_in_feature is not None:
            self.aux_head = nn.Sequential(
                _conv(shapes[aux_in_feature].channels, aux_channels, 3, norm),
                nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
                nn.Conv2d(aux_channels, num_classes, kernel_size=1),
            )

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "in_features": head.IN_FEATURES,
            "num_classes": head.NUM_CLASSES,
            "channels": head.CONVS_DIM,
            "norm": head.NORM,
            "ignore_value": head.IGNORE_VALUE,
            "loss_weight": head.LOSS_WEIGHT,
        }

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The fused features at the finest level's stride: (N, channels, H/4, W/4)."""
        xs: List[torch.Tensor] = [features[f] for f in self.in_features]
        top = xs[-1]
        pooled = [
            F.interpolate(ppm(top), size=top.shape[-2:], mode="bilinear", align_corners=False)
            for ppm in self.ppm
        ]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, xs[:-1])]
        laterals.append(self.ppm_bottleneck(torch.cat([top] + pooled, dim=1)))
        for i in range(len(laterals) - 1, 0, -1):  # top-down
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="bilinear", align_corners=False
            )
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [
            F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]
        ]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))

    def forward(self, features: Dict[str, torch.Tensor], targets: Optional[torch.Tensor] = None):
        """
        Args:
            features: the backbone's outputs by name, (N, C_i, H_i, W_i).
            targets: (N, H, W) int64 labels at the input resolution (training).

        Returns:
            (logits (N, num_classes, H, W), {}) at inference; (None, losses) in training.
        """
        logits = self.predictor(self.dropout(self.layers(features)))
        logits = F.interpolate(
            logits, scale_factor=self.common_stride, mode="bilinear", align_corners=False
        )
        if not self.training:
            return logits, {}
        losses = {"loss_sem_seg": self._loss(logits, targets) * self.loss_weight}
        if self.aux_in_feature is not None:
            aux = self.aux_head(features[self.aux_in_feature])
            aux = F.interpolate(aux, size=logits.shape[-2:], mode="bilinear", align_corners=False)
            losses["loss_sem_seg_aux"] = self._loss(aux, targets) * self.aux_loss_weight
        return None, losses

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] != targets.shape[-2:]:
            raise ValueError(
                f"targets of size {tuple(targets.shape[-2:])} do not match the input size "
                f"{tuple(logits.shape[-2:])} (padded to a multiple of {self.common_stride})."
            )
        return F.cross_entropy(
            logits.float(), targets, reduction="mean", ignore_index=self.ignore_value
        )
