"""Export to ONNX (``torch.export``-based exporter), int8 quantization, and serving and
evaluation with ONNX Runtime."""

from .export import EXPORT_SPEC, export_onnx, load_checkpoint_strict
from .graphs import export_graph, graph_outputs
from .onnx_predictor import OnnxPredictor
from .quantize import quantize_int8

__all__ = [
    "EXPORT_SPEC",
    "OnnxPredictor",
    "export_graph",
    "export_onnx",
    "graph_outputs",
    "load_checkpoint_strict",
    "quantize_int8",
]
