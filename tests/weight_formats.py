"""
Write PVT-v2 ImageNet checkpoints in each real key format, from a timm model, the way their
publishers do (no weights can be downloaded in tests).
"""

import re
from typing import Dict

import torch

Tensors = Dict[str, torch.Tensor]


def timm_to_official(sd: Tensors) -> Tensors:
    """timm native -> official PVT release keys (the inverse of timm's checkpoint_filter_fn)."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^patch_embed\.", "patch_embed1.", k)
        k = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"patch_embed{int(m[1]) + 1}.", k)
        k = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.{m[2]}.", k)
        k = re.sub(r"^stages\.(\d+)\.norm\.", lambda m: f"norm{int(m[1]) + 1}.", k)
        k = k.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        out[k] = v
    return out


def official_to_hf(sd: Tensors) -> Tensors:
    """official -> HF transformers PvtV2ForImageClassification (as HF's conversion script)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            out["classifier." + k[5:]] = v
            continue
        m = re.match(r"^patch_embed(\d+)\.(proj|norm)\.(.*)$", k)
        if m:
            part = "proj" if m[2] == "proj" else "layer_norm"
            out[f"pvt_v2.encoder.layers.{int(m[1]) - 1}.patch_embedding.{part}.{m[3]}"] = v
            continue
        m = re.match(r"^norm(\d+)\.(.*)$", k)
        if m:
            out[f"pvt_v2.encoder.layers.{int(m[1]) - 1}.layer_norm.{m[2]}"] = v
            continue
        m = re.match(r"^block(\d+)\.(\d+)\.(.*)$", k)
        assert m, k
        prefix = f"pvt_v2.encoder.layers.{int(m[1]) - 1}.blocks.{m[2]}."
        rest = m[3]
        if rest.startswith("attn.kv."):
            param = rest.split(".")[-1]
            half = v.shape[0] // 2
            out[prefix + f"attention.key.{param}"] = v[:half]
            out[prefix + f"attention.value.{param}"] = v[half:]
            continue
        for a, b in [
            ("attn.q.", "attention.query."),
            ("attn.proj.", "attention.proj."),
            ("attn.sr.", "attention.spatial_reduction."),
            ("attn.norm.", "attention.layer_norm."),
            ("norm1.", "layer_norm_1."),
            ("norm2.", "layer_norm_2."),
            ("mlp.fc1.", "mlp.dense1."),
            ("mlp.fc2.", "mlp.dense2."),
        ]:
            if rest.startswith(a):
                rest = b + rest[len(a) :]
                break
        out[prefix + rest] = v
    return out


def timm_to_features_only(sd: Tensors) -> Tensors:
    """timm features_only model state dict (stages.N -> stages_N, no head)."""
    return {
        re.sub(r"^stages\.(\d+)\.", r"stages_\1.", k): v
        for k, v in sd.items()
        if not k.startswith("head.")
    }
