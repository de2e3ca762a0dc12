"""
The exported model against the eager one: ``pvt_fpn_d2.deploy.export_onnx``'s ``model.onnx`` run
by ONNX Runtime (and by OpenVINO where it is installed) against detectron2's eager model on the
same weights and the same image, all at the same thread count, timed alternately.

Sides (each at its best known CPU settings):

* ``eager``: the detectron2 model as it runs in ``DefaultPredictor`` (PVT-v2 channels-last on
  the CPU, the default) without the final resize to the original image and the mask pasting,
  which run after every side alike (R-CNNs: ``model.inference(..., do_postprocess=False)``);
* ``eager_graph``: ``pvt_fpn_d2.deploy.export_graph(model)`` run eagerly: what the exporter
  traced, in PyTorch (it isolates what the export itself changes);
* ``onnxruntime``: the file (``export_onnx``'s default, PVT-v2 attention as ONNX Runtime's
  ``MultiHeadAttention``), CPU provider, all graph optimisations, ``intra_op_num_threads`` = the
  torch thread count;
* ``onnxruntime_std`` (when the benchmark exports itself): the ``ops="standard"`` file, standard
  ONNX operators only, in ONNX Runtime alike;
* ``onnxruntime_int8``: the default file quantized to int8 by
  ``pvt_fpn_d2.deploy.quantize.quantize_file`` (ONNX Runtime, QDQ; ``tools/export_model.py
  --quantize int8``), calibrated on 4 noise images here (random weights), or the folder's
  ``model_int8.onnx``; its output differences are the cost of int8, its AP is measured by
  ``tools/evaluate_exported.py``;
* ``openvino`` (only when ``import openvino`` works): the standard file compiled for its CPU
  plugin, f32 precision and the same thread count;
* ``openvino_bf16`` (where OpenVINO reports bf16 for the CPU): the same at bf16 precision, its
  default on such CPUs; its output differences are the cost of that precision.

Random weights at the config's own score thresholds: what a deployed model runs (random
weights detect nothing at 0.05, so the mask head idles; the parity of the heads is what
``tests/test_deploy.py`` checks). ``model.roi_heads.box_predictor.test_score_thresh=0.0`` gives
the heads their full load, and per-class NMS 80,000 candidate boxes, which ONNX Runtime's
single-threaded ``NonMaxSuppression`` spends most of the time on. The report gives each side's
latency, the ratios to eager and the largest differences of the outputs (boxes matched one to
one).
"""

import os
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

from .measure import latency_stats, time_alternating
from .models import build_model, load_model_config
from .settings import ModelSpec


def _match(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Greedy one-to-one matching of b's detections to a's (same class, nearest box): the worst
    box and score differences and how many of a's detections found no partner."""
    ba, bb = a["boxes"], b["boxes"]
    out = {"detections": [int(len(ba)), int(len(bb))]}
    if len(ba) == 0 or len(bb) == 0:
        return out
    cost = np.abs(ba[:, None] - bb[None]).max(-1)
    cost[a["classes"][:, None] != b["classes"][None]] = np.inf
    used, box, score, unmatched = set(), 0.0, 0.0, 0
    for i in np.argsort(cost.min(1)):
        order = [j for j in np.argsort(cost[i]) if j not in used and np.isfinite(cost[i, j])]
        if not order:
            unmatched += 1
            continue
        j = order[0]
        used.add(j)
        box = max(box, float(cost[i, j]))
        score = max(score, float(abs(a["scores"][i] - b["scores"][j])))
    out.update(max_box_diff_px=box, max_score_diff=score, unmatched=unmatched)
    return out


class _NoiseImages:
    """``n`` noise images of ``h`` x ``w``: the calibration set of the random-weight int8 side."""

    def __init__(self, h: int, w: int, n: int):
        self.images = [
            np.random.default_rng(i).integers(0, 256, (3, h, w)).astype(np.float32)
            for i in range(n)
        ]
        self.rewind()

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter({"image": x} for x in self.images)


def _outputs(names, values) -> Dict[str, np.ndarray]:
    return {n: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for n, v in zip(names, values)}


def _eager_outputs(model, image) -> List[Any]:
    """The eager model's detections as the graph's first outputs: boxes, scores, classes."""
    inputs = [{"image": image}]
    if hasattr(model, "roi_heads"):  # R-CNNs: without pasting the masks into the image
        inst = model.inference(inputs, do_postprocess=False)[0]
    else:  # RetinaNet: its postprocess at the input's own size only clips the boxes
        inst = model(inputs)[0]["instances"]
    return [inst.pred_boxes.tensor, inst.scores, inst.pred_classes]


def _ort_profile(
    onnx_file: str, image: np.ndarray, threads: int, top: int, folder: str
) -> List[Dict]:
    """ONNX Runtime's own profile of one run: the ``top`` operator types by total time."""
    import json

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(folder, "ort_profile")
    session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
    session.run(None, {"image": image})
    session.run(None, {"image": image})  # the second run is the profiled steady state
    with open(session.end_profiling()) as f:
        trace = json.load(f)
    runs = [e for e in trace if e.get("name") == "model_run"]
    start = runs[-1]["ts"] if runs else 0
    per_op: Dict[str, float] = {}
    for e in trace:
        if (
            e.get("cat") == "Node"
            and e.get("ts", 0) >= start
            and e["name"].endswith("_kernel_time")
        ):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1000.0
    total = sum(per_op.values()) or 1.0
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])[:top]
    return [{"op": k, "ms": v, "share": v / total} for k, v in ranked]


