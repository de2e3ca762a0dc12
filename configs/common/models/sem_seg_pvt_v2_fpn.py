# detectron2's SemanticSegmentor on detectron2's FPN with PVT-v2 as the bottom-up network (all
# stages trained, drop path 0.1, RGB input with ImageNet mean/std, as the official recipes).
#
# `model` carries the seed design's head (pvt_fpn_d2.modeling.semantic.FPNConcatSemSegHead: P2-P5
# upsampled to stride 4, concatenated, one 3x3 conv). `semantic_fpn_head` is detectron2's
# Semantic FPN head for configs that swap it in (`model.sem_seg_head = semantic_fpn_head`).
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling import FPN, SemanticSegmentor
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead

from pvt_fpn_d2.modeling.semantic import FPNConcatSemSegHead

from ..data.constants import constants
from .pvt_v2_backbone import bottom_up

# FPN output p{k} has stride 2**k: p2..p5 from res2..res5. No P6 (top_block=None): the heads
# use p2-p5. For P6 too: backbone.top_block=L(LastLevelMaxPool)() and a "p6" entry (stride 64) in
# the head's input_shape and in_features.
# The interpolation is relative to sem_seg_head.input_shape.<level>: four levels up is `model`.
_FPN_SHAPES = {
    f"p{k}": L(ShapeSpec)(channels="${....backbone.out_channels}", stride=2**k)
    for k in (2, 3, 4, 5)
}


model = L(SemanticSegmentor)(
    backbone=L(FPN)(
        bottom_up=bottom_up(),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        top_block=None,
    ),
    sem_seg_head=L(FPNConcatSemSegHead)(
        input_shape=_FPN_SHAPES,
        in_features=list(_FPN_SHAPES),
        num_classes=150,  # ADE20K SceneParsing
        ignore_value=255,  # detectron2's label for "not evaluated" (ADE20K's 0 "other" -> 255)
        loss_weight=1.0,
        loss_type="cross_entropy",
    ),
    pixel_mean=constants["imagenet_rgb256_mean"],
    pixel_std=constants["imagenet_rgb256_std"],
)

# Semantic FPN (Kirillov et al. 2019; the head the PVT papers report on ADE20K): per level
# 3x3 conv + norm + ReLU + 2x upsampling down to stride 4, summed, 1x1 conv to the classes.
# 128 channels as mmsegmentation's FPNHead. GroupNorm (detectron2's default for this head)
# where mmsegmentation used SyncBN with 4 images per GPU: GN does not depend on the per-GPU
# batch and also runs on a CPU; set norm="SyncBN" for the official head on several GPUs.
# No dropout before the classifier (mmsegmentation: 0.1): detectron2's head has none.
semantic_fpn_head = L(SemSegFPNHead)(
    input_shape=_FPN_SHAPES,
    num_classes="???",  # the configs copy num_classes and ignore_value from the head it replaces
    ignore_value=255,
    conv_dims=128,
    common_stride=4,  # P2's stride: every level is brought to it
    loss_weight=1.0,
    norm="GN",
)
