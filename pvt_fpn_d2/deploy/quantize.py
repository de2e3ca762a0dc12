"""
Post-training int8 quantization of an exported ``model.onnx`` with ONNX Runtime's static
quantization (``onnxruntime.quantization.quantize_static``, QDQ format), calibrated on images of
the config's dataset.

What is quantized, and what stays in float32:

* int8: every ``Conv``, ``Gemm`` and ``MatMul`` whose weight is a constant of the model (the
  backbone's convolutions and linear layers, the FPN, the RPN / RetinaNet heads, the box and
  mask heads), weights per output channel, activations per tensor (uint8), calibrated by their
  min / max over the calibration images;
* float32: the attention's ``MatMul`` of two activations and its softmax (ONNX Runtime's
  ``MultiHeadAttention`` in the default file), layer norms, GELU, additions, RoIAlign, the box
  decoding and NMS, and the layers whose weight names contain one of ``keep_float`` (none by
  default).

Weights use 7 of their 8 bits (``reduce_range``): on x86 CPUs without VNNI the uint8 x int8
products of 8-bit weights can overflow ONNX Runtime's 16-bit intermediate sums; with 7 bits a
file quantized on one CPU is safe on any other.

The result is ``model_int8.onnx`` beside ``model.onnx``; ``export.json`` records it under
``"int8"`` (how it was made, the calibration images, the quantized layers and, when evaluated,
the AP of both files). ``OnnxPredictor("DIR/model_int8.onnx")`` and
``tools/predict.py --model DIR/model_int8.onnx`` run it like the fp32 file.
"""

import json
import logging
import os
import time
from collections import Counter
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T

from ..data.images import read_image
from .export import EXPORT_SPEC, INT8_FILE

__all__ = ["INT8_FILE", "QUANTIZED_OPS", "KEEP_FLOAT", "calibration_files", "quantize_int8",
           "quantized_layers"]  # fmt: skip

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
# weights (ONNX initializer names: the model's parameter names) whose layers stay float32; none
# by default: keeping the box regression outputs in float32 kept no more AP on the demo model
KEEP_FLOAT: Tuple[str, ...] = ()
DEFAULT_CALIBRATION_IMAGES = 300


def _dataset_names(names_cfg) -> List[str]:
    names = instantiate(names_cfg)  # registers a config's own dataset (dataset.* keys)
    return [names] if isinstance(names, str) else list(names)


def calibration_files(
    cfg, dataset: Optional[str] = None, num_images: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0
) -> List[str]:
    """The calibration images: ``num_images`` files of ``dataset`` (a registered name; default:
    the config's training dataset), a fixed random sample when it has more, all when fewer."""
    if num_images < 1:
        raise ValueError(f"The number of calibration images must be 1 or more, got {num_images}.")
    names = [dataset] if dataset else _dataset_names(cfg.dataloader.train.dataset.names)
    files: List[str] = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise KeyError(
                f"Calibration dataset {name!r} is not registered. Give a registered name "
                f"(--calibration-dataset) or the config's dataset.* keys."
            )
        files += [d["file_name"] for d in DatasetCatalog.get(name) if d.get("file_name")]
    if not files:
        raise ValueError(
            f"The calibration dataset {', '.join(names)} has no images: int8 quantization "
            f"needs a few hundred images like those the model will see. Point the config's "
            f"dataset at your images, or give --calibration-dataset NAME."
        )
    if len(files) > num_images:
        pick = np.random.default_rng(seed).choice(len(files), num_images, replace=False)
        files = [files[i] for i in sorted(pick)]
    return files


class _Calibration:
    """ONNX Runtime's ``CalibrationDataReader``: the images, resized like the test loader."""

    def __init__(self, files: Sequence[str], augmentations, channel_order: str, min_size: int):
        self.files = list(files)
        self.augmentations = T.AugmentationList(augmentations)
        self.channel_order = channel_order
        self.min_size = min_size
        self._it: Iterator[str] = iter(self.files)

    def image(self, path: str) -> np.ndarray:
        try:
            image = read_image(path, format=self.channel_order)
        except Exception as e:  # noqa: BLE001 - every unreadable file gets the same message
            raise ValueError(
                f"Calibration image {path} cannot be read ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}). Re-export or remove it "
                f"(python -m pvt_fpn_d2.check_dataset names every such file), or calibrate on "
                f"another dataset (--calibration-dataset)."
            ) from e
        aug = T.AugInput(image)
        self.augmentations(aug)
        x = np.ascontiguousarray(aug.image.transpose(2, 0, 1), dtype=np.float32)
        if min(x.shape[1:]) < self.min_size:
            raise ValueError(
                f"Calibration image {path} is {x.shape[1]}x{x.shape[2]} after the test resize; "
                f"the model needs at least {self.min_size} px. Remove it from the calibration set."
            )
        return x

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        path = next(self._it, None)
        return None if path is None else {"image": self.image(path)}

    def rewind(self) -> None:
        self._it = iter(self.files)


def _nodes_to_exclude(model, keep_float: Sequence[str]) -> List[str]:
    """Nodes of ``QUANTIZED_OPS`` left in float32: products of two activations (attention) and
    the layers whose weight name contains one of ``keep_float``."""
    constants = {i.name for i in model.graph.initializer}
    excluded = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        weights = [i for i in node.input[1:2] if i in constants]
        if not weights or any(k in weights[0] for k in keep_float):
            excluded.append(node.name)
    return excluded


def quantized_layers(path: str) -> Dict[str, int]:
    """How many nodes of each type in the ONNX file at ``path`` take an int8 weight (a
    ``DequantizeLinear`` of an int8 constant): what the quantizer turned to int8."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    int8 = {
        i.name
        for i in model.graph.initializer
        if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(i.dims) >= 1
    }
    dequantized = {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in int8
    }
    counts = Counter(
        n.op_type
        for n in model.graph.node
        if n.op_type in QUANTIZED_OPS and any(i in dequantized for i in n.input[1:2])
    )
    return dict(sorted(counts.items()))


def quantize_file(
    fp32: str,
    out: str,
    reader,
    keep_float: Sequence[str] = KEEP_FLOAT,
    sample: Optional[Callable[[], np.ndarray]] = None,
) -> None:
    """Quantize the ONNX file ``fp32`` into ``out`` (see the module docstring), calibrated on
    the images ``reader`` gives (an ONNX Runtime ``CalibrationDataReader``: ``get_next()``
    returns ``{"image": (3, h, w) float32}`` or None); ``out`` is then run once on ``sample()``.
    ``out`` is written only when all of it succeeded."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    excluded = _nodes_to_exclude(onnx.load(fp32, load_external_data=False), keep_float)
    tmp = out + ".tmp"
    try:
        quantize_static(
            fp32,
            tmp,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=excluded,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        if sample is not None:
            # the file must run here: an ONNX Runtime without int8 kernels for this CPU fails now
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(tmp, options, providers=["CPUExecutionProvider"])
            session.run(None, {"image": sample()})
    except ValueError:
        _remove(tmp)
        raise
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises several kinds
        _remove(tmp)
        raise RuntimeError(
            f"ONNX Runtime {ort.__version__} could not quantize or run {fp32} in int8 on this "
            f"CPU ({type(e).__name__}: {' '.join(str(e).split())[:300]}). Serve the fp32 "
            f"model.onnx, or quantize with another ONNX Runtime build."
        ) from e
    os.replace(tmp, out)


def quantize_int8(
    export_dir: str,
    cfg,
    dataset: Optional[str] = None,
    num_images: int = DEFAULT_CALIBRATION_IMAGES,
    keep_float: Sequence[str] = KEEP_FLOAT,
) -> Dict:
    """
    Write ``export_dir/model_int8.onnx``, the int8 version of ``export_dir/model.onnx``
    (:func:`pvt_fpn_d2.deploy.export_onnx`), calibrated on ``num_images`` images of
    ``dataset`` (default: the config's training dataset), and record it in ``export.json``.

    Returns:
        the ``"int8"`` entry of export.json.
    """
    import onnxruntime as ort

    spec_file = os.path.join(export_dir, EXPORT_SPEC)
    if not os.path.isfile(spec_file):
        raise FileNotFoundError(
            f"{spec_file} not found: export the model first (tools/export_model.py), then "
            f"quantize its folder."
        )
    with open(spec_file) as f:
        spec = json.load(f)
    fp32 = os.path.join(export_dir, spec["file"])
    files = calibration_files(cfg, dataset, num_images)
    reader = _Calibration(
        files,
        instantiate(cfg.dataloader.test.mapper.augmentations),
        spec["input"]["channel_order"],
        spec["input"]["min_size"],
    )
    first = reader.image(files[0])  # an unreadable first image is named before calibrating
    out = os.path.join(export_dir, INT8_FILE)
    t0 = time.perf_counter()
    logger.info(f"Calibrating {os.path.basename(fp32)} on {len(files)} images ...")
    quantize_file(fp32, out, reader, keep_float, sample=lambda: first)
    seconds = time.perf_counter() - t0
    layers = quantized_layers(out)
    entry = {
        "file": INT8_FILE,
        "precision": "int8 weights (per channel, 7 bits) and uint8 activations (per tensor), "
        "QDQ",
        "tool": f"onnxruntime.quantization.quantize_static, onnxruntime {ort.__version__}",
        "quantized": layers,
        "float32": "attention products and softmax, layer norms, GELU, additions, RoIAlign, "
        "box decoding, NMS" + (f", layers of {', '.join(keep_float)}" if keep_float else ""),
        "calibration": {
            "dataset": dataset or ", ".join(_dataset_names(cfg.dataloader.train.dataset.names)),
            "images": len(files),
            "method": "min-max",
            "resize": "like the config's test loader",
        },
        "seconds": round(seconds, 1),
    }
    spec["int8"] = entry
    _write_json(spec_file, spec)
    logger.info(
        f"int8 -> {out} ({os.path.getsize(out) / 2**20:.1f} MB, "
        f"{sum(layers.values())} layers in int8, {seconds:.0f} s)"
    )
    return entry


def record_ap(export_dir: str, results: Dict[str, Dict], dataset: str) -> None:
    """Add the AP of each file (``{"model.onnx": {"bbox": AP, ...}, ...}``) on ``dataset`` to
    export.json's ``"int8"`` entry."""
    spec_file = os.path.join(export_dir, EXPORT_SPEC)
    with open(spec_file) as f:
        spec = json.load(f)
    spec.setdefault("int8", {})["ap"] = {"dataset": dataset, **results}
    _write_json(spec_file, spec)


def _write_json(path: str, data: Dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)
