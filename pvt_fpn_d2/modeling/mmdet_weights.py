"""
mmdetection detector checkpoints with a PVT-v2 backbone, mapped onto this project's detectron2
models: Mask R-CNN, Faster R-CNN, RetinaNet and Cascade Mask R-CNN from mmdetection 2.x (the
official PVT-v2 COCO checkpoints, trained with mmdetection 2.13) or 3.x, whose backbone is
either the official PVT code (``backbone.patch_embed1.proj.weight``,
``backbone.block1.0.attn.kv.weight``) or mmdetection's own ``PyramidVisionTransformerV2``
(``backbone.layers.0.0.projection.weight``, ``backbone.layers.0.1.0.attn.attn.in_proj_weight``:
the inverse of mmdetection's ``pvt_convert``).

Every tensor of the checkpoint is placed and every parameter of the detectron2 model filled, or
:class:`MMDetCheckpointError` names each key that could not be placed. Files are read with
``torch.load(weights_only=True)``: this module imports neither mmdetection nor mmcv.

Differences between the two frameworks that change numbers, and how each is handled:

* **Anchor order per location (RetinaNet)**: mmdetection's ``AnchorGenerator`` (default
  ``scale_major=True``) orders the 9 anchors of a location ratio-major (anchor = ratio * 3 +
  scale); detectron2's ``DefaultAnchorGenerator`` size-major (anchor = size * 3 + ratio). The
  output channels of ``retina_cls`` (blocks of ``num_classes`` per anchor) and ``retina_reg``
  (blocks of 4) are permuted into detectron2's order (:func:`anchor_permutation`). The RPN has
  one size and 3 ratios per level: both orders agree, nothing moves.
* **Background class of the box classifier**: mmdetection >= 2.0 and detectron2 both put
  background last (``fc_cls`` has ``num_classes + 1`` outputs, index ``num_classes`` is
  background): nothing moves. mmdetection 1.x put it first; such checkpoints are refused.
* **Class-specific box regression**: both lay out ``fc_reg`` / ``bbox_pred`` as 4 deltas per
  class, class-major (``4 * num_classes`` outputs, no background): copied as is; a
  class-agnostic (4 outputs) or 1.x layout (``4 * (num_classes + 1)``) is a shape mismatch.
* **Box coder normalisation**: mmdetection's ``DeltaXYWHBBoxCoder`` multiplies deltas by
  ``target_stds`` (0.1, 0.1, 0.2, 0.2) in the R-CNN head and (1, 1, 1, 1) in the RPN and
  RetinaNet; detectron2's ``Box2BoxTransform`` divides by its weights (10, 10, 5, 5) and
  (1, 1, 1, 1): the same numbers, no rescaling of the weights. Not absorbed: mmdetection also
  clamps ``dw, dh`` from below at ``-log(1000/16)`` (detectron2 only from above), which changes
  only boxes shrunk below 1.6% of their anchor or proposal.
* **RoIAlign**: mmdetection's ``RoIAlign(sampling_ratio=0, aligned=True)`` is detectron2's
  ``ROIAlignV2`` (the configs' pooler type): same sampling.
* **RoI level mapping**: mmdetection's level ``floor(log2(s / 56 + 1e-6))`` (``finest_scale``
  56, 0-based from P2) is detectron2's ``floor(4 + log2(s / 224 + 1e-8))`` (canonical size 224
  at level 4) minus 2: P2 for s < 112, P3 below 224, P4 below 448, P5 above, for both. Only a
  box whose sqrt(area) lies within 6e-5 px below 112, 224 or 448 is pooled from another level.
* **RetinaNet P6/P7**: P6 from C5 (mmdetection ``add_extra_convs="on_input"``), P7 from P6
  without a ReLU (``relu_before_extra_convs=False``): not absorbable by weights, so the RetinaNet
  config uses :class:`~pvt_fpn_d2.modeling.retinanet.LastLevelP6P7NoReLU` (detectron2's applies
  a ReLU). The Mask R-CNN P6 is a stride-2 max pool in both.
* **RetinaNet post-processing**: mmdetection clips boxes to the image and drops empty ones
  before NMS, detectron2 after: not absorbable, the config uses
  :class:`~pvt_fpn_d2.modeling.retinanet.ClippedRetinaNet`. Two-stage detectors clip before NMS
  in both; detectron2's ``detector_postprocess`` then also drops detections of zero width or
  height, which mmdetection keeps (they cannot match an object).
* **Input**: the official PVT-v2 configs read BGR images, convert them to RGB and normalise with
  the ImageNet mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375), then pad with 0
  to a multiple of 32; this project's configs do the same (``input_format="RGB"``,
  ``pixel_mean``, ``pixel_std``, ``size_divisibility`` 32). The first conv is not permuted.
  Not absorbed: test-time resizing (mmdetection resizes with cv2, detectron2 with PIL, both
  bilinear to the same 1333x800 size), a difference of interpolation only.
* **LayerNorm epsilon (mmdetection's own PVT-v2 only)**: mmdetection's
  ``PyramidVisionTransformerV2`` uses eps 1e-6 in the patch-embedding and spatial-reduction
  norms, where the official code and timm use 1e-5 (the official checkpoints match timm). Not
  absorbable by weights (it moves the backbone's features by ~1e-4): the conversion of such a
  checkpoint names the config change ``PVTv2Backbone(patch_and_sr_norm_eps=1e-6)``
  (:attr:`MMDetConversion.config_overrides`); in a yacs config it is
  ``MODEL.PVT.PATCH_AND_SR_NORM_EPS: 1e-6``.
* **Cascade Mask R-CNN**: mmdetection's ``CascadeRoIHead`` has a mask head per stage, stage
  loss weights, sampling in every stage, class-specific refinement between stages and averages
  the stages' logits (not their probabilities) at test time; detectron2's ``CascadeROIHeads``
  has one mask head and none of the rest. The cascade configs use
  :class:`~pvt_fpn_d2.modeling.cascade.CascadeMaskROIHeads`, which does what mmdetection does;
  a config of detectron2's one-mask-head cascade is refused. The official 3x box heads
  (``ConvFCBBoxHead``: 4 convs with SyncBN, 1 fc) are detectron2's ``FastRCNNConvFCHead`` with
  ``conv_norm="SyncBN"`` (conv without bias, BN, ReLU in both). Box coder: ``target_stds``
  (0.033, 0.033, 0.067, 0.067) of the third stage are weights 1/0.033 and 1/0.067 in the
  config, not detectron2's rounded (30, 30, 15, 15).
* **Weights layout**: mmdetection's PVT-v2 stores the MLP's linear layers as 1x1 convs and the
  attention's q/k/v as one ``in_proj``; they are reshaped and split back (the official layout,
  which timm's ``checkpoint_filter_fn`` then maps to timm's keys).
"""

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from timm.models.pvt_v2 import checkpoint_filter_fn
from torch import Tensor

