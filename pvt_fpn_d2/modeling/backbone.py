"""PVT-v2 (timm) as a Detectron2 backbone, plus the FPN builders for yacs configs."""

import logging
from typing import Dict, List, Optional, Sequence

import torch
from timm.models.pvt_v2 import Attention, OverlapPatchEmbed
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from .fused import fuse_mlp_gelu, tracing
from .retinanet import LastLevelP6P7NoReLU
from .variants import (
    PVT_V2_VARIANTS,
    STAGE_NAMES,
    create_timm_model,
    pvt_v2_out_channels,
)
from .weights import load_pvt_v2_weights

__all__ = [
    "PVT_V2_VARIANTS",
    "PVTv2Backbone",
    "pvt_v2_out_channels",
    "build_pvt_v2_backbone",
    "build_pvt_v2_fpn_backbone",
    "build_pvt_v2_retinanet_fpn_backbone",
]

logger = logging.getLogger(__name__)

_STAGE_NAMES = STAGE_NAMES
# Stage 1's spatial-reduction conv (kernel 8) runs on the stride-4 map.
MIN_INPUT_SIZE = 32


class PVTv2Backbone(Backbone):
    """
    A timm ``pvt_v2_*`` model as a detectron2 :class:`Backbone`.

    The four stages are exposed as ``res2``..``res5`` (strides 4, 8, 16, 32); their channels
    and strides come from timm's ``feature_info``. Stages after the last requested output and
    the classifier are dropped, so unused parameters neither cost memory nor break DDP.
    """

    def __init__(
        self,
        name: str = "pvt_v2_b2",
        out_features: Sequence[str] = _STAGE_NAMES,
        drop_path_rate: float = 0.1,
        freeze_at: int = 0,
        use_act_checkpoint: bool = False,
        weights: str = "",
        in_chans: int = 3,
        channels_last: Optional[bool] = None,
        patch_and_sr_norm_eps: Optional[float] = None,
        fuse_gelu: bool = True,
    ):
        """
        Args:
            name: timm model name, one of :data:`PVT_V2_VARIANTS`.
            out_features: stage outputs to return, a subset of ``res2``..``res5``, in order.
            drop_path_rate: stochastic depth rate (0.1 in the official detection recipes).
            freeze_at: freeze the first stages like detectron2's ResNet: 0 trains everything,
                1 freezes the patch embedding ("stem"), k >= 2 also freezes res2..res{k}.
                Frozen parts run in eval mode (no stochastic depth).
            use_act_checkpoint: recompute each transformer block in the backward pass
                (activation checkpointing) to cut training memory.
            weights: ImageNet checkpoint to load: a local file in the official PVT, timm or
                Hugging Face format (see :mod:`pvt_fpn_d2.modeling.weights`),
                ``"timm://<name>"`` for timm's weights from the Hugging Face hub, or ``""`` for
                random initialisation.
            in_chans: number of input channels.
            channels_last: store the convolution weights in channels-last memory format. timm's
                blocks give their depthwise (MLP) and spatial-reduction (attention) convolutions
                token-major, i.e. channels-last, views of the tokens; with NCHW weights PyTorch
                copies every such input to NCHW first, and on the CPU these copies take about as
                long as the rest of the network. With channels-last weights the convolutions run
                on the views directly: ~2x faster on the CPU (see tools/benchmark.py), outputs
                equal up to float rounding (~1e-5). ``None`` (default): channels-last while the
                weights are on the CPU, the default layout on other devices (re-decided by
                every ``.to(device)``); ``True`` / ``False`` fix the layout. In inference,
                channels-last also returns channels-last feature maps, for the FPN and heads.
            patch_and_sr_norm_eps: epsilon of the LayerNorms in the patch embeddings and in the
                attention's spatial reduction. None keeps timm's 1e-5, which is the official
                PVT-v2 code's; mmdetection's own ``PyramidVisionTransformerV2`` uses 1e-6 there,
                so its checkpoints (converted by tools/convert_mmdet_checkpoint.py) compute
                mmdetection's numbers with 1e-6.
            fuse_gelu: in fp32 CPU inference, run each MLP's depthwise convolution and the GELU
                after it as one oneDNN kernel (:mod:`pvt_fpn_d2.modeling.fused`): the same
                parameters, outputs equal to ~1e-6, b2 about 10% faster on the CPU. Training,
                autocast, GPUs and export always run the two ops.
        """
        super().__init__()
        out_features = list(out_features)
        unknown = [f for f in out_features if f not in _STAGE_NAMES]
        if unknown or not out_features:
            raise ValueError(
                f"out_features must be a non-empty subset of {list(_STAGE_NAMES)}, "
                f"got {out_features}."
            )
        if out_features != sorted(out_features, key=_STAGE_NAMES.index):
            raise ValueError(f"out_features must be ordered by stride, got {out_features}.")
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"freeze_at must be in [0, 5], got {freeze_at}.")

        self.name = name
        self.model = create_timm_model(name, drop_path_rate=drop_path_rate, in_chans=in_chans)
        self._out_indices = [_STAGE_NAMES.index(f) for f in out_features]
        self.model.prune_intermediate_layers(self._out_indices, prune_head=True)
        if patch_and_sr_norm_eps is not None:
            for m in self.model.modules():
                if isinstance(m, (OverlapPatchEmbed, Attention)) and m.norm is not None:
                    m.norm.eps = patch_and_sr_norm_eps
        if use_act_checkpoint:
            self.model.set_grad_checkpointing(True)
        self.fused_mlps = fuse_mlp_gelu(self.model) if fuse_gelu else 0

        info = self.model.feature_info
        self._out_features = out_features
        self._out_feature_channels = {f: info[i]["num_chs"] for f, i in self._stage_items()}
        self._out_feature_strides = {f: info[i]["reduction"] for f, i in self._stage_items()}

        self._frozen: List[nn.Module] = []
        self.freeze(freeze_at)
        if weights:
            load_pvt_v2_weights(self, weights)
        # loading and .to(device) keep a parameter's memory format
        self._channels_last_setting = channels_last
        self.channels_last = False
        self._apply_layout()

    def _apply_layout(self) -> None:
        """Put the weights in the memory format that ``channels_last`` asks for on their device."""
        wanted = self._channels_last_setting
        if wanted is None:  # auto: channels-last on the CPU
            wanted = next(self.model.parameters()).device.type == "cpu"
        if wanted != self.channels_last:
            fmt = torch.channels_last if wanted else torch.contiguous_format
            self.model.to(memory_format=fmt)
            self.channels_last = wanted

    def _apply(self, fn, recurse=True):
        # .to(device) / .cuda() / .float() pass through here: re-decide the automatic layout
        super()._apply(fn, recurse)
        if self._channels_last_setting is None and hasattr(self, "channels_last"):
            self._apply_layout()
        return self

    def _stage_items(self):
        return zip(self._out_features, self._out_indices)

    def freeze(self, freeze_at: int = 0) -> "PVTv2Backbone":
        """Freeze the patch embedding (``freeze_at >= 1``) and stages res2..res{freeze_at}."""
        modules = [self.model.patch_embed] if freeze_at >= 1 else []
        modules += list(self.model.stages)[: max(freeze_at - 1, 0)]
        for m in modules:
            for p in m.parameters():
                p.requires_grad_(False)
        self._frozen = modules
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> "PVTv2Backbone":
        super().train(mode)
        for m in self._frozen:
            m.eval()
        return self

    @property
    def size_divisibility(self) -> int:
        return 32

    @property
    def padding_constraints(self) -> Dict[str, int]:
        # Read by upstream detectron2's ImageList.from_tensors; v0.6 ignores it.
        return {"size_divisibility": self.size_divisibility}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: Tensor of shape (N, C, H, W), H and W >= 32.

        Returns:
            dict[str -> Tensor]: ``res{k}`` -> feature map of shape (N, C_k, ~H/2**k, ~W/2**k),
            for the names in ``out_features``.
        """
        if x.dim() != 4:
            raise ValueError(
                f"PVTv2Backbone takes a (N, C, H, W) tensor, got shape {tuple(x.shape)}."
            )
        h, w = x.shape[-2:]
        if not torch.jit.is_tracing() and (h < MIN_INPUT_SIZE or w < MIN_INPUT_SIZE):
            raise ValueError(
                f"PVTv2Backbone needs inputs of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, "
                f"got {h}x{w}: the first stage's spatial-reduction conv needs an 8x8 map at "
                f"stride 4. Resize or pad the image (detectron2's models pad to "
                f"size_divisibility={self.size_divisibility} themselves)."
            )
        feats = self.model.forward_intermediates(
            x, indices=self._out_indices, intermediates_only=True, stop_early=True
        )
        if self.channels_last and not torch.is_grad_enabled() and not tracing():
            # inference: timm returns NCHW copies of its (N, H, W, C) tokens; the FPN and the
            # heads run faster on channels-last maps (b2 Mask R-CNN backbone + FPN: 0.93x the
            # time), as they get them from detectron2's ResNet in the channels-last layout.
            # Training keeps timm's maps: the same steps as before, bit for bit.
            feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
        return dict(zip(self._out_features, feats))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(
                channels=self._out_feature_channels[f], stride=self._out_feature_strides[f]
            )
            for f in self._out_features
        }


# ---------------------------------------------------------------------------------------------
# yacs configs: cfg.MODEL.BACKBONE.NAME = "build_pvt_v2_fpn_backbone" (see config.py)
# ---------------------------------------------------------------------------------------------


@BACKBONE_REGISTRY.register()
def build_pvt_v2_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> PVTv2Backbone:
    """PVT-v2 alone, from ``cfg.MODEL.PVT`` (see :func:`pvt_fpn_d2.add_pvt_v2_config`)."""
    c = cfg.MODEL.PVT
    return PVTv2Backbone(
        name=c.NAME,
        out_features=c.OUT_FEATURES,
        drop_path_rate=c.DROP_PATH_RATE,
        freeze_at=c.FREEZE_AT,
        use_act_checkpoint=c.USE_ACT_CHECKPOINT,
        weights=c.WEIGHTS,
        in_chans=input_shape.channels if input_shape is not None else 3,
        channels_last=c.CHANNELS_LAST,
        patch_and_sr_norm_eps=c.PATCH_AND_SR_NORM_EPS,
        fuse_gelu=c.FUSE_GELU,
    )


@BACKBONE_REGISTRY.register()
def build_pvt_v2_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """PVT-v2 + FPN with outputs p2-p6, like detectron2's ``build_resnet_fpn_backbone``."""
    bottom_up = build_pvt_v2_backbone(cfg, input_shape)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_pvt_v2_retinanet_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """
    PVT-v2 + FPN with outputs p3-p7 as in the official (mmdetection) RetinaNet: P6 is computed
    from C5, P7 from P6 without a ReLU in between (:class:`LastLevelP6P7NoReLU`).
    """
    bottom_up = build_pvt_v2_backbone(cfg, input_shape)
    in_channels_p6p7 = bottom_up.output_shape()["res5"].channels
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7NoReLU(
            in_channels_p6p7, cfg.MODEL.FPN.OUT_CHANNELS, in_feature="res5"
        ),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
