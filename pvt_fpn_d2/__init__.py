"""PVT-v2 backbones with FPN for Detectron2."""

__version__ = "0.1.0"
