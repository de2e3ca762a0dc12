"""
Loading PVT-v2 ImageNet weights in every format users download.

* official release ``.pth`` (github.com/whai362/PVT): ``patch_embed1.*``, ``block1.0.*``,
  ``norm1.*``, ``head.*``;
* timm native (``timm/pvt_v2_*.in1k`` on the HF hub, ``.safetensors`` or ``.pth``):
  ``patch_embed.*``, ``stages.N.*`` (``stages_N.*`` from a ``features_only`` model);
* Hugging Face transformers ``PvtV2`` (``OpenGVLab/pvt_v2_*``):
  ``pvt_v2.encoder.layers.N.*`` with ``key``/``value`` split.

Everything is mapped to timm's native keys, which :class:`PVTv2Backbone` uses under
``model.``. Files are read with ``torch.load(weights_only=True)`` or safetensors: no code in a
downloaded file runs.
"""

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from timm.models.pvt_v2 import checkpoint_filter_fn

from .variants import PVT_V2_VARIANTS, check_variant, create_timm_model

__all__ = [
    "UnsafeCheckpointError",
    "WeightsSummary",
    "read_checkpoint",
    "check_pickle_is_safe",
    "extract_state_dict",
    "detect_format",
    "to_timm_state_dict",
    "to_detectron2_state_dict",
    "guess_variant",
    "fetch_timm_hub_weights",
    "load_pvt_v2_weights",
]

logger = logging.getLogger(__name__)

# Prefix of the timm model inside a detectron2 PVT-v2 + FPN model.
D2_BACKBONE_PREFIX = "backbone.bottom_up.model."
# Opting in to unpickling arbitrary objects (only for files whose source you trust).
TRUST_PICKLE_ENV = "PVT_FPN_D2_TRUST_PICKLE"


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds pickled Python objects, which could run code when loaded."""


def _trust_pickle(trust_pickle: Optional[bool]) -> bool:
    if trust_pickle is not None:
        return trust_pickle
    return os.environ.get(TRUST_PICKLE_ENV, "0") == "1"


def read_checkpoint(path: str, trust_pickle: Optional[bool] = None) -> Any:
    """
    Read a checkpoint file safely: safetensors, or ``torch.load(weights_only=True)``, which
    only rebuilds tensors and plain containers.

    Args:
        path: a ``.safetensors`` file or a torch checkpoint.
        trust_pickle: allow arbitrary pickled objects (runs code from the file!). Default:
            the environment variable ``PVT_FPN_D2_TRUST_PICKLE=1``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Checkpoint file {path!r} does not exist.")
    with open(p, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header size, then a JSON header
    looks_safetensors = (
        len(head) == 9
        and head[8:9] == b"{"
        and int.from_bytes(head[:8], "little") < p.stat().st_size
    )
    if p.suffix == ".safetensors" or looks_safetensors:
        from safetensors.torch import load_file

        return load_file(str(p), device="cpu")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not _trust_pickle(trust_pickle):
            raise UnsafeCheckpointError(
                f"Refusing to load {path}: it contains pickled Python objects that are not "
                "tensors, and unpickling them could run code from the file. Convert it to "
                "safetensors or a plain state dict on a trusted machine, or, if you trust its "
                f"source, set {TRUST_PICKLE_ENV}=1. (torch said: {str(e).splitlines()[0]})"
            ) from None
        logger.warning(f"Loading {path} with full unpickling ({TRUST_PICKLE_ENV}=1).")
        return torch.load(p, map_location="cpu", weights_only=False)


# What Detectron / detectron2 model-zoo pickles (numpy arrays in dicts) need, and no more.
_SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")


def check_pickle_is_safe(path: str, trust_pickle: Optional[bool] = None) -> None:
    """
    Refuse a ``.pkl`` checkpoint that holds anything but numpy arrays in plain containers
    (what Detectron/detectron2 model-zoo pickles contain), unless trusted explicitly.
    """
    if _trust_pickle(trust_pickle):
        return
    try:
        with open(path, "rb") as f:
            _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"Refusing to load {path}: it is a pickle with objects other than numpy arrays "
            f"({e}), and unpickling them could run code from the file. If you trust its "
            f"source, set {TRUST_PICKLE_ENV}=1."
        ) from None


