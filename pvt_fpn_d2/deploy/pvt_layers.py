"""
The export-time forms of timm's PVT-v2 attention and depthwise-conv MLP: the same computation
(equal outputs), written so that ONNX Runtime runs it fast.

timm's layers turn the (B, N, C) tokens into an NCHW map for each convolution with a 3-D
transpose and a reshape, and split the attention heads with more transposes; exported as they
are, 142 ``Transpose`` nodes take 16% of ONNX Runtime's time for PVT-v2-b2 at 800x1344 (eager
PyTorch gets these for free from channels-last memory). Here:

* tokens become maps as (B, H, W, C) -> NCHW and back (``reshape`` + a 4-D ``permute``), the
  pattern ONNX Runtime's NCHWc optimiser folds into the ``ReorderInput`` / ``ReorderOutput`` it
  puts around every convolution anyway: 4 ``Transpose`` nodes are left;
* with ``ops="onnxruntime"`` (the default of :func:`pvt_fpn_d2.deploy.export_onnx`) attention is
  one ``com.microsoft.MultiHeadAttention`` node on the (B, N, C) query and (B, L, C) key and
  value, ONNX Runtime's CPU flash-attention kernel (no head transposes, no N x L score matrix);
  with ``ops="standard"`` it is ``scaled_dot_product_attention``, exported as standard ONNX
  (MatMul, Softmax) that any runtime reads.

Measured on a 2-core Xeon, PVT-v2-b2 backbone at 800x1344, ONNX Runtime 1.31: timm's layers
1.20x eager PyTorch (opset 20), these 0.92x.
"""

import contextlib
import types
from typing import Iterator, List

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OPS", "MHA_DOMAIN", "export_forms", "ort_translations"]

OPS = ("onnxruntime", "standard")
MHA_DOMAIN = "com.microsoft"


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Attention of (B, N, C) queries over (B, L, C) keys and values, ``num_heads`` heads of
    C / num_heads channels, scale 1/sqrt(head size): ONNX Runtime's MultiHeadAttention."""
    b, n, c = q.shape

    def heads(t):
        return t.reshape(b, t.shape[1], num_heads, -1).transpose(1, 2)

    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
    return out.transpose(1, 2).reshape(b, n, c)


# the same function as one opaque op, which the ONNX export translates to MultiHeadAttention
_mha = torch.library.custom_op("pvt_fpn_d2::multi_head_attention", _attention, mutates_args=())


@_mha.register_fake
def _(q, k, v, num_heads):
    return torch.empty_like(q)


def _tokens_to_map(x: torch.Tensor, h, w) -> torch.Tensor:
    b, _, c = x.shape
    return x.reshape(b, h, w, c).permute(0, 3, 1, 2)


def _map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    b, c = x.shape[:2]
    return x.permute(0, 2, 3, 1).reshape(b, -1, c)


def _attention_forward(self, x: torch.Tensor, feat_size: List[int], fused: bool) -> torch.Tensor:
    """timm ``pvt_v2.Attention.forward`` in eval mode (spatial reduction, or average pooling for
    the linear variant), written as the module docstring says."""
    b, n, c = x.shape
    q = self.q(x)
    if self.pool is not None or self.sr is not None:
        y = _tokens_to_map(x, feat_size[0], feat_size[1])
        y = self.sr(self.pool(y)) if self.pool is not None else self.sr(y)
        y = self.norm(_map_to_tokens(y))
        x = self.act(y) if self.pool is not None else y
    kv = self.kv(x)
    k, v = kv[..., :c], kv[..., c:]
    if fused:
        out = torch.ops.pvt_fpn_d2.multi_head_attention(q, k, v, self.num_heads)
    else:
        out = _attention(q, k, v, self.num_heads)  # plain torch ops
    return self.proj(out)


def _mlp_forward(self, x: torch.Tensor, feat_size: List[int]) -> torch.Tensor:
    """timm ``pvt_v2.MlpWithDepthwiseConv.forward`` in eval mode, written as the module
    docstring says."""
    x = self.fc1(x)
    y = self.dwconv(self.relu(_tokens_to_map(x, feat_size[0], feat_size[1])))
    return self.fc2(self.act(_map_to_tokens(y)))


@contextlib.contextmanager
def export_forms(model: nn.Module, ops: str = "onnxruntime") -> Iterator[int]:
    """Within the block, every timm PVT-v2 attention and MLP module of ``model`` runs its
    export-time form (see the module docstring); yields how many modules it changed. Eval mode
    only: dropout and drop-path are not in these forms."""
    if ops not in OPS:
        raise ValueError(f"ops must be one of {OPS}, got {ops!r}.")
    from timm.models import pvt_v2

    changed = []
    for m in model.modules():
        if isinstance(m, pvt_v2.Attention):
            m.forward = types.MethodType(
                lambda self, x, fs: _attention_forward(self, x, fs, ops == "onnxruntime"), m
            )
        elif isinstance(m, pvt_v2.MlpWithDepthwiseConv):
            m.forward = types.MethodType(_mlp_forward, m)
        else:
            continue
        changed.append(m)
    try:
        yield len(changed)
    finally:
        for m in changed:
            del m.forward


def _register_mha_schema() -> None:
    """The ONNX exporter builds nodes from registered operator schemas; ONNX Runtime's
    contrib operators are not in onnx's registry, so MultiHeadAttention's (the inputs and the
    attribute used here) is added once."""
    import onnx  # the [deploy] extra; importing this module does not need it

    try:
        onnx.defs.get_schema("MultiHeadAttention", 1, MHA_DOMAIN)
        return
    except onnx.defs.SchemaError:
        pass
    schema = onnx.defs.OpSchema(
        "MultiHeadAttention",
        MHA_DOMAIN,
        1,
        inputs=[onnx.defs.OpSchema.FormalParameter(n, "T") for n in ("query", "key", "value")],
        outputs=[onnx.defs.OpSchema.FormalParameter("output", "T")],
        type_constraints=[("T", ["tensor(float)"], "float tensors")],
        attributes=[
            onnx.defs.OpSchema.Attribute(
                "num_heads", onnx.defs.OpSchema.AttrType.INT, "number of attention heads"
            )
        ],
    )
    onnx.defs.register_schema(schema)


def ort_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: the attention op above as
    ONNX Runtime's ``com.microsoft.MultiHeadAttention``."""
    import onnxscript

    _register_mha_schema()
    msft = onnxscript.values.Opset(MHA_DOMAIN, 1)

    def multi_head_attention(q, k, v, num_heads: int):
        return msft.MultiHeadAttention(q, k, v, num_heads=num_heads)

    return {torch.ops.pvt_fpn_d2.multi_head_attention.default: multi_head_attention}
