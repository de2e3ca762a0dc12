"""
Semantic segmentation on the PVT-v2 FPN, with detectron2's own ``SemanticSegmentor``.

* :class:`FPNConcatSemSegHead`: the seed design's head. Every FPN level is upsampled to the
  finest one (P2, stride 4), the levels are concatenated along channels, one 3x3 conv predicts
  per-pixel class logits, and the logits are upsampled bilinearly to the input size. Trained with
  cross-entropy (an ignore label is skipped) or, for one-class masks, with binary cross-entropy
  on a single logit. Registered in detectron2's ``SEM_SEG_HEADS_REGISTRY``.
* :func:`register_sem_seg_folder`: registers a folder of images and label PNGs (detectron2's
  ``sem_seg_file_name`` format) for training and for detectron2's ``SemSegEvaluator``, from a
  config.

detectron2's Semantic FPN head (``SemSegFPNHead``, the head of the PVT papers' ADE20K results) is
used as it is; see ``configs/SemSeg/``.
"""

import functools
import logging
import os
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from detectron2.config import CfgNode, configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

__all__ = [
    "SEM_SEG_LOSS_TYPES",
    "FPNConcatSemSegHead",
    "add_pvt_v2_sem_seg_config",
    "register_sem_seg_folder",
]

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
        if in_features is None:
            in_features = list(shapes)
        in_features = list(in_features)
        missing = [f for f in in_features if f not in shapes]
        if not in_features or missing:
            raise ValueError(
                f"in_features must be a non-empty subset of the input features {list(shapes)}, "
                f"got {in_features} (missing: {missing})."
            )
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


def add_pvt_v2_sem_seg_config(cfg: CfgNode) -> CfgNode:
    """
    Add ``cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE`` to a detectron2 yacs config, for
    ``MODEL.SEM_SEG_HEAD.NAME: "FPNConcatSemSegHead"`` with ``MODEL.META_ARCHITECTURE:
    "SemanticSegmentor"`` and ``MODEL.BACKBONE.NAME: "build_pvt_v2_fpn_backbone"``.
    """
    # "cross_entropy", or "binary_cross_entropy" for one-class masks (NUM_CLASSES: 2)
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"
    return cfg


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _strip_dot(ext: str) -> str:
    return ext[1:] if ext.startswith(".") else ext


def _stems(folder: str, ext: str) -> List[str]:
    suffix = "." + ext
    return sorted(f[: -len(suffix)] for f in os.listdir(folder) if f.endswith(suffix))


def _check_label_file(name: str, path: str, num_classes: int, ignore_label: int) -> None:
    """Check one label PNG: single-channel class indices (what DatasetMapper and the evaluator
    read alike) within ``[0, num_classes)`` or ``ignore_label``."""
    with Image.open(path) as im:
        mode = im.mode
        if mode != "L":
            # DatasetMapper reads labels with convert("L"): a palette or RGB PNG would turn into
            # luminance values, while SemSegEvaluator reads the raw palette indices.
            raise ValueError(
                f"Dataset {name!r}: label file {path!r} has PIL mode {mode!r}; label PNGs must "
                f"be single-channel 8-bit (mode 'L') images of class indices. Convert them, e.g. "
                f"Image.fromarray(np.asarray(Image.open(p)).astype(np.uint8)).save(p) for "
                f"palette PNGs."
            )
        values = np.unique(np.asarray(im))
    bad = [int(v) for v in values if v >= num_classes and v != ignore_label]
    if bad:
        raise ValueError(
            f"Dataset {name!r}: label file {path!r} has values {bad}, outside the "
            f"{num_classes} classes (0..{num_classes - 1}) and ignore_label={ignore_label}."
        )