from .weights import D2_BACKBONE_PREFIX, guess_variant, read_checkpoint

__all__ = [
    "MMDET_DETECTORS",
    "MMDET_PVT_NORM_EPS",
    "MMDetCheckpointError",
    "MMDetConversion",
    "read_mmdet_checkpoint",
    "detect_mmdet_detector",
    "detect_detectron2_detector",
    "mmdet_pvt_to_official",
    "mmdet_backbone_to_timm",
    "anchor_permutation",
    "convert_mmdet_state_dict",
    "model_zoo_config_name",
]

logger = logging.getLogger(__name__)

# what can be converted: mmdetection's name of the detector -> this project's config prefix
MMDET_DETECTORS = {
    "MaskRCNN": "mask_rcnn",
    "FasterRCNN": "faster_rcnn",
    "RetinaNet": "retinanet",
    "CascadeMaskRCNN": "cascade_mask_rcnn",
}
# the schedule of this project's COCO config of each detector (the official checkpoints')
_SCHEDULE = {"CascadeMaskRCNN": "3x"}


# LayerNorm eps of the patch embeddings and spatial reductions in mmdetection's
# PyramidVisionTransformerV2 (norm_cfg=dict(type="LN", eps=1e-6) everywhere)
MMDET_PVT_NORM_EPS = 1e-6