def run_export_benchmark(
    spec: ModelSpec,
    image_size,
    iters: int,
    warmup: int,
    threads: int,
    seed: int,
    profile: int = 0,
    export_dir: str = "",
) -> Dict[str, Any]:
    """Latency of the eager model, its export graph, ONNX Runtime and OpenVINO (see the module
    docstring); figures in ms, ratios to eager, output differences, export time.

    With ``export_dir`` (a folder of ``tools/export_model.py``), that file is measured against
    the eager model of the config and checkpoint saved beside it; ``spec`` is not used."""
    import json

    import onnxruntime as ort
    import torch
    from detectron2.config import LazyConfig, instantiate

    from pvt_fpn_d2.deploy import export_graph, export_onnx, graph_outputs, load_checkpoint_strict
    from pvt_fpn_d2.deploy.quantize import INT8_FILE, quantize_file

    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    if export_dir:
        with open(os.path.join(export_dir, "export.json")) as f:
            saved = json.load(f)
        if not saved.get("checkpoint"):
            raise ValueError(
                f"{export_dir}/export.json names no checkpoint: the eager side cannot have the "
                "exported weights. Export with --checkpoint to measure it against eager."
            )
        cfg = LazyConfig.load(os.path.join(export_dir, saved["config"]))
        model = instantiate(cfg.model).eval()
        load_checkpoint_strict(model, saved["checkpoint"])
        label = f"{export_dir} ({saved['meta_architecture']})"
    else:
        cfg = load_model_config(spec, "export")  # the config's own score thresholds
        model = build_model(spec, "export", "cpu", seed).eval()
        label = spec.label
    graph = export_graph(model)
    names = graph_outputs(model)
    if names[0] != "boxes":
        raise ValueError(f"--task export measures detectors; {label} is a {type(model).__name__}.")
    rng = np.random.default_rng(seed)
    h, w = image_size
    image = torch.from_numpy(rng.integers(0, 256, (3, h, w)).astype(np.float32))

    with tempfile.TemporaryDirectory() as tmp:
        files = {}  # side name -> ONNX file
        if export_dir:
            export_s = None
            files["onnxruntime"] = os.path.join(export_dir, saved["file"])
            if os.path.isfile(os.path.join(export_dir, INT8_FILE)):  # --quantize int8
                files["onnxruntime_int8"] = os.path.join(export_dir, INT8_FILE)
        else:
            checkpoint = os.path.join(tmp, "model.pth")
            torch.save({"model": model.state_dict()}, checkpoint)  # calibrated statistics too
            t0 = time.perf_counter()
            export_onnx(cfg, os.path.join(tmp, "export"), checkpoint=checkpoint)
            export_s = time.perf_counter() - t0
            files["onnxruntime"] = os.path.join(tmp, "export", "model.onnx")
            export_onnx(cfg, os.path.join(tmp, "std"), checkpoint=checkpoint, ops="standard")
            files["onnxruntime_std"] = os.path.join(tmp, "std", "model.onnx")
            # int8 of the default file, calibrated on noise images of the benchmark's size
            # (random weights: the ranges matter for the AP, not for the time)
            files["onnxruntime_int8"] = os.path.join(tmp, "export", INT8_FILE)
            t0 = time.perf_counter()
            quantize_file(files["onnxruntime"], files["onnxruntime_int8"], _NoiseImages(h, w, 4))
            quantize_s = time.perf_counter() - t0
        onnx_file = files["onnxruntime"]
        x = image.numpy()
        sides = {
            "eager": lambda: _eager_outputs(model, image),
            "eager_graph": lambda: graph(image),
        }
        for side, path in files.items():
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            sides[side] = lambda s=session: s.run(None, {"image": x})
        openvino = None
        try:
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(
                files.get("onnxruntime_std", onnx_file),  # OpenVINO reads standard operators
                "CPU",
                {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"},
            )
            request = compiled.create_infer_request()
            sides["openvino"] = lambda: list(request.infer({0: x}).values())
            openvino = ov.__version__
            if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):  # AMX, AVX512-BF16
                bf16 = core.compile_model(
                    files.get("onnxruntime_std", onnx_file),
                    "CPU",
                    {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "bf16"},
                ).create_infer_request()
                sides["openvino_bf16"] = lambda: list(bf16.infer({0: x}).values())
        except ImportError:
            pass
        except Exception as e:  # noqa: BLE001 - reported: OpenVINO could not run the file
            openvino = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"

        with torch.no_grad():
            outputs = {k: _outputs(names, fn()) for k, fn in sides.items()}
            times = time_alternating(list(sides.values()), iters, warmup, lambda: None)
        with tempfile.TemporaryDirectory() as prof:
            ops = _ort_profile(onnx_file, x, threads, profile, prof) if profile else []
        size_mb = os.path.getsize(onnx_file) / 2**20

    stats = {k: latency_stats(t, 1) for k, t in zip(sides, times)}
    eager = np.asarray(times[0])
    result = {
        "model": label,
        "image_size": [h, w],
        "threads": threads,
        "iters": iters,
        "warmup": warmup,
        "export_s": export_s,
        "quantize_s": None if export_dir else quantize_s,
        "onnx_mb": size_mb,
        "onnxruntime": ort.__version__,
        "openvino": openvino,
        "sides": {},
        "ort_profile": ops,
    }
    for k, t in zip(sides, times):
        t = np.asarray(t)
        result["sides"][k] = {
            "median_ms": stats[k]["latency_ms"]["median"],
            "min_ms": stats[k]["latency_ms"]["min"],
            "ratio_to_eager": float(np.median(t / eager)),
            "vs_eager": _match(outputs["eager"], outputs[k]),
        }
    return result


