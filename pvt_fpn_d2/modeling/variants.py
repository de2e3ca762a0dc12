"""
The PVT-v2 variants timm provides and what is known of them without weights: names, stage
names, output channels. Both the backbone and the weight loading depend on this table; it
depends on neither.
"""

from functools import lru_cache
from typing import Dict, Sequence

import timm
import torch
from torch import nn

__all__ = [
    "PVT_V2_VARIANTS",
    "STAGE_NAMES",
    "check_variant",
    "create_timm_model",
    "pvt_v2_out_channels",
    "pvt_v2_output_shape",
]

PVT_V2_VARIANTS = (
    "pvt_v2_b0",
    "pvt_v2_b1",
    "pvt_v2_b2",
    "pvt_v2_b2_li",
    "pvt_v2_b3",
    "pvt_v2_b4",
    "pvt_v2_b5",
)
# Output names follow detectron2's ResNet: res{k} has stride 2**k.
STAGE_NAMES = ("res2", "res3", "res4", "res5")


def check_variant(name: str) -> None:
    if name not in PVT_V2_VARIANTS:
        raise ValueError(
            f"Unknown PVT-v2 variant {name!r}. Valid names: {', '.join(PVT_V2_VARIANTS)}."
        )


def create_timm_model(name: str, **kwargs) -> nn.Module:
    check_variant(name)
    # num_classes=0: no classifier; pretrained weights are loaded by pvt_fpn_d2.modeling.weights.
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


@lru_cache(maxsize=None)
def _feature_info(name: str) -> Dict[str, Dict[str, int]]:
    # Built on the meta device: no memory, no weight init cost.
    with torch.device("meta"):
        model = create_timm_model(name)
    return {
        f: {"channels": info["num_chs"], "stride": info["reduction"]}
        for f, info in zip(STAGE_NAMES, model.feature_info)
    }


def pvt_v2_out_channels(name: str, feature: str = "res5") -> int:
    """Channels of a stage output, from timm's ``feature_info`` (for configs, e.g. P6 from C5)."""
    return _feature_info(name)[feature]["channels"]


def pvt_v2_output_shape(
    name: str, out_features: Sequence[str] = STAGE_NAMES
) -> Dict[str, Dict[str, int]]:
    """``{stage: {"channels": C, "stride": S}}`` of a variant, from timm's ``feature_info``: the
    ``input_shape`` of a head on the bottom-up network, for configs (e.g. UPerNet)."""
    info = _feature_info(name)
    unknown = [f for f in out_features if f not in info]
    if unknown:
        raise ValueError(f"Unknown stage(s) {unknown}; the stages are {list(STAGE_NAMES)}.")
    return {f: dict(info[f]) for f in out_features}
