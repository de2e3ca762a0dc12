# Monocular depth on detectron2's FPN with PVT-v2 (pvt_fpn_d2.modeling.DepthEstimator): P2-P5
# upsampled to stride 4, concatenated, 3x3 conv + ReLU, 3x3 conv to one channel;
# depth = sigmoid(.) * max_depth, upsampled to the input.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling import FPN

from pvt_fpn_d2.modeling import DepthEstimator, DepthHead

from ..data.constants import constants
from .pvt_v2_backbone import bottom_up

model = L(DepthEstimator)(
    backbone=L(FPN)(
        bottom_up=bottom_up(),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        top_block=None,
    ),
    head=L(DepthHead)(
        # four levels up from input_shape.<level> is `model`
        input_shape={
            f"p{k}": L(ShapeSpec)(channels="${....backbone.out_channels}", stride=2**k)
            for k in (2, 3, 4, 5)
        },
        in_features=["p2", "p3", "p4", "p5"],
        conv_dims=128,
    ),
    max_depth=10.0,  # metres: NYU Depth v2 (KITTI: 80)
    loss="silog",
    pixel_mean=constants["imagenet_rgb256_mean"],
    pixel_std=constants["imagenet_rgb256_std"],
)