class MMDetCheckpointError(ValueError):
    """
    A checkpoint that cannot be converted into the given detectron2 model, and why. When keys
    are at fault, ``keys`` holds all of them by kind (the message names the first ones).
    """

    def __init__(self, message: str, keys: Optional[Dict[str, List[str]]] = None):
        super().__init__(message)
        self.keys = keys or {}


def _few(keys: Sequence[str], n: int = 4) -> str:
    return ", ".join(list(keys)[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def read_mmdet_checkpoint(
    path: str, trust_pickle: Optional[bool] = None
) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """
    Read an mmdetection checkpoint safely (``torch.load(weights_only=True)``).

    Returns:
        (the tensors of its ``state_dict``, its ``meta`` dict or {})
    """
    try:
        obj = read_checkpoint(path, trust_pickle)
    except (RuntimeError, EOFError) as e:
        raise MMDetCheckpointError(
            f"Cannot read {path}: it is not a complete torch checkpoint (truncated or corrupted "
            f"download?). Download it again and compare its size or hash. (torch said: "
            f"{str(e).splitlines()[0]})"
        ) from None
    if not isinstance(obj, dict):
        raise MMDetCheckpointError(
            f"{path} holds a {type(obj).__name__}, not an mmdetection checkpoint (a dict with "
            "'state_dict' and 'meta')."
        )
    # mmdetection keeps the weights under "state_dict"; detectron2 under "model" (named later)
    sd = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), obj)
    tensors = {k: v for k, v in sd.items() if isinstance(v, Tensor)}
    if not tensors:
        raise MMDetCheckpointError(
            f"{path} has no tensors under 'state_dict' or at its top level (keys: "
            f"{_few([str(k) for k in obj])})."
        )
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    version = str(meta.get("mmdet_version", ""))
    if version.startswith(("0.", "1.")):
        raise MMDetCheckpointError(
            f"{path} was saved by mmdetection {version}, which puts the background class first "
            "and regresses it too; upgrade it with mmdetection 2.x's "
            "tools/model_converters/upgrade_model_version.py, then convert the result."
        )
    return tensors, meta


def detect_mmdet_detector(sd: Mapping[str, Tensor]) -> str:
    """The detector, a key of :data:`MMDET_DETECTORS`, from the keys; else an error."""
    keys = list(sd)
    if any(k.startswith(D2_BACKBONE_PREFIX) for k in keys):
        raise MMDetCheckpointError(
            "This is already a detectron2 checkpoint of this project (keys like "
            f"{D2_BACKBONE_PREFIX}...): load it directly, there is nothing to convert."
        )
    if not any(k.startswith("backbone.") for k in keys):
        raise MMDetCheckpointError(
            "Not a detector checkpoint: no 'backbone.' keys (first keys: "
            f"{_few(keys)}). PVT-v2 ImageNet weights load directly as train.init_checkpoint."
        )
    if "bbox_head.retina_cls.weight" in sd:
        return "RetinaNet"
    if "roi_head.bbox_head.fc_cls.weight" in sd and "rpn_head.rpn_cls.weight" in sd:
        return "MaskRCNN" if "roi_head.mask_head.conv_logits.weight" in sd else "FasterRCNN"
    if "roi_head.bbox_head.0.fc_cls.weight" in sd and "rpn_head.rpn_cls.weight" in sd:
        if "roi_head.mask_head.0.conv_logits.weight" in sd:
            return "CascadeMaskRCNN"
        raise MMDetCheckpointError(
            "This is a Cascade R-CNN checkpoint without masks (roi_head.bbox_head.0., .1., ... and "
            "no roi_head.mask_head.0.conv_logits): only Cascade Mask R-CNN, with a mask head per "
            "stage, converts (configs/COCO/cascade_mask_rcnn_*)."
        )
    layers = sorted(
        {".".join(k.split(".")[:2]) for k in keys if not k.startswith(("backbone.", "neck."))}
    )
    raise MMDetCheckpointError(
        f"Not an mmdetection Mask R-CNN, Faster R-CNN, RetinaNet or Cascade Mask R-CNN "
        f"checkpoint: its head layers are {_few(layers, 12)}. Convertible: Mask R-CNN "
        "(roi_head.mask_head.conv_logits), Faster R-CNN (roi_head.bbox_head.fc_cls), RetinaNet "
        "(bbox_head.retina_cls), Cascade Mask R-CNN (roi_head.mask_head.0.conv_logits)."
    )


