"""
A stand-in for mmcv's compiled extension ``mmcv._ext``, for the parity tests only.

mmcv-lite ships ``mmcv.ops`` without ``mmcv._ext``; importing ``mmcv.ops`` (which mmdetection
does) looks every kernel name up in it. mmdetection's Mask R-CNN and RetinaNet call two of them
at inference: ``nms`` and ``roi_align_forward``. They are provided here from torchvision, whose
kernels compute the same thing (mmcv's RoIAlign with ``aligned=True`` is detectron2's, which is
torchvision's; mmcv's nms with ``offset=0`` is torchvision's). Any other kernel raises
NotImplementedError naming itself, so a test can never pass through a kernel that is not there.

:func:`install` puts the module into ``sys.modules`` as ``mmcv._ext``; nothing in the library
imports mmcv.
"""

import sys
import types

import torch
import torchvision

__all__ = ["install"]


def nms(bboxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0):
    """mmcv's ``ext_module.nms``: indices kept, by decreasing score."""
    if offset != 0:
        raise NotImplementedError(f"mmcv nms stand-in: offset={offset} (only 0, mmcv 2.x's)")
    return torchvision.ops.nms(bboxes, scores, float(iou_threshold))


def roi_align_forward(
    input: torch.Tensor,
    rois: torch.Tensor,
    output: torch.Tensor,
    argmax_y: torch.Tensor,
    argmax_x: torch.Tensor,
    *,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    """mmcv's ``ext_module.roi_align_forward``: writes the pooled features into ``output``."""
    if pool_mode != 1:
        raise NotImplementedError("mmcv roi_align stand-in: only pool_mode='avg'")
    output.copy_(
        torchvision.ops.roi_align(
            input, rois, (aligned_height, aligned_width), spatial_scale, sampling_ratio, aligned
        )
    )


def _missing(name: str):
    if name.startswith("__"):  # module attributes (__file__, __path__, ...) stay absent
        raise AttributeError(name)

    def kernel(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv._ext.{name} is not provided by the test stand-in (tests/mmcv_ext_standin.py)"
        )

    return kernel


def install() -> types.ModuleType:
    """Register the stand-in as ``mmcv._ext`` (once) and return it."""
    if "mmcv._ext" in sys.modules:
        return sys.modules["mmcv._ext"]
    module = types.ModuleType("mmcv._ext", __doc__)
    module.nms = nms
    module.roi_align_forward = roi_align_forward
    module.__getattr__ = _missing  # PEP 562: every other kernel name exists and refuses to run
    sys.modules["mmcv._ext"] = module
    return module