def format_export_report(results: List[Dict[str, Any]]) -> List[str]:
    lines = []
    for r in results:
        lines.append(
            f"{r['model']}: {r['image_size'][0]}x{r['image_size'][1]}, {r['threads']} threads, "
            f"{r['iters']} alternated iterations after {r['warmup']}; "
            + (f"export {r['export_s']:.0f} s, " if r["export_s"] is not None else "")
            + (f"int8 {r['quantize_s']:.0f} s, " if r.get("quantize_s") is not None else "")
            + f"model.onnx {r['onnx_mb']:.0f} MB; onnxruntime {r['onnxruntime']}, openvino "
            f"{r['openvino'] or 'not installed'}"
        )
        lines.append(
            f"  {'side':<16}{'median ms':>11}{'min ms':>9}{'x eager':>9}{'dets':>10}"
            f"{'box diff px':>13}{'score diff':>12}{'unmatched':>11}"
        )
        for k, s in r["sides"].items():
            m = s["vs_eager"]
            lines.append(
                f"  {k:<16}{s['median_ms']:>11.0f}{s['min_ms']:>9.0f}{s['ratio_to_eager']:>8.2f}x"
                f"{'/'.join(map(str, m['detections'])):>10}"
                f"{m.get('max_box_diff_px', float('nan')):>13.2e}"
                f"{m.get('max_score_diff', float('nan')):>12.2e}{m.get('unmatched', '-'):>11}"
            )
        if r["ort_profile"]:
            lines.append("  ONNX Runtime's time by operator type (one run):")
            for op in r["ort_profile"]:
                lines.append(f"    {op['op']:<28}{op['ms']:>9.1f} ms{100 * op['share']:>6.1f}%")
    return lines