def detect_detectron2_detector(target: Mapping[str, Any]) -> Optional[str]:
    """The same names for a detectron2 model's state dict; None for other models."""
    if "head.cls_score.weight" in target:
        return "RetinaNet"
    if "roi_heads.box_predictor.0.cls_score.weight" in target:
        if "roi_heads.mask_head.0.predictor.weight" in target:
            return "CascadeMaskRCNN"
        # detectron2's own cascade: one mask head (or none)
        return "detectron2's CascadeROIHeads"
    if "roi_heads.box_predictor.cls_score.weight" in target:
        return "MaskRCNN" if "roi_heads.mask_head.predictor.weight" in target else "FasterRCNN"
    return None


# mmdetection's PyramidVisionTransformerV2 -> official PVT-v2 (the inverse of its pvt_convert)
_MMDET_PVT_BLOCK = {
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "attn.attn.out_proj.": "attn.proj.",
    "attn.sr.": "attn.sr.",
    "attn.norm.": "attn.norm.",
    "ffn.layers.0.": "mlp.fc1.",  # 1x1 conv -> linear
    "ffn.layers.1.": "mlp.dwconv.dwconv.",
    "ffn.layers.4.": "mlp.fc2.",  # 1x1 conv -> linear
}


def mmdet_pvt_to_official(sd: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor], List[str]]:
    """
    mmdetection's ``PyramidVisionTransformerV2`` keys (``layers.{i}.0`` patch embedding,
    ``layers.{i}.1.{j}`` blocks, ``layers.{i}.2`` stage norm) -> the official PVT-v2 keys.

    Returns:
        (official state dict, the keys that have no official counterpart)
    """
    out: Dict[str, Tensor] = {}
    unplaced: List[str] = []
    for k, v in sd.items():
        m = re.match(r"^layers\.(\d+)\.0\.(projection|norm)\.(weight|bias)$", k)
        if m:
            sub = "proj" if m[2] == "projection" else "norm"
            out[f"patch_embed{int(m[1]) + 1}.{sub}.{m[3]}"] = v
            continue
        m = re.match(r"^layers\.(\d+)\.2\.(weight|bias)$", k)
        if m:
            out[f"norm{int(m[1]) + 1}.{m[2]}"] = v
            continue
        m = re.match(r"^layers\.(\d+)\.1\.(\d+)\.(.+)$", k)
        if not m:
            unplaced.append(k)
            continue
        block, rest = f"block{int(m[1]) + 1}.{m[2]}.", m[3]
        inproj = re.match(r"^attn\.attn\.in_proj_(weight|bias)$", rest)
        if inproj:  # [q; k; v] -> q and the official fused kv
            dim = v.shape[0] // 3
            out[f"{block}attn.q.{inproj[1]}"] = v[:dim]
            out[f"{block}attn.kv.{inproj[1]}"] = v[dim:]
            continue
        for a, b in _MMDET_PVT_BLOCK.items():
            if rest.startswith(a):
                name = b + rest[len(a) :]
                if b in ("mlp.fc1.", "mlp.fc2.") and name.endswith("weight") and v.dim() == 4:
                    v = v.flatten(1)
                out[block + name] = v
                break
        else:
            unplaced.append(k)
    return out, unplaced


