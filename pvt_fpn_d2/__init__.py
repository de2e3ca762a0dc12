"""PVT-v2 backbones with FPN for Detectron2."""

from .backbone import (
    PVT_V2_VARIANTS,
    PVTv2Backbone,
    build_pvt_v2_backbone,
    build_pvt_v2_fpn_backbone,
    build_pvt_v2_retinanet_fpn_backbone,
    pvt_v2_out_channels,
)
from .checkpoint import PVTCheckpointer
from .config import add_pvt_v2_config, build_optimizer
from .weights import load_pvt_v2_weights

__version__ = "0.1.0"
