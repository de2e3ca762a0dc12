"""yacs config keys for PVT-v2 (for users of detectron2's ``get_cfg()`` / ``DefaultTrainer``)."""

import torch

from detectron2.config import CfgNode as CN
from detectron2.solver import build_optimizer as d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

__all__ = ["add_pvt_v2_config", "build_optimizer"]


def add_pvt_v2_config(cfg: CN) -> CN:
    """
    Add ``cfg.MODEL.PVT`` to a detectron2 yacs config. Use it with
    ``cfg.MODEL.BACKBONE.NAME = "build_pvt_v2_fpn_backbone"`` (p2-p6) or
    ``"build_pvt_v2_retinanet_fpn_backbone"`` (p3-p7), see ``configs/COCO-yaml/``.
    """
    _C = cfg
    _C.MODEL.PVT = CN()
    # timm name: pvt_v2_b0, _b1, _b2, _b2_li, _b3, _b4, _b5
    _C.MODEL.PVT.NAME = "pvt_v2_b2"
    _C.MODEL.PVT.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # stochastic depth; 0.1 in every official PVT-v2 detection recipe
    _C.MODEL.PVT.DROP_PATH_RATE = 0.1
    # 0: train everything (official recipe); 1: freeze patch embedding; k: also res2..res{k}.
    # (MODEL.BACKBONE.FREEZE_AT, whose default 2 suits ResNet, is not used by PVT-v2.)
    _C.MODEL.PVT.FREEZE_AT = 0
    # activation checkpointing of every transformer block (less memory, slower)
    _C.MODEL.PVT.USE_ACT_CHECKPOINT = False
    # ImageNet weights loaded when the backbone is built: a local file in the official, timm or
    # HF format, or "timm://pvt_v2_b2" to download. (MODEL.WEIGHTS="timm://pvt_v2_b2" works too.)
    _C.MODEL.PVT.WEIGHTS = ""
    # "SGD" (detectron2's default) or "AdamW" (the PVT-v2 recipes); see build_optimizer
    _C.SOLVER.OPTIMIZER = "SGD"
    return cfg


def build_optimizer(cfg: CN, model: torch.nn.Module) -> torch.optim.Optimizer:
    """
    detectron2's ``build_optimizer`` that also honours ``SOLVER.OPTIMIZER = "AdamW"``.
    Use it as ``DefaultTrainer.build_optimizer`` in a yacs trainer.
    """
    if cfg.SOLVER.OPTIMIZER == "SGD":
        return d2_build_optimizer(cfg, model)
    if cfg.SOLVER.OPTIMIZER != "AdamW":
        raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {cfg.SOLVER.OPTIMIZER!r}.")
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )
