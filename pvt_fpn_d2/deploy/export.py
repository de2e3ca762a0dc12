"""
Export a model built from a LazyConfig to ONNX with PyTorch's ``torch.export``-based exporter
(``torch.onnx.export(..., dynamo=True)``): ``model.onnx`` with a dynamic height and width,
``export.json`` (what the graph takes and gives, and what runs outside it) and the config.
"""

import json
import logging
import os
import sysconfig
import traceback
from typing import Dict, List, Optional

import numpy as np
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from ..data.images import read_image
from .graphs import export_graph, graph_outputs, graph_translations
from .pvt_layers import OPS, export_forms, ort_translations

__all__ = ["export_onnx", "load_checkpoint_strict", "EXPORT_SPEC", "OPSET"]

logger = logging.getLogger(__name__)

EXPORT_SPEC = "export.json"
INT8_FILE = "model_int8.onnx"  # pvt_fpn_d2.deploy.quantize
OPSET = 20  # the first with Gelu, which ONNX Runtime runs as one kernel
MIN_SIZE = 32  # the backbone's smallest input (PVTv2Backbone)

_OUTSIDE = {
    "instances": [
        "resize the image like the config's test loader (the 'resize' augmentations)",
        "boxes scaled to the original image size and clipped (detector_postprocess)",
        "masks pasted into the original image and thresholded at 0.5 (detector_postprocess)",
    ],
    "sem_seg": [
        "resize the image like the config's test loader (the 'resize' augmentations)",
        "class scores resized to the original image size, bilinear (sem_seg_postprocess)",
    ],
    "classification": ["resize the image like the config's test loader"],
    "depth": [
        "resize the image like the config's test loader",
        "depth resized to the original image size, bilinear",
    ],
}


def _task(outputs) -> str:
    if outputs[0] == "boxes":
        return "instances"
    return {"sem_seg": "sem_seg", "scores": "classification", "depth": "depth"}[outputs[0]]


def load_checkpoint_strict(model: torch.nn.Module, path: str) -> None:
    """Load a detectron2 checkpoint (``{"model": state_dict}``, as train_net.py writes) into
    ``model``; every parameter must be there with its shape, and nothing else, or a ValueError
    says which keys differ (a checkpoint of another model is refused before any export)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path!r} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"Cannot read {path!r} as a PyTorch checkpoint of tensors ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]})."
        ) from e
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} holds no state dict (a dict of tensors under 'model').")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state
        and hasattr(state[k], "shape")
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:

        def head(keys):
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

        raise ValueError(
            f"{path!r} is not a checkpoint of this config's model "
            f"({type(model).__name__}): "
            + "; ".join(
                part
                for part in (
                    f"missing {head(missing)}" if missing else "",
                    f"unexpected {head(unexpected)}" if unexpected else "",
                    f"other shapes {head(shapes)}" if shapes else "",
                )
                if part
            )
            + ". Export the config the checkpoint was trained with (and its overrides)."
        )
    model.load_state_dict(state)


def _sample_image(cfg, sample_image: Optional[str], image_format: str) -> torch.Tensor:
    """The example input of the export: a file resized like the test loader, or noise."""
    if sample_image:
        image = read_image(sample_image, format=image_format)
        aug = T.AugInput(image)
        instantiate(cfg.dataloader.test.mapper).augmentations(aug)
        image = aug.image
    else:
        image = np.random.default_rng(0).integers(0, 256, (320, 416, 3)).astype(np.uint8)
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


def _smallest_input(exported) -> int:
    """The smallest height / width the exported graph is valid for (its input's shape
    guards)."""
    name = exported.graph_signature.user_inputs[0]
    node = next(n for n in exported.graph.nodes if n.op == "placeholder" and n.name == name)
    low = MIN_SIZE
    for d in node.meta["val"].shape[1:]:
        if isinstance(d, torch.SymInt):
            low = max(low, int(exported.range_constraints[d.node.expr].lower))
    return low


def _failing_frame(error: Exception) -> Optional[traceback.FrameSummary]:
    """The deepest frame of model code (not torch, onnxscript or the standard library) in the
    innermost exception of ``error``'s chain: where the export failed."""
    stdlib = sysconfig.get_paths()["stdlib"].replace(os.sep, "/")
    chain: List[BaseException] = []
    e: Optional[BaseException] = error
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for exc in reversed(chain):
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            f = frame.filename.replace(os.sep, "/")
            skip = ("/torch/" in f or "/onnxscript/" in f or f.startswith((stdlib, "<"))
                    or f.endswith("deploy/export.py"))  # fmt: skip
            if not skip:
                return frame
    return None


