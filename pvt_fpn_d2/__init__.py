"""
PVT-v2 backbones with FPN for Detectron2.

The public names below load on first use (PEP 562), together with everything that registers
into detectron2's registries (the backbones, the mask head), so that an entry point can import
:mod:`pvt_fpn_d2.cli` and install its warning filters before detectron2 is imported.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "PVT_V2_VARIANTS": "modeling",
    "PVTv2Backbone": "modeling",
    "build_pvt_v2_backbone": "modeling",
    "build_pvt_v2_fpn_backbone": "modeling",
    "build_pvt_v2_retinanet_fpn_backbone": "modeling",
    "pvt_v2_out_channels": "modeling",
    "PartialMaskRCNNConvUpsampleHead": "modeling",
    "FPNConcatSemSegHead": "modeling",
    "UPerNetHead": "modeling",
    "ImageClassifier": "modeling",
    "DepthEstimator": "modeling",
    "load_pvt_v2_weights": "modeling",
    "PVTCheckpointer": "engine",
    "convert_mmdet_checkpoint": "engine",
    "add_pvt_v2_config": "config",
    "add_pvt_v2_sem_seg_config": "config",
    "build_optimizer": "config",
    "COCOEvaluator": "evaluation",
    "register_coco_json": "data",
    "register_sem_seg_folder": "data",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pvt_fpn_d2' has no attribute {name!r}")
    # the first public name loads all of them: the registrations come with any of them
    for module in sorted(set(_EXPORTS.values())):
        importlib.import_module(f".{module}", __name__)
    for export, module in _EXPORTS.items():
        globals()[export] = getattr(importlib.import_module(f".{module}", __name__), export)
    return globals()[name]


def __dir__():
    return sorted(list(globals()) + __all__)