def register_sem_seg_folder(
    name: str,
    image_root: str,
    label_root: str,
    classes: Sequence[str],
    ignore_label: int = 255,
    image_ext: str = "jpg",
    label_ext: str = "png",
) -> str:
    """
    Register a semantic segmentation dataset stored as a folder of images and a folder of label
    PNGs with the same file names (``image_root/x.jpg`` <-> ``label_root/x.png``), and return its
    name, so a config can write ``names=L(register_sem_seg_folder)(name=..., ...)``.

    A label PNG is a single-channel uint8 image whose pixel values are class indices into
    ``classes`` (0 is usually the background) or ``ignore_label``: detectron2's
    ``sem_seg_file_name`` format, read by ``DatasetMapper`` and ``SemSegEvaluator``. The files
    are listed with detectron2's ``load_sem_seg``, and the metadata (``stuff_classes``,
    ``ignore_label``, ``evaluator_type="sem_seg"``, ``image_root``, ``sem_seg_root``) is what
    detectron2's ``SemSegEvaluator`` and ``Visualizer`` read.

    Registering the same name again with the same arguments does nothing; with other arguments
    it is an error.

    Args:
        name: dataset name, e.g. ``"my_sem_seg_train"``.
        image_root: folder of the images.
        label_root: folder of the label PNGs.
        classes: class names, index k = label value k.
        ignore_label: label value of pixels that are not evaluated nor trained on.
        image_ext, label_ext: file extensions (with or without the dot).

    Returns:
        str: ``name``.

    Raises:
        FileNotFoundError: a folder does not exist, or holds no image / no label file.
        ValueError: images without a label file, a label PNG that is not single-channel or has
            values outside the classes (the first label file is checked), no classes, or the
            name already registered with other arguments.
    """
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError(f"Dataset {name!r}: classes is empty; give the class names.")
    image_ext, label_ext = _strip_dot(image_ext), _strip_dot(label_ext)
    image_root, label_root = str(image_root), str(label_root)
    metadata = dict(
        stuff_classes=classes,
        ignore_label=int(ignore_label),
        evaluator_type="sem_seg",
        image_root=image_root,
        sem_seg_root=label_root,
        image_ext=image_ext,
        sem_seg_ext=label_ext,
    )
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        registered = {k: meta.get(k) for k in metadata}
        if registered == metadata:
            return name
        diff = {k: (registered[k], v) for k, v in metadata.items() if registered[k] != v}
        raise ValueError(
            f"Dataset name {name!r} is already registered with other arguments "
            f"(registered, requested): {diff}. Use another name."
        )

    for kind, folder in (("image", image_root), ("label", label_root)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Dataset {name!r}: {kind} folder {folder!r} does not exist.")
    images = _stems(image_root, image_ext)
    if not images:
        raise FileNotFoundError(f"Dataset {name!r}: no *.{image_ext} images in {image_root!r}.")
    labels = _stems(label_root, label_ext)
    if not labels:
        raise FileNotFoundError(
            f"Dataset {name!r}: no *.{label_ext} label files in {label_root!r}."
        )
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        examples = ", ".join(f"{s}.{image_ext}" for s in unlabelled[:5])
        raise ValueError(
            f"Dataset {name!r}: {len(unlabelled)} of {len(images)} images in {image_root!r} have "
            f"no label file in {label_root!r} (expected the same name with .{label_ext}), e.g. "
            f"{examples}."
        )
    unused = len(set(labels) - set(images))
    if unused:
        logger.warning(f"Dataset {name!r}: {unused} label files in {label_root!r} have no image.")
    _check_label_file(
        name, os.path.join(label_root, f"{images[0]}.{label_ext}"), len(classes), ignore_label
    )

    if name in MetadataCatalog.list():  # metadata left behind by a removed dataset
        MetadataCatalog.remove(name)
    DatasetCatalog.register(
        name,
        functools.partial(
            load_sem_seg, label_root, image_root, gt_ext=label_ext, image_ext=image_ext
        ),
    )
    MetadataCatalog.get(name).set(**metadata)
    logger.info(
        f"Registered dataset {name!r}: {len(images)} images in {image_root!r}, labels in "
        f"{label_root!r}, {len(classes)} classes {classes}"
    )
    return name