def _exporter_error(model, error: Exception) -> RuntimeError:
    """Where the export failed and the exporter's message."""
    frame = _failing_frame(error)
    where = f" in {frame.filename}:{frame.lineno} ({frame.name})" if frame else ""
    message = " ".join(str(error).split())[:1500]
    return RuntimeError(f"ONNX export of {type(model).__name__} failed{where}: {message}")


def export_onnx(
    cfg,
    output_dir: str,
    checkpoint: str = "",
    sample_image: Optional[str] = None,
    config_file: str = "",
    ops: str = "onnxruntime",
) -> Dict:
    """
    Export ``cfg.model`` (with ``checkpoint``'s weights, or random ones) to
    ``output_dir/model.onnx`` and write ``output_dir/export.json`` and ``config.yaml``.

    ``ops="onnxruntime"`` writes PVT-v2's attention as ONNX Runtime's
    ``com.microsoft.MultiHeadAttention`` (faster there); ``"standard"`` only standard ONNX
    operators, for other runtimes (OpenVINO, TensorRT). See :mod:`pvt_fpn_d2.deploy.pvt_layers`.

    Returns:
        the contents of export.json.
    """
    if ops not in OPS:
        raise ValueError(f"ops must be one of {', '.join(OPS)}, got {ops!r}.")
    model = instantiate(cfg.model).eval()
    if checkpoint:
        load_checkpoint_strict(model, checkpoint)
    graph = export_graph(model)  # TypeError for what cannot be exported
    names = graph_outputs(model)
    mapper = instantiate(cfg.dataloader.test.mapper)
    image = _sample_image(cfg, sample_image, mapper.image_format)
    dynamic = ({1: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC},)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "model.onnx")
    try:
        with torch.no_grad(), export_forms(model, ops):
            # torch.export first, so that a graph it cannot capture is an error here, not a
            # fallback of the ONNX exporter to a trace that fixes data-dependent values
            exported = torch.export.export(graph, (image,), dynamic_shapes=dynamic, strict=False)
        with torch.no_grad():
            program = torch.onnx.export(
                exported,
                (image,),
                dynamo=True,
                input_names=["image"],
                output_names=list(names),
                opset_version=OPSET,
                custom_translation_table={
                    **graph_translations(),
                    **(ort_translations() if ops == "onnxruntime" else {}),
                },
                verbose=False,
            )
    except Exception as e:  # the exporters raise several kinds; all are reported alike
        raise _exporter_error(model, e) from e
    program.save(path)
    min_size = _smallest_input(exported)
    stale = os.path.join(output_dir, INT8_FILE)
    if os.path.isfile(stale):  # quantized from an earlier model.onnx; its entry goes too
        os.remove(stale)
        logger.info(f"Removed {stale}, the int8 file of the earlier export into this folder.")

    metadata = MetadataCatalog.get(instantiate(cfg.dataloader.test.dataset.names))
    task = _task(names)
    classes = list(
        metadata.get("thing_classes", None)
        or metadata.get("stuff_classes", None)
        or metadata.get("classes", None)
        or []
    )
    LazyConfig.save(cfg, os.path.join(output_dir, "config.yaml"))
    spec = {
        "format": "onnx",
        "file": "model.onnx",
        "opset": OPSET,
        "ops": ops,
        "runs_on": (
            "ONNX Runtime (com.microsoft.MultiHeadAttention)"
            if ops == "onnxruntime"
            else "any ONNX runtime (standard operators only)"
        ),
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "config": "config.yaml",
        "config_file": config_file,
        "checkpoint": os.path.abspath(checkpoint) if checkpoint else "",
        "meta_architecture": type(model).__name__,
        "task": task,
        "classes": classes,
        "input": {
            "name": "image",
            "shape": [3, "height", "width"],
            "dtype": "float32",
            "channel_order": mapper.image_format,
            "values": "0-255, resized like the test loader, not normalised (the graph subtracts "
            f"pixel_mean {model.pixel_mean.flatten().tolist()} and divides by pixel_std "
            f"{model.pixel_std.flatten().tolist()}, and pads to a multiple of 32)",
            "min_size": min_size,
        },
        "outputs": list(names),
        "outside_the_graph": _OUTSIDE[task],
    }
    if task == "depth":
        spec["depth_scale"] = float(metadata.get("depth_scale", 1000.0))
        spec["max_depth"] = float(model.max_depth)
    with open(os.path.join(output_dir, EXPORT_SPEC), "w") as f:
        json.dump(spec, f, indent=2)
    logger.info(f"{type(model).__name__} -> {path} ({os.path.getsize(path) / 2**20:.1f} MB)")
    return spec
