"""
The models: the PVT-v2 bottom-up network as a detectron2 ``Backbone`` (with its FPN builders),
the variant table, weight-format loading (ImageNet files, mmdetection detector checkpoints),
the official recipe's RetinaNet details, and the heads this project adds (a mask head that
skips box-only objects, mmdetection's Cascade Mask R-CNN heads, the FPN concat semantic head).
Importing it registers them in detectron2's registries.
"""

from .variants import PVT_V2_VARIANTS, STAGE_NAMES, pvt_v2_out_channels, pvt_v2_output_shape
from .weights import load_pvt_v2_weights
from .backbone import (
    PVTv2Backbone,
    build_pvt_v2_backbone,
    build_pvt_v2_fpn_backbone,
    build_pvt_v2_retinanet_fpn_backbone,
)
from .mask_head import PartialMaskRCNNConvUpsampleHead
from .cascade import CascadeMaskROIHeads
from .retinanet import ClippedRetinaNet, LastLevelP6P7NoReLU
from .semantic import SEM_SEG_LOSS_TYPES, FPNConcatSemSegHead
from .upernet import UPerNetHead
from .classifier import ImageClassifier
from .depth import DepthEstimator, DepthHead

__all__ = [
    "PVT_V2_VARIANTS",
    "STAGE_NAMES",
    "pvt_v2_out_channels",
    "pvt_v2_output_shape",
    "load_pvt_v2_weights",
    "PVTv2Backbone",
    "build_pvt_v2_backbone",
    "build_pvt_v2_fpn_backbone",
    "build_pvt_v2_retinanet_fpn_backbone",
    "PartialMaskRCNNConvUpsampleHead",
    "CascadeMaskROIHeads",
    "ClippedRetinaNet",
    "LastLevelP6P7NoReLU",
    "SEM_SEG_LOSS_TYPES",
    "FPNConcatSemSegHead",
    "UPerNetHead",
    "ImageClassifier",
    "DepthEstimator",
    "DepthHead",
]
