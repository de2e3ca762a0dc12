"""
CPU inference speed-up of timm's PVT-v2 blocks: the MLP's depthwise convolution and the GELU
after it as one oneDNN convolution with a GELU post-op.

In timm's ``MlpWithDepthwiseConv`` (``fc1 -> dwconv -> GELU -> fc2``) the GELU on the widest
activations of the network costs as much as the convolution before it (b2 at 800x1344, 2 CPU
threads: GELU 20% of the backbone's time); fused, the pair takes 60% of its time, outputs equal
to float rounding (~1e-6). The fused kernel is PyTorch's own
(``torch.ops.mkldnn._convolution_pointwise``, what ``torch.compile`` emits for this pattern on
CPUs); it has no backward pass, so training, autocast, other devices and export run the plain
convolution and timm's GELU.
"""

import torch
from torch import nn

__all__ = ["DepthwiseConvGELU", "GELUUnlessFused", "fusable", "fuse_mlp_gelu", "tracing"]


def _fused_kernel():
    ops = getattr(torch.ops, "mkldnn", None)
    if ops is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        return ops._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def tracing() -> bool:
    """Whether the model runs under torch.export, torch.compile, TorchScript or jit tracing."""
    compiler = getattr(torch, "compiler", None)
    for name in ("is_exporting", "is_compiling"):
        check = getattr(compiler, name, None)
        if check is not None and check():
            return True
    return torch.jit.is_tracing() or torch.jit.is_scripting()


_KERNEL = _fused_kernel()


def fusable(x: torch.Tensor) -> bool:
    """Whether the fused kernel runs for ``x``: fp32 CPU inference, not traced or exported."""
    return (
        _KERNEL is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not _autocast_on()
        and not tracing()
    )


class DepthwiseConvGELU(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (same parameters and state-dict keys) that also applies the
    GELU after it where :func:`fusable`, as one oneDNN kernel; elsewhere the convolution alone,
    and :class:`GELUUnlessFused` applies the GELU where timm does, so that training and export
    see timm's graph unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fusable(x):
            return _KERNEL(
                x, self.weight, self.bias, list(self.padding), list(self.stride),
                list(self.dilation), self.groups, "gelu", [], "none",
            )  # fmt: skip
        return super().forward(x)


class GELUUnlessFused(nn.GELU):
    """timm's GELU, skipped where :class:`DepthwiseConvGELU` has applied it (the same
    :func:`fusable` conditions hold for the convolution's output)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if fusable(x) else super().forward(x)


def fuse_mlp_gelu(model: nn.Module) -> int:
    """Give every timm ``MlpWithDepthwiseConv`` of ``model`` whose activation is the exact GELU a
    :class:`DepthwiseConvGELU` and a :class:`GELUUnlessFused` (GELU is elementwise: before or
    after the MLP's reshape alike). Returns how many were changed."""
    from timm.models.pvt_v2 import MlpWithDepthwiseConv

    changed = 0
    for mlp in model.modules():
        if not isinstance(mlp, MlpWithDepthwiseConv):
            continue
        act, conv = mlp.act, mlp.dwconv
        if not (isinstance(act, nn.GELU) and act.approximate == "none"):
            continue
        if (
            type(conv) is not nn.Conv2d
            or isinstance(conv.padding, str)
            or conv.padding_mode != "zeros"
        ):
            continue
        # skip_init: no random initialisation, so the random number stream (the weights of
        # every module built after the backbone) is the one timm's model alone leaves
        fused = torch.nn.utils.skip_init(
            DepthwiseConvGELU, conv.in_channels, conv.out_channels, conv.kernel_size,
            conv.stride, conv.padding, conv.dilation, conv.groups, conv.bias is not None,
            conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
        )  # fmt: skip
        fused.load_state_dict(conv.state_dict())
        mlp.dwconv, mlp.act = fused, GELUUnlessFused()
        changed += 1
    return changed