def extract_state_dict(obj: Any) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint (raw, or under "model" / "state_dict" / "module")."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "module"):
            if isinstance(obj.get(key), dict):
                return extract_state_dict(obj[key])
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ValueError(
        "No state dict found in the checkpoint: expected a dict of tensors, or one under "
        f"'model', 'state_dict' or 'module'; got {type(obj).__name__}."
    )


def detect_format(sd: Dict[str, torch.Tensor]) -> str:
    """One of "official", "timm", "hf", "detectron2"; raises for anything else."""
    keys = list(sd)
    if any(k.startswith(D2_BACKBONE_PREFIX) for k in keys):
        return "detectron2"
    if any(re.match(r"^(.*\.)?encoder\.layers\.\d+\.patch_embedding\.", k) for k in keys):
        return "hf"
    if any(k.startswith(("patch_embed1.", "block1.")) for k in keys):
        return "official"
    if any(k.startswith(("stages.0.", "stages_0.")) for k in keys):
        return "timm"
    raise ValueError(
        "Not a PVT-v2 checkpoint in a known format (official PVT, timm, Hugging Face PvtV2 or "
        f"pvt_fpn_d2/detectron2). First keys: {keys[:5]}"
    )


_HF_RENAMES = (
    # (HF pattern after "encoder.", official replacement)
    (r"^layers\.(\d+)\.patch_embedding\.proj\.", lambda m: f"patch_embed{int(m[1]) + 1}.proj."),
    (
        r"^layers\.(\d+)\.patch_embedding\.layer_norm\.",
        lambda m: f"patch_embed{int(m[1]) + 1}.norm.",
    ),
    (r"^layers\.(\d+)\.layer_norm\.", lambda m: f"norm{int(m[1]) + 1}."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.{m[2]}."),
)
_HF_BLOCK_RENAMES = {
    "attention.query.": "attn.q.",
    "attention.proj.": "attn.proj.",
    "attention.spatial_reduction.": "attn.sr.",
    "attention.layer_norm.": "attn.norm.",
    "layer_norm_1.": "norm1.",
    "layer_norm_2.": "norm2.",
    "mlp.dense1.": "mlp.fc1.",
    "mlp.dense2.": "mlp.fc2.",
}


def _hf_to_official(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out, kv = {}, {}
    for k, v in sd.items():
        if k.startswith("classifier."):
            out["head." + k[len("classifier.") :]] = v
            continue
        k = re.sub(r"^(.*\.)?encoder\.", "", k)
        for pattern, repl in _HF_RENAMES:
            k = re.sub(pattern, repl, k)
        for a, b in _HF_BLOCK_RENAMES.items():
            k = k.replace(a, b)
        m = re.match(r"^(block\d+\.\d+\.)attention\.(key|value)\.(weight|bias)$", k)
        if m:  # HF splits the official fused kv projection into key and value
            kv.setdefault((m[1], m[3]), {})[m[2]] = v
            continue
        out[k] = v
    for (block, param), parts in kv.items():
        if set(parts) != {"key", "value"}:
            raise ValueError(f"HF checkpoint has {block}attention.{list(parts)} without its pair.")
        out[f"{block}attn.kv.{param}"] = torch.cat([parts["key"], parts["value"]], dim=0)
    return out


def to_timm_state_dict(sd: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
    """
    Map a PVT-v2 ImageNet state dict in any supported format to timm's native keys.

    Returns:
        (state dict with timm keys, the detected source format)
    """
    fmt = detect_format(sd)
    if fmt == "hf":
        sd = checkpoint_filter_fn(_hf_to_official(sd), None)
    elif fmt == "official":
        sd = checkpoint_filter_fn(sd, None)
    elif fmt == "timm":
        sd = {re.sub(r"^stages_(\d+)\.", r"stages.\1.", k): v for k, v in sd.items()}
    else:
        sd = {
            k[len(D2_BACKBONE_PREFIX) :]: v
            for k, v in sd.items()
            if k.startswith(D2_BACKBONE_PREFIX)
        }
    return sd, fmt


def to_detectron2_state_dict(
    sd: Dict[str, torch.Tensor], prefix: str = D2_BACKBONE_PREFIX
) -> Dict[str, torch.Tensor]:
    """ImageNet weights (any format) keyed for a detectron2 PVT-v2 + FPN model; no classifier."""
    timm_sd, _ = to_timm_state_dict(sd)
    return {prefix + k: v for k, v in timm_sd.items() if not k.startswith("head.")}


def guess_variant(timm_sd: Dict[str, torch.Tensor]) -> Optional[str]:
    """The PVT-v2 variant whose parameters have exactly these names and shapes, if any."""

    shapes = {k: tuple(v.shape) for k, v in timm_sd.items() if not k.startswith("head.")}
    for name in PVT_V2_VARIANTS:
        with torch.device("meta"):
            ref = create_timm_model(name).state_dict()
        if shapes == {k: tuple(v.shape) for k, v in ref.items()}:
            return name
    return None


@dataclass
class WeightsSummary:
    source: str
    format: str
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatches: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        def few(keys):
            return f" ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" if keys else ""

        return (
            f"PVT-v2 weights from {self.source} ({self.format} format): "
            f"{len(self.matched)} matched, {len(self.missing)} missing{few(self.missing)}, "
            f"{len(self.unexpected)} unexpected{few(self.unexpected)}, "
            f"{len(self.shape_mismatches)} shape mismatches{few(self.shape_mismatches)}"
        )


TIMM_HUB_PREFIX = "timm://"


def fetch_timm_hub_weights(name: str) -> str:
    """
    Download (or find in the Hugging Face cache) timm's ImageNet weights of a PVT-v2 variant.

    Returns:
        the local path of the ``model.safetensors`` file.
    """
    import timm
    from huggingface_hub import hf_hub_download

    check_variant(name)
    hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
    try:
        return hf_hub_download(repo_id=hub_id, filename="model.safetensors")
    except Exception as e:  # offline, unreachable hub, missing cache: many exception types
        raise RuntimeError(
            f"Could not get the ImageNet weights of {name} from the Hugging Face hub "
            f"({hub_id}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n"
            f"On a machine with internet, download "
            f"https://huggingface.co/{hub_id}/resolve/main/model.safetensors (or the official "
            f"{name}.pth from https://github.com/whai362/PVT/releases), copy it here and point "
            "train.init_checkpoint (LazyConfig) or MODEL.WEIGHTS (yacs) at that file. "
            "Official, timm and Hugging Face files all load."
        ) from e


def load_pvt_v2_weights(backbone, path: str, trust_pickle: Optional[bool] = None) -> WeightsSummary:
    """
    Load ImageNet weights into a :class:`PVTv2Backbone`, strictly: every backbone parameter
    must be matched with the right shape, otherwise a ValueError says what is wrong. The
    classifier and stages the backbone does not use are reported as unexpected and skipped.

    Args:
        backbone: the PVTv2Backbone.
        path: a checkpoint file in any supported format, or ``timm://<variant>`` for timm's
            weights on the Hugging Face hub.
    """
    local = path
    if path.startswith(TIMM_HUB_PREFIX):
        local = fetch_timm_hub_weights(path[len(TIMM_HUB_PREFIX) :])
    sd, fmt = to_timm_state_dict(extract_state_dict(read_checkpoint(local, trust_pickle)))
    own = backbone.model.state_dict()
    summary = WeightsSummary(source=path, format=fmt)
    for k, v in sd.items():
        if k not in own:
            summary.unexpected.append(k)
        elif tuple(v.shape) != tuple(own[k].shape):
            summary.shape_mismatches.append(f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}")
        else:
            summary.matched.append(k)
    summary.missing = [k for k in own if k not in sd]
    logger.info(str(summary))
    if summary.missing or summary.shape_mismatches:
        found = guess_variant(sd)
        hint = (
            f" The checkpoint is {found}, the model is {backbone.name}: set the backbone name "
            "to match the weights."
            if found and found != backbone.name
            else ""
        )
        raise ValueError(f"{summary}. Every backbone parameter must be loaded.{hint}")
    backbone.model.load_state_dict({k: sd[k] for k in summary.matched}, strict=True)
    return summary
