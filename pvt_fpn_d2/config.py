"""yacs config keys for PVT-v2 (for users of detectron2's ``get_cfg()`` / ``DefaultTrainer``)."""

import difflib
import inspect
from typing import List

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import CfgNode as CN
from detectron2.config import LazyConfig
from detectron2.utils.registry import locate
from detectron2.solver import build_optimizer as d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

__all__ = [
    "add_pvt_v2_config",
    "add_pvt_v2_sem_seg_config",
    "build_optimizer",
    "apply_overrides",
    "is_override_key",
    "closest_override_keys",
]


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
    # channels-last convolution weights: same outputs to ~1e-5, about 2x faster backbone on CPUs
    # (docs/BENCHMARKS.md). None: on while the model is on the CPU; True / False: fixed
    _C.MODEL.PVT.CHANNELS_LAST = None
    # fp32 CPU inference: each MLP's depthwise convolution + GELU as one oneDNN kernel (same
    # outputs to ~1e-6; training, autocast, GPUs and export run the two ops)
    _C.MODEL.PVT.FUSE_GELU = True
    # epsilon of the LayerNorms in the patch embeddings and spatial reductions. None: timm's 1e-5
    # (the official PVT-v2 code's); 1e-6 for checkpoints of mmdetection's own
    # PyramidVisionTransformerV2 (tools/convert_mmdet_checkpoint.py says which)
    _C.MODEL.PVT.PATCH_AND_SR_NORM_EPS = None
    # CascadeMaskROIHeads (pvt_fpn_d2.modeling.cascade): each stage's loss weight
    _C.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)
    # ImageNet weights loaded when the backbone is built: a local file in the official, timm or
    # HF format, or "timm://pvt_v2_b2" to download. (MODEL.WEIGHTS="timm://pvt_v2_b2" works too.)
    _C.MODEL.PVT.WEIGHTS = ""
    # pvt_fpn_d2.modeling.ImageClassifier (MODEL.META_ARCHITECTURE: "ImageClassifier")
    _C.MODEL.CLASSIFIER = CN()
    _C.MODEL.CLASSIFIER.NUM_CLASSES = 1000
    _C.MODEL.CLASSIFIER.IN_FEATURE = "p5"  # the FPN's coarsest level; "res5" without FPN
    _C.MODEL.CLASSIFIER.DROPOUT = 0.0
    _C.MODEL.CLASSIFIER.LABEL_SMOOTHING = 0.0
    # pvt_fpn_d2.modeling.DepthEstimator (MODEL.META_ARCHITECTURE: "DepthEstimator")
    _C.MODEL.DEPTH = CN()
    _C.MODEL.DEPTH.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    _C.MODEL.DEPTH.CONVS_DIM = 128
    _C.MODEL.DEPTH.MAX_DEPTH = 10.0  # metres (NYU Depth v2: 10, KITTI: 80)
    _C.MODEL.DEPTH.LOSS = "silog"  # or "l1"
    # "SGD" (detectron2's default) or "AdamW" (the PVT-v2 recipes); see build_optimizer
    _C.SOLVER.OPTIMIZER = "SGD"
    return cfg


def add_pvt_v2_sem_seg_config(cfg: CN) -> CN:
    """
    Add ``cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE`` to a detectron2 yacs config, for
    ``MODEL.SEM_SEG_HEAD.NAME: "FPNConcatSemSegHead"`` with ``MODEL.META_ARCHITECTURE:
    "SemanticSegmentor"`` and ``MODEL.BACKBONE.NAME: "build_pvt_v2_fpn_backbone"``.
    """
    # "cross_entropy", or "binary_cross_entropy" for one-class masks (NUM_CLASSES: 2)
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"
    return cfg


def build_optimizer(cfg: CN, model: torch.nn.Module) -> torch.optim.Optimizer:
    """
    detectron2's ``build_optimizer`` that also honours ``SOLVER.OPTIMIZER = "AdamW"``.
    Use it as ``DefaultTrainer.build_optimizer`` in a yacs trainer.
    """
    if cfg.SOLVER.OPTIMIZER == "SGD":
        return d2_build_optimizer(cfg, model)
    if cfg.SOLVER.OPTIMIZER != "AdamW":
        raise ValueError(
            f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {cfg.SOLVER.OPTIMIZER!r}."
        )
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


_MISSING = object()


def _all_keys(node, prefix: str = "") -> List[str]:
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return []
    keys = []
    for k, child in items:
        key = f"{prefix}{k}"
        keys += [key] + _all_keys(child, key + ".")
    return keys


def _is_argument_of_lazy_call(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` names an argument of the LazyCall it belongs to (one the config omits)."""
    parent_key, _, arg = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    target = parent.get("_target_") if isinstance(parent, DictConfig) else None
    if isinstance(target, str):
        try:
            target = locate(target)
        except Exception:
            return False
    if not callable(target):
        return False
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return arg in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _has_key(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` (dotted) is in the config, including keys whose value is ``???``."""
    parent_key, _, last = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=_MISSING) if parent_key else cfg
    if isinstance(parent, DictConfig):
        return last in parent.keys()
    if isinstance(parent, ListConfig):
        return last.isdigit() and int(last) < len(parent)
    return False


def is_override_key(cfg: DictConfig, key: str) -> bool:
    """
    Whether ``key=value`` (``key`` dotted, without ``+``) overrides something of ``cfg``: a key
    of the config (one whose value is ``???`` and list items included), or an argument of the
    LazyCall it belongs to (one the config leaves out; any name where the target takes
    ``**kwargs``). The rule of :func:`apply_overrides`, and of ``tools/check_docs.py`` for the
    overrides in the docs. (A yacs config as a DictConfig: its keys and list items.)
    """
    return _has_key(cfg, key) or _is_argument_of_lazy_call(cfg, key)


def closest_override_keys(cfg: DictConfig, key: str, n: int = 3) -> List[str]:
    """The at most ``n`` keys of ``cfg`` (list items included) closest to ``key``, best first:
    the suggestions for a key that :func:`is_override_key` refuses."""
    keys = _all_keys(OmegaConf.to_container(cfg, resolve=False))
    return difflib.get_close_matches(key, keys, n=n, cutoff=0.6)


def apply_overrides(cfg: DictConfig, overrides: List[str]) -> DictConfig:
    """
    detectron2's ``LazyConfig.apply_overrides``, but a key that is neither in the config nor an
    argument of the object (LazyCall) it belongs to is an error, with the closest existing keys,
    instead of silently creating a new one. Prefix a key with ``+`` to add it on purpose
    (``+train.my_key=1``).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plain = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.key_or_group
        if not (o.is_add() or is_override_key(cfg, key)):
            close = closest_override_keys(cfg, key)
            raise KeyError(
                f"Override {o.input_line!r}: the config has no key {key!r}."
                + (f" Did you mean {' or '.join(close)}?" if close else "")
                + f" To add a new key on purpose, write +{o.input_line}."
            )
        plain.append(o.input_line.lstrip("+"))
    return LazyConfig.apply_overrides(cfg, plain)