def mmdet_backbone_to_timm(sd: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor], str, List[str]]:
    """
    The ``backbone.*`` tensors of an mmdetection checkpoint (prefix removed) -> timm's keys.

    Returns:
        (timm state dict, "official" or "mmdetection" naming, keys that could not be placed)
    """
    keys = list(sd)
    if any(
        k.startswith("pos_embed") or re.match(r"^layers\.\d+\.1\.0\.pos_embed", k) for k in keys
    ):
        raise MMDetCheckpointError(
            "The backbone has position embeddings: it is PVT v1 (PyramidVisionTransformer), not "
            "PVT-v2. Only PVT-v2 (b0-b5, b2_li) checkpoints can be converted."
        )
    if "patch_embed1.proj.weight" in sd:
        official, unplaced, naming = dict(sd), [], "official"
    elif "layers.0.0.projection.weight" in sd:
        official, unplaced = mmdet_pvt_to_official(sd)
        naming = "mmdetection"
    else:
        hint = " (a ResNet?)" if "conv1.weight" in sd and any("layer1." in k for k in keys) else ""
        raise MMDetCheckpointError(
            f"The checkpoint's backbone is not PVT-v2{hint}: expected the official keys "
            "(backbone.patch_embed1.proj.weight, backbone.block1.0.attn.kv.weight, ...) or "
            "mmdetection's PyramidVisionTransformerV2 keys (backbone.layers.0.0.projection."
            f"weight, ...); found backbone.{_few(keys)}. This project's detectors have a PVT-v2 "
            "backbone."
        )
    return checkpoint_filter_fn(official, None), naming, unplaced


def anchor_permutation(num_sizes: int, num_ratios: int) -> List[int]:
    """
    For each of detectron2's anchors of a location (size-major: ``size * num_ratios + ratio``),
    the index of the same anchor in mmdetection's order (ratio-major: ``ratio * num_sizes +
    size``), the layout of ``AnchorGenerator(scale_major=True)``, mmdetection's default.
    """
    return [r * num_sizes + s for s in range(num_sizes) for r in range(num_ratios)]


def _permute_anchors(v: Tensor, perm: Sequence[int]) -> Tensor:
    """Reorder the output channels of a dense head layer: blocks of C/A channels per anchor."""
    a = len(perm)
    if v.shape[0] % a:  # another anchor layout than the model's: the shape check names it
        return v
    blocks = v.reshape(a, v.shape[0] // a, *v.shape[1:])
    return blocks[torch.as_tensor(perm)].reshape(v.shape)


@dataclass
class MMDetConversion:
    """The detectron2 state dict made from an mmdetection checkpoint, and what it was."""

    state_dict: Dict[str, Tensor]
    detector: str  # "MaskRCNN", "FasterRCNN", "RetinaNet"
    variant: Optional[str]  # "pvt_v2_b0", ...
    backbone_naming: str  # "official" (PVT code) or "mmdetection" (PyramidVisionTransformerV2)
    num_classes: int
    anchor_permutation: List[int] = field(default_factory=list)
    # set by the caller that knows the config: its model-zoo name when it was chosen from the
    # checkpoint, and the changes it needs for mmdetection's exact numbers (key=value)
    config: str = ""
    config_overrides: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        moved = (
            f", anchors reordered {self.anchor_permutation}"
            if self.anchor_permutation != sorted(self.anchor_permutation)
            else ""
        )
        return (
            f"mmdetection {self.detector} with {self.variant} ({self.backbone_naming} backbone "
            f"keys), {self.num_classes} classes -> {len(self.state_dict)} detectron2 tensors"
            f"{moved}"
        )


def _checkpoint_classes(detector: str, sd: Mapping[str, Tensor], num_anchors: int) -> int:
    if detector == "RetinaNet":
        return sd["bbox_head.retina_cls.weight"].shape[0] // max(num_anchors, 1)
    if detector == "CascadeMaskRCNN":
        return sd["roi_head.bbox_head.0.fc_cls.weight"].shape[0] - 1
    return sd["roi_head.bbox_head.fc_cls.weight"].shape[0] - 1


def _target_classes(detector: Optional[str], target: Mapping[str, Any], num_anchors: int) -> int:
    if detector == "RetinaNet":
        return tuple(target["head.cls_score.weight"].shape)[0] // max(num_anchors, 1)
    if detector in ("MaskRCNN", "FasterRCNN"):
        return tuple(target["roi_heads.box_predictor.cls_score.weight"].shape)[0] - 1
    if detector == "CascadeMaskRCNN":
        return tuple(target["roi_heads.box_predictor.0.cls_score.weight"].shape)[0] - 1
    return -1


def _place_heads(
    sd: Mapping[str, Tensor], target: Mapping[str, Any], perm: Sequence[int]
) -> Tuple[Dict[str, Tensor], Dict[str, str], List[str]]:
    """
    Every non-backbone tensor under its detectron2 name (anchors permuted), the mmdetection name
    of each, and the tensors that have no detectron2 name.
    """
    lateral_levels = sorted(
        int(m[1]) for k in target if (m := re.match(r"^backbone\.fpn_lateral(\d+)\.weight$", k))
    )
    n_lateral = len({k.split(".")[2] for k in sd if k.startswith("neck.lateral_convs.")})
    out: Dict[str, Tensor] = {}
    origin: Dict[str, str] = {}
    unplaced: List[str] = []
    for k, v in sd.items():
        if k.startswith("backbone."):
            continue
        dst = None
        m = re.match(r"^neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)$", k)
        if m:
            i, param = int(m[2]), m[3]
            if i < min(n_lateral, len(lateral_levels)):
                kind = "lateral" if m[1] == "lateral_convs" else "output"
                dst = f"backbone.fpn_{kind}{lateral_levels[i]}.{param}"
            elif m[1] == "fpn_convs" and i - n_lateral in (0, 1):  # extra convs: P6 and P7
                dst = f"backbone.top_block.p{6 + i - n_lateral}.{param}"
        for pattern, repl in _HEAD_RENAMES:
            if dst is None and re.match(pattern, k):
                dst = re.sub(pattern, repl, k)
        if dst is None:
            unplaced.append(k)
            continue
        if re.match(r"^(rpn_head\.rpn_(cls|reg)|bbox_head\.retina_(cls|reg))\.", k):
            v = _permute_anchors(v, perm)  # the identity for the RPN's 1 size x 3 ratios
        out[dst], origin[dst] = v, k
    return out, origin, unplaced


def _rename(prefix: str, offset: int = 0, step: int = 1, suffix: str = ""):
    return lambda m: f"{prefix}{int(m[1]) * step + offset}{suffix}.{m[2]}"


def _staged(template: str):
    """Cascade keys: ``{s}`` the stage, ``{i}`` the layer (1-based), ``{p}`` the parameter."""
    return lambda m: template.format(s=m[1], i=int(m[2]) + 1 if m[2] else "", p=m[3])


# mmdetection key (regex) -> detectron2 key (template or function of the match)
_HEAD_RENAMES = (
    # RPN
    (r"^rpn_head\.rpn_conv\.", "proposal_generator.rpn_head.conv."),
    (r"^rpn_head\.rpn_cls\.", "proposal_generator.rpn_head.objectness_logits."),
    (r"^rpn_head\.rpn_reg\.", "proposal_generator.rpn_head.anchor_deltas."),
    # box head (Shared2FCBBoxHead) and predictor
    (
        r"^roi_head\.bbox_head\.shared_fcs\.(\d+)\.(weight|bias)$",
        _rename("roi_heads.box_head.fc", 1),
    ),
    (r"^roi_head\.bbox_head\.fc_cls\.", "roi_heads.box_predictor.cls_score."),
    (r"^roi_head\.bbox_head\.fc_reg\.", "roi_heads.box_predictor.bbox_pred."),
    # Cascade: per-stage box heads (ConvFCBBoxHead: shared convs with BN, shared fcs),
    # predictors and mask heads
    (
        r"^roi_head\.bbox_head\.(\d+)\.shared_convs\.(\d+)\.conv\.(weight|bias)$",
        _staged("roi_heads.box_head.{s}.conv{i}.{p}"),
    ),
    (
        r"^roi_head\.bbox_head\.(\d+)\.shared_convs\.(\d+)\.(?:bn|gn)\.(\w+)$",
        _staged("roi_heads.box_head.{s}.conv{i}.norm.{p}"),
    ),
    (
        r"^roi_head\.bbox_head\.(\d+)\.shared_fcs\.(\d+)\.(weight|bias)$",
        _staged("roi_heads.box_head.{s}.fc{i}.{p}"),
    ),
    (
        r"^roi_head\.bbox_head\.(\d+)\.fc_cls\.()(\w+)$",
        _staged("roi_heads.box_predictor.{s}.cls_score.{p}"),
    ),
    (
        r"^roi_head\.bbox_head\.(\d+)\.fc_reg\.()(\w+)$",
        _staged("roi_heads.box_predictor.{s}.bbox_pred.{p}"),
    ),
    (
        r"^roi_head\.mask_head\.(\d+)\.convs\.(\d+)\.conv\.(weight|bias)$",
        _staged("roi_heads.mask_head.{s}.mask_fcn{i}.{p}"),
    ),
    (
        r"^roi_head\.mask_head\.(\d+)\.upsample\.()(\w+)$",
        _staged("roi_heads.mask_head.{s}.deconv.{p}"),
    ),
    (
        r"^roi_head\.mask_head\.(\d+)\.conv_logits\.()(\w+)$",
        _staged("roi_heads.mask_head.{s}.predictor.{p}"),
    ),
    # mask head (FCNMaskHead)
    (
        r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.(weight|bias)$",
        _rename("roi_heads.mask_head.mask_fcn", 1),
    ),
    (r"^roi_head\.mask_head\.upsample\.", "roi_heads.mask_head.deconv."),
    (r"^roi_head\.mask_head\.conv_logits\.", "roi_heads.mask_head.predictor."),
    # RetinaHead: ConvModules -> nn.Sequential(conv, relu, conv, relu, ...)
    (r"^bbox_head\.cls_convs\.(\d+)\.conv\.(weight|bias)$", _rename("head.cls_subnet.", 0, 2)),
    (r"^bbox_head\.reg_convs\.(\d+)\.conv\.(weight|bias)$", _rename("head.bbox_subnet.", 0, 2)),
    (r"^bbox_head\.retina_cls\.", "head.cls_score."),
    (r"^bbox_head\.retina_reg\.", "head.bbox_pred."),
)


def convert_mmdet_state_dict(
    sd: Mapping[str, Tensor],
    target: Mapping[str, Any],
    anchor_layout: Tuple[int, int],
    model_variant: Optional[str] = None,
    backbone_prefix: str = D2_BACKBONE_PREFIX,
) -> MMDetConversion:
    """
    Map an mmdetection state dict onto a detectron2 model's, strictly.

    Args:
        sd: the mmdetection ``state_dict`` (see :func:`read_mmdet_checkpoint`).
        target: the detectron2 model's ``state_dict()`` (tensors, e.g. on the meta device: only
            names and shapes are used).
        anchor_layout: (sizes, aspect ratios) per location of the model's dense head (RPN or
            RetinaNet), as in its ``DefaultAnchorGenerator``; (1, 3) and (3, 3) in the configs.
        model_variant: the model's PVT-v2 variant, named in the errors.
        backbone_prefix: where the timm model sits in the detectron2 model.

    Returns:
        :class:`MMDetConversion`; raises :class:`MMDetCheckpointError` naming every key that
        cannot be placed (and the variant, number of classes or detector that differ).
    """
    detector = detect_mmdet_detector(sd)
    target_detector = detect_detectron2_detector(target)
    backbone = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    timm_sd, naming, unplaced_backbone = mmdet_backbone_to_timm(backbone)
    variant = guess_variant(timm_sd)

    perm = anchor_permutation(*anchor_layout)
    converted = {backbone_prefix + k: v for k, v in timm_sd.items()}
    heads, origin, unplaced = _place_heads(sd, target, perm)
    converted.update(heads)
    unplaced = [f"backbone.{k}" for k in unplaced_backbone] + unplaced
    num_classes = _checkpoint_classes(detector, sd, len(perm))

    missing = [k for k in target if k not in converted]
    unexpected = [
        f"{origin[k]} (as {k})" if k in origin else k for k in converted if k not in target
    ]
    wrong = [
        f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(target[k].shape)} in the model"
        for k, v in converted.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    if not (missing or unexpected or wrong or unplaced):
        return MMDetConversion(converted, detector, variant, naming, num_classes, perm)

    reasons = []
    if target_detector is None:
        reasons.append(
            "The config does not build a Mask R-CNN, Faster R-CNN, RetinaNet or Cascade Mask "
            "R-CNN of detectron2."
        )
    elif detector == "CascadeMaskRCNN" and target_detector != detector:
        reasons.append(
            f"The checkpoint is an mmdetection Cascade Mask R-CNN (a mask head per stage), the "
            f"config builds {target_detector}: use a cascade_mask_rcnn config of this project "
            "(configs/COCO/cascade_mask_rcnn_*: pvt_fpn_d2.modeling.cascade.CascadeMaskROIHeads)."
        )
    elif target_detector != detector:
        reasons.append(
            f"The checkpoint is an mmdetection {detector}, the config builds a {target_detector}: "
            f"use a {MMDET_DETECTORS[detector]} config."
        )
    if model_variant and variant and variant != model_variant:
        reasons.append(
            f"The checkpoint's backbone is {variant}, the config's {model_variant}: use the "
            f"{variant} config (or set model.backbone.bottom_up.name={variant})."
        )
    elif variant is None:
        reasons.append(
            "The checkpoint's backbone matches no PVT-v2 variant's parameters exactly (a "
            "truncated or modified state dict?)."
        )
    target_classes = _target_classes(target_detector, target, len(perm))
    if target_detector == detector and target_classes != num_classes:
        key = "model.num_classes" if detector == "RetinaNet" else "model.roi_heads.num_classes"
        reasons.append(
            f"The checkpoint has {num_classes} classes, the config {target_classes}: convert "
            f"with {key}={num_classes} (fine-tuning on other classes then starts from that "
            "checkpoint and re-initialises only the class-specific layers)."
        )
    keys = {
        # (what, all of them, how many the message names): the checkpoint's tensors that find
        # no place in full; the model's side of a wrong variant would be hundreds of lines
        "checkpoint tensors with no place in the model": (unplaced, 40),
        "tensors the model does not have": (unexpected, 40),
        "model parameters the checkpoint does not fill": (missing, 8),
        "shape mismatches": (wrong, 8),
    }
    details = [f"{what}: {_few(ks, n)}" for what, (ks, n) in keys.items() if ks]
    raise MMDetCheckpointError(
        " ".join(reasons + ["Keys: " + "; ".join(details) + "."]),
        {what: ks for what, (ks, _) in keys.items()},
    )


def model_zoo_config_name(detector: str, variant: Optional[str]) -> str:
    """The COCO config of this project for an mmdetection detector and PVT-v2 variant."""
    from ..model_zoo import list_configs

    if variant is None:
        raise MMDetCheckpointError(
            "Cannot choose a config: the checkpoint's backbone matches no PVT-v2 variant. "
            "Give --config-file."
        )
    name = f"COCO/{MMDET_DETECTORS[detector]}_{variant}_fpn_{_SCHEDULE.get(detector, '1x')}.py"
    if name not in list_configs():
        same = [c for c in list_configs() if c.startswith(f"COCO/{MMDET_DETECTORS[detector]}_")]
        raise MMDetCheckpointError(
            f"There is no {name} in the model zoo for this {detector} with {variant}. Give "
            f"--config-file with one of {same} and model.backbone.bottom_up.name={variant}."
        )
    return name
