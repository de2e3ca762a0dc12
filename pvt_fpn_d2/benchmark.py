"""
Benchmarks: latency, throughput, peak memory and FLOPs of backbones and detectors, and the speed
of the fast COCO evaluation. The command line is ``tools/benchmark.py``.

Tasks:

* ``backbone``: ``model.backbone.bottom_up`` alone (PVT-v2 or detectron2's ResNet) in eval mode on
  a (B, 3, H, W) tensor padded to a multiple of 32. With ``vs_timm`` the :class:`PVTv2Backbone`
  wrapper is timed against timm's patch embedding and stages called one by one, same weights.
* ``inference``: the whole model in eval mode on a list of B images, with a per-component
  breakdown (bottom-up, FPN, proposal generator, ROI heads, other) from forward hooks.
* ``train``: one training step (forward, backward, AdamW step) on synthetic targets; the losses of
  the first step are recorded, so runs with and without activation checkpointing can be checked
  for equal losses.
* ``eval``: pycocotools' COCOeval against faster-coco-eval's (:class:`~pvt_fpn_d2.evaluation.
  FasterCOCOeval`, what :class:`~pvt_fpn_d2.evaluation.COCOEvaluator` uses) on a synthetic set.

Measurements of models run in child processes, forked from a fork server that has imported the
libraries and run nothing else. One *timing* child holds every compared model and runs them
alternately, iteration by iteration (A B B A A B ...), so that a noisy machine slows both alike and
the per-iteration ratios stay meaningful; one *memory* child per model then runs just that model,
so models do not pollute each other's peak memory. Models are built with random weights: nothing
is downloaded (detectron2's ResNet gets batch-norm statistics from a random input, see
:func:`calibrate_frozen_batchnorm`).
"""

import contextlib
import ctypes
import io
import json
import logging
import math
import multiprocessing
import os
import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "R50_FPN",
    "TASKS",
    "ModelSpec",
    "BenchmarkSettings",
    "run_benchmark",
    "run_eval_benchmark",
    "synthetic_coco_eval_data",
    "format_report",
    "environment_info",
    "attention_modules",
]

logger = logging.getLogger(__name__)

#: special config name: detectron2's own Mask R-CNN R50-FPN (``common/models/mask_rcnn_fpn.py``)
R50_FPN = "detectron2:R50-FPN"
TASKS = ("backbone", "inference", "train", "eval")
# per task: (iterations, warm-up iterations) when not given
DEFAULT_ITERS = {"backbone": (10, 2), "inference": (10, 2), "train": (5, 1), "eval": (1, 0)}
# a training image gets this many random boxes + masks when not given (eval: instances per image)
DEFAULT_INSTANCES = {"train": 5, "eval": 20}
# glibc mallopt(M_MMAP_THRESHOLD, 64 KiB), see _return_freed_memory_to_the_system
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 65536


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """One model to measure: a LazyConfig file (or :data:`R50_FPN`) and its overrides."""

    config: str
    opts: List[str] = field(default_factory=list)
    act_checkpoint: bool = False
    label: str = ""

    def __post_init__(self):
        if not self.label:
            self.label = _config_label(self.config)


@dataclass
class BenchmarkSettings:
    """What to measure and how (the options of ``tools/benchmark.py``)."""

    task: str
    device: str = "cpu"
    amp: str = ""  # "", "fp16" or "bf16"
    image_size: Tuple[int, int] = (800, 1333)
    batch_size: int = 1
    iters: int = 10
    warmup: int = 2
    threads: int = 0  # 0: torch's default
    seed: int = 0
    instances: int = 5  # train: instances per image
    flops: bool = True
    profile: int = 0  # print the N most expensive operators (torch.profiler), 0: no profile
    memory_iters: int = 2
    vs_timm: bool = False

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.amp not in ("", "fp16", "bf16"):
            raise ValueError(f"amp must be 'fp16', 'bf16' or empty, got {self.amp!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        h, w = (int(v) for v in self.image_size)
        if min(h, w) < 32:
            raise ValueError(f"image size must be at least 32x32, got {h}x{w}")
        self.image_size = (h, w)
        for name in ("batch_size", "iters", "memory_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.threads < 0:
            raise ValueError("warmup and threads must be >= 0")


def _config_label(config: str) -> str:
    if config == R50_FPN:
        return config
    return os.path.splitext(os.path.basename(config))[0]


def padded_size(image_size: Sequence[int], divisor: int = 32) -> Tuple[int, int]:
    """``image_size`` rounded up to a multiple of ``divisor`` (detectron2's padding)."""
    return tuple(-(-int(s) // divisor) * divisor for s in image_size)


# ---------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(device: str = "cpu") -> Dict[str, Any]:
    """Versions, threads, CPU/GPU model and load: what a reader needs to judge the figures."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    for name in ("timm", "detectron2", "fvcore"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - reporting only
            info[name] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


# ---------------------------------------------------------------------------------------------
# models and inputs (child process side)
# ---------------------------------------------------------------------------------------------


def load_model_config(spec: ModelSpec, task: str):
    """The LazyConfig of ``spec`` with the benchmark's settings and the spec's overrides."""
    from detectron2.config import LazyConfig
    from detectron2.model_zoo import get_config

    from .config import apply_overrides

    if spec.config == R50_FPN:
        cfg = get_config("common/models/mask_rcnn_fpn.py")
    else:
        if not os.path.isfile(spec.config):
            raise FileNotFoundError(
                f"Config file {spec.config!r} not found (or use {R50_FPN!r} for detectron2's "
                "Mask R-CNN R50-FPN)."
            )
        cfg = LazyConfig.load(spec.config)
    if "model" not in cfg:
        raise ValueError(f"{spec.config} has no `model` to benchmark.")
    bottom_up = _select(cfg, "model.backbone.bottom_up")
    if _is_pvt_config(bottom_up) and bottom_up.get("weights", ""):
        bottom_up.weights = ""  # random weights: never download or read checkpoints
    if task == "inference":
        # Random weights score every class at ~1/num_classes, under the 0.05 threshold: no
        # detection would reach the mask head. Keep them all (up to the per-image limit), as a
        # trained model does on a busy image.
        for key in ("model.roi_heads.box_predictor.test_score_thresh", "model.test_score_thresh"):
            if _select(cfg, key) is not None:
                cfg = apply_overrides(cfg, [f"{key}=0.0"])
    if spec.act_checkpoint and _is_pvt_config(bottom_up):  # other backbones: as they are
        bottom_up.use_act_checkpoint = True
    return apply_overrides(cfg, list(spec.opts))


def _select(cfg, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=None)


def _target_name(node) -> str:
    target = node.get("_target_") if node is not None else None
    return getattr(target, "__name__", str(target))


def _is_pvt_config(node) -> bool:
    from .backbone import PVTv2Backbone

    if node is None:
        return False
    target = node.get("_target_")
    if isinstance(target, str):
        return target.rsplit(".", 1)[-1] == PVTv2Backbone.__name__
    return target is PVTv2Backbone


def build_model(spec: ModelSpec, task: str, device: str, seed: int):
    """The module a task measures: the bottom-up network (``backbone``) or the whole model."""
    import torch

    from detectron2.config import instantiate

    cfg = load_model_config(spec, task)
    torch.manual_seed(seed)
    if task == "backbone":
        node = _select(cfg, "model.backbone.bottom_up")
        if node is None:
            raise ValueError(f"{spec.label}: the backbone task needs model.backbone.bottom_up.")
        model = instantiate(node)
    else:
        model = instantiate(cfg.model)
    # the statistics see what the measured module sees: a N(0, 1) tensor for the bottom-up
    # network alone, a normalised random uint8 image inside the model
    g = torch.Generator().manual_seed(seed)
    if task == "backbone":
        calibrate_frozen_batchnorm(model, torch.randn(1, 3, 256, 256, generator=g))
    elif hasattr(model, "backbone") and hasattr(model, "pixel_mean"):
        image = torch.randint(0, 256, (1, 3, 256, 256), generator=g).float()
        x = (image - model.pixel_mean.cpu()) / model.pixel_std.cpu()
        calibrate_frozen_batchnorm(getattr(model.backbone, "bottom_up", model.backbone), x)
    model = model.to(device)
    model.train(task == "train")
    return model


def calibrate_frozen_batchnorm(module, x) -> int:
    """
    Set the statistics of every ``FrozenBatchNorm2d`` in ``module`` from one forward pass on
    ``x`` (a random input), each layer normalising its input (a data-dependent init).

    detectron2's ResNet freezes its batch norms: with random weights and the default statistics
    (mean 0, variance 1) activations grow stage after stage, the RPN's box deltas explode and a
    randomly initialised R50-FPN keeps ~4 proposals and no detection, which would make its heads
    look free. Pretrained statistics normalise; this gives random weights the same property.

    Returns:
        the number of calibrated layers.
    """
    import torch

    from detectron2.layers import FrozenBatchNorm2d

    layers = [m for m in module.modules() if isinstance(m, FrozenBatchNorm2d)]
    if not layers:
        return 0

    def hook(m, args):
        x = args[0].detach().float()
        m.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        m.running_var.copy_((x.var(dim=(0, 2, 3)) - m.eps).clamp_min(0.0))
        m.weight.fill_(1.0)
        m.bias.zero_()

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(x)  # still on the CPU: build_model moves it afterwards
    finally:
        for h in handles:
            h.remove()
        module.train(training)
    return len(layers)


def attention_modules(module) -> List[Any]:
    """timm's PVT-v2 ``Attention`` modules inside ``module``."""
    from timm.models.pvt_v2 import Attention

    return [m for m in module.modules() if isinstance(m, Attention)]


class SavedActivations:
    """
    Bytes of the activations autograd keeps for the backward pass inside one module's forward
    (``torch.autograd.graph.saved_tensors_hooks`` entered and left by forward hooks): distinct
    storages, the module's own parameters excluded. Activation checkpointing shows here as what
    it is, tensors not kept, whatever the process's peak memory does.
    """

    def __init__(self, module):
        import torch

        self.bytes = 0
        self._seen = set()
        self._params = {p.untyped_storage().data_ptr() for p in module.parameters()}
        self._context = None
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._handles = [
            module.register_forward_pre_hook(self._enter),
            module.register_forward_hook(self._exit),
        ]

    def _pack(self, t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._seen and ptr not in self._params:
            self._seen.add(ptr)
            self.bytes += storage.nbytes()
        return t

    def _enter(self, module, args):
        self._hooks.__enter__()

    def _exit(self, module, args, output):
        self._hooks.__exit__(None, None, None)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _num_classes(model) -> int:
    for path in ("roi_heads.num_classes", "num_classes", "sem_seg_head.num_classes"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, int):
            return obj
    return 80


def make_train_batch(
    model, image_size: Sequence[int], batch_size: int, instances: int, seed: int
) -> List[Dict[str, Any]]:
    """
    Training inputs: random uint8 images with ``instances`` random boxes per image, each with a
    random class and a polygon mask (an octagon inscribed in its box); a random ``sem_seg`` map for
    semantic segmentation models.
    """
    import torch

    from detectron2.structures import Boxes, Instances, PolygonMasks

    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    num_classes = _num_classes(model)
    batch = []
    for _ in range(batch_size):
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        sizes = torch.rand(instances, 2, generator=g) * 0.4 + 0.1  # 10%..50% of each side
        bw, bh = sizes[:, 0] * w, sizes[:, 1] * h
        x0 = torch.rand(instances, generator=g) * (w - bw)
        y0 = torch.rand(instances, generator=g) * (h - bh)
        boxes = torch.stack([x0, y0, x0 + bw, y0 + bh], dim=1)
        angles = torch.arange(8) * (2 * math.pi / 8) + math.pi / 8
        polygons = []
        for x_0, y_0, x_1, y_1 in boxes.tolist():
            cx, cy, rx, ry = (x_0 + x_1) / 2, (y_0 + y_1) / 2, (x_1 - x_0) / 2, (y_1 - y_0) / 2
            pts = torch.stack([cx + rx * angles.cos(), cy + ry * angles.sin()], dim=1)
            polygons.append([pts.flatten().tolist()])
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (instances,), generator=g)
        inst.gt_masks = PolygonMasks(polygons)
        item = {"image": image, "instances": inst, "height": h, "width": w}
        if hasattr(model, "sem_seg_head"):
            item["sem_seg"] = torch.randint(0, num_classes, (h, w), generator=g)
        batch.append(item)
    return batch


def make_inference_batch(image_size: Sequence[int], batch_size: int, seed: int):
    """Inference inputs: random uint8 images (the model pads them itself)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    return [
        {
            "image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
            "height": h,
            "width": w,
        }
        for _ in range(batch_size)
    ]


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------


def latency_stats(seconds: Sequence[float], batch_size: int) -> Dict[str, Any]:
    """Median, p90, mean and min latency in ms, and images/s from the median."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    median = float(np.median(ms))
    return {
        "latency_ms": {
            "median": median,
            "p90": float(np.percentile(ms, 90)),
            "mean": float(ms.mean()),
            "min": float(ms.min()),
            "all": [float(v) for v in ms],
        },
        "images_per_s": batch_size * 1000.0 / median,
    }


def pair_ratio_stats(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    """Ratios A/B of iteration times measured side by side (robust to a load that drifts)."""
    r = np.asarray(a, dtype=np.float64) / np.asarray(b, dtype=np.float64)
    return {
        "median_of_ratios": float(np.median(r)),
        "ratio_of_medians": float(np.median(a) / np.median(b)),
        # load only ever adds time: the fastest runs are the least disturbed
        "ratio_of_mins": float(np.min(a) / np.min(b)),
        "p10": float(np.percentile(r, 10)),
        "p90": float(np.percentile(r, 90)),
    }


def time_alternating(
    fns: Sequence[Callable[[], Any]], iters: int, warmup: int, sync: Callable[[], None]
) -> List[List[float]]:
    """
    Run the callables in turn, ``warmup`` untimed rounds then ``iters`` timed ones, in the order
    A B, B A, A B, ... (ABBA: a load that drifts linearly costs every callable the same). The
    callables must synchronise nothing themselves: ``sync`` (CUDA) is called around each timing.

    Returns:
        one list of ``iters`` durations in seconds per callable.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
            sync()
    times: List[List[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    for i in range(iters):
        for k in order if i % 2 == 0 else order[::-1]:
            sync()
            t0 = time.perf_counter()
            fns[k]()
            sync()
            times[k].append(time.perf_counter() - t0)
    return times


def _proc_status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """
    Peak memory of the code run between :meth:`reset` and :meth:`read`: CUDA's
    ``max_memory_allocated``, or on the CPU the peak resident set size (VmHWM) of this process,
    reset through ``/proc/self/clear_refs`` (Linux), else ``getrusage``'s lifetime peak.
    """

    def __init__(self, device: str):
        self.device = device
        self.cuda = device.startswith("cuda")
        self.baseline_kb = 0
        self.hwm_reset = False

    def reset(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline_kb = torch.cuda.memory_allocated() // 1024
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current VmRSS
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.baseline_kb = _proc_status_kb("VmRSS") or 0

    def read(self) -> Dict[str, Any]:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            peak_kb = torch.cuda.max_memory_allocated() // 1024
            kind = "torch.cuda.max_memory_allocated"
        else:
            peak_kb = _proc_status_kb("VmHWM")
            kind = "peak RSS (VmHWM) of a child process running only this model"
            if peak_kb is None:
                import resource

                peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if not self.hwm_reset:
                kind += ", since the process started (VmHWM could not be reset)"
        return {
            "peak_memory_mb": peak_kb / 1024.0,
            "baseline_memory_mb": self.baseline_kb / 1024.0,
            "peak_increase_mb": (peak_kb - self.baseline_kb) / 1024.0,
            "memory_kind": kind,
        }


def _sdpa_flop_jit(inputs, outputs) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: Q K^T and A V (one MAC = 1)."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch = int(np.prod(q[:-2]))
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count_flops(module, inputs, detectron2_model: bool) -> Dict[str, Any]:
    """
    GFLOPs (fvcore's convention: one multiply-add is one flop) of one forward pass.

    Args:
        module: the model (eval mode is set for the count and restored).
        inputs: a tuple of tensors, or detectron2's list of dicts when ``detectron2_model``.
        detectron2_model: count with detectron2's ``FlopCountAnalysis`` (list-of-dict inputs).
    """
    import torch
    from fvcore.nn import FlopCountAnalysis as FvFlopCountAnalysis

    from .compat import flop_count_analysis_class

    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if detectron2_model:
                counter = flop_count_analysis_class()(module, inputs)
            else:
                counter = FvFlopCountAnalysis(module, inputs)
            counter.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
            counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = counter.total()
            unsupported = dict(counter.unsupported_ops())
    finally:
        module.train(training)
    return {"gflops": total / 1e9, "unsupported_ops": unsupported}


# ---------------------------------------------------------------------------------------------
# per-component timing (inference)
# ---------------------------------------------------------------------------------------------

# (key, module path): nested paths are reported as parts of their parent
_COMPONENTS = (
    ("bottom_up", "backbone.bottom_up"),
    ("backbone", "backbone"),
    ("proposal_generator", "proposal_generator"),
    ("roi_heads", "roi_heads"),
    ("roi_heads.box_pooler", "roi_heads.box_pooler"),
    ("roi_heads.box_head", "roi_heads.box_head"),
    ("roi_heads.box_predictor", "roi_heads.box_predictor"),
    ("roi_heads.mask_pooler", "roi_heads.mask_pooler"),
    ("roi_heads.mask_head", "roi_heads.mask_head"),
    ("head", "head"),
    ("sem_seg_head", "sem_seg_head"),
)
_TOP_LEVEL = ("backbone", "proposal_generator", "roi_heads", "head", "sem_seg_head")


class ComponentTimer:
    """Wall time spent in named submodules per forward pass, from forward (pre-)hooks."""

    def __init__(self, model, sync: Callable[[], None]):
        self.sync = sync
        self.current: Dict[str, float] = {}
        self.records: List[Dict[str, float]] = []
        self._start: Dict[str, float] = {}
        self._handles = []
        modules = dict(model.named_modules())
        self.keys = [k for k, path in _COMPONENTS if path in modules]
        for key, path in _COMPONENTS:
            if path in modules:
                m = modules[path]
                self._handles.append(m.register_forward_pre_hook(self._pre(key)))
                self._handles.append(m.register_forward_hook(self._post(key)))

    def _pre(self, key):
        def hook(module, args):
            self.sync()
            self._start[key] = time.perf_counter()

        return hook

    def _post(self, key):
        def hook(module, args, output):
            self.sync()
            elapsed = time.perf_counter() - self._start.pop(key)
            self.current[key] = self.current.get(key, 0.0) + elapsed

        return hook

    def end_iteration(self, total: float) -> None:
        self.current["total"] = total
        self.records.append(self.current)
        self.current = {}

    def discard(self) -> None:
        self.current = {}
        self.records = []

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    def summary(self) -> Dict[str, Dict[str, float]]:
        """Per component: median ms over iterations and share of the median total."""
        if not self.records:
            return {}

        def med(values):
            return float(np.median(values)) * 1000.0

        rows: Dict[str, List[float]] = {k: [] for k in self.keys}
        rows["total"] = []
        derived = {"fpn": [], "other": []}
        for r in self.records:
            for k in self.keys:
                rows[k].append(r.get(k, 0.0))
            rows["total"].append(r["total"])
            if "backbone" in r and "bottom_up" in r:
                derived["fpn"].append(r["backbone"] - r["bottom_up"])
            derived["other"].append(r["total"] - sum(r.get(k, 0.0) for k in _TOP_LEVEL))
        total = med(rows["total"])
        out = {}
        order = ["bottom_up", "fpn"] + [k for k in self.keys if k not in ("bottom_up",)]
        for k in order + ["other"]:
            values = derived.get(k) or rows.get(k)
            if not values:
                continue
            ms = med(values)
            out[k] = {"ms": ms, "share": ms / total if total > 0 else float("nan")}
        out["total"] = {"ms": total, "share": 1.0}
        return out


# ---------------------------------------------------------------------------------------------
# the child process
# ---------------------------------------------------------------------------------------------


def _autocast(device: str, amp: str):
    import torch

    if not amp:
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


class _Runner:
    """One model of a measurement: its ``step()`` and what it records on the way."""

    def __init__(self, spec: ModelSpec, settings: BenchmarkSettings, breakdown: bool):
        import torch

        from .backbone import PVTv2Backbone

        self.spec = spec
        self.s = settings
        task, device = settings.task, settings.device
        self.model = build_model(spec, task, device, settings.seed)
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        self.first_losses: Optional[Dict[str, float]] = None
        self.timer: Optional[ComponentTimer] = None
        self.info: Dict[str, Any] = {
            "label": spec.label,
            "config": spec.config,
            "opts": list(spec.opts),
            "act_checkpoint": spec.act_checkpoint,
            "params_m": sum(p.numel() for p in self.model.parameters()) / 1e6,
            "module": type(self.model).__name__,
        }
        bottom_up = self.model if task == "backbone" else self.model.backbone.bottom_up
        self.info["bottom_up"] = type(bottom_up).__name__
        if isinstance(bottom_up, PVTv2Backbone):
            attn = attention_modules(bottom_up)
            self.info["timm_variant"] = bottom_up.name
            self.info["channels_last"] = bottom_up.channels_last
            self.info["attention_modules"] = len(attn)
            self.info["fused_attn"] = all(m.fused_attn for m in attn)
            self.info["use_act_checkpoint"] = all(
                s.grad_checkpointing for s in bottom_up.model.stages
            )

        if task == "backbone":
            h, w = padded_size(settings.image_size)
            g = torch.Generator().manual_seed(settings.seed)
            self.inputs = torch.randn(settings.batch_size, 3, h, w, generator=g).to(device)
            self.step = self._backbone_step
        elif task == "inference":
            self.inputs = make_inference_batch(
                settings.image_size, settings.batch_size, settings.seed
            )
            if breakdown:
                self.timer = ComponentTimer(self.model, self.sync)
            generator = getattr(self.model, "proposal_generator", None)
            if generator is not None:
                generator.register_forward_hook(self._count_proposals)
            self.step = self._inference_step
        else:
            from detectron2.utils.events import EventStorage

            self.inputs = make_train_batch(
                self.model,
                settings.image_size,
                settings.batch_size,
                settings.instances,
                settings.seed,
            )
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
            self.scaler = (
                torch.amp.GradScaler(device.split(":")[0]) if settings.amp == "fp16" else None
            )
            self.storage = EventStorage(0)  # detectron2's losses log into an event storage
            self.step = self._train_step

    def _backbone_step(self):
        import torch

        with torch.no_grad(), _autocast(self.s.device, self.s.amp):
            return self.model(self.inputs)

    def _inference_step(self):
        import torch

        t0 = time.perf_counter()
        with torch.no_grad(), _autocast(self.s.device, self.s.amp):
            out = self.model(self.inputs)
        if self.timer is not None:
            self.sync()
            self.timer.end_iteration(time.perf_counter() - t0)
        if "instances" in out[0]:
            # random weights: the heads' work depends on these, show them
            self.info["detections_per_image"] = [len(o["instances"]) for o in out]
        return out

    def _count_proposals(self, module, args, output):
        import torch

        self.info["proposals_per_image"] = [len(p) for p in output[0]]
        # ROIAlign with sampling_ratio=0 samples more points in larger boxes: show their size
        sides = [p.proposal_boxes.area().clamp_min(0).sqrt() for p in output[0]]
        self.info["proposal_mean_side_px"] = float(torch.cat(sides).mean()) if sides else 0.0

    def _train_step(self):
        import torch

        first = self.first_losses is None
        if first:
            # the same random state for every model's first step: equal losses for equal models
            torch.manual_seed(self.s.seed + 1)
            saved = SavedActivations(self.model.backbone.bottom_up)
        with self.storage, _autocast(self.s.device, self.s.amp):
            loss_dict = self.model(self.inputs)
        losses = sum(loss_dict.values())
        if first:
            saved.remove()
            self.info["bottom_up_saved_activations_mb"] = saved.bytes / 2**20
            self.first_losses = {k: float(v.detach()) for k, v in loss_dict.items()}
            self.first_losses["total"] = float(losses.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(losses).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            losses.backward()
            self.optimizer.step()
        return loss_dict

    def flops(self) -> Dict[str, Any]:
        """GFLOPs per image; the whole model when detectron2's tracer manages, else the
        bottom-up network."""
        import torch

        if self.s.task == "backbone":
            out = count_flops(self.model, (self.inputs[:1],), detectron2_model=False)
            out["flops_scope"] = "backbone.bottom_up"
            return out
        image = make_inference_batch(self.s.image_size, 1, self.s.seed)
        try:
            out = count_flops(self.model, image, detectron2_model=True)
            out["flops_scope"] = "whole model (inference forward)"
            return out
        except Exception as e:  # noqa: BLE001 - fall back to what can be counted
            logger.warning("FLOP count of the whole model failed (%s); counting the backbone", e)
            h, w = padded_size(self.s.image_size)
            x = torch.zeros(1, 3, h, w, device=self.s.device)
            out = count_flops(self.model.backbone.bottom_up, (x,), detectron2_model=False)
            out["flops_scope"] = f"backbone.bottom_up only (whole model failed: {e})"
            return out


def _timm_reference(backbone, device: str):
    """timm's own pvt_v2 model (unpruned) holding the wrapper's weights, and a forward that calls
    its patch embedding and stages one by one, keeping the wrapper's stages. It does not go
    through ``forward_intermediates``, the wrapper's path, so a wrapper that picked, ordered or
    computed its outputs differently from timm's stages would show a difference."""
    import timm
    import torch

    ref = timm.create_model(backbone.name, pretrained=False, num_classes=0)
    missing, unexpected = ref.load_state_dict(backbone.model.state_dict(), strict=False)
    kept = len(backbone.model.stages)
    bad = [k for k in missing if not any(k.startswith(f"stages.{i}.") for i in range(kept, 9))]
    if unexpected or bad:
        raise RuntimeError(f"timm reference: missing {bad}, unexpected {unexpected}")
    if backbone.channels_last:  # the same weights, in the same layout
        ref.to(memory_format=torch.channels_last)
    ref = ref.to(device).eval()
    indices = list(backbone._out_indices)

    def forward(x):
        outs = []
        x = ref.patch_embed(x)
        for i, stage in enumerate(ref.stages[: max(indices) + 1]):
            x = stage(x)
            if i in indices:
                outs.append(x)
        return outs

    return ref, forward


def _profile(runner: _Runner, top: int) -> List[Dict[str, Any]]:
    """The ``top`` operators by self time over two steps (torch.profiler), printed and returned."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    cuda = runner.s.device.startswith("cuda")
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    if runner.timer is not None:
        runner.timer.remove()
    with profile(activities=activities, record_shapes=False) as prof:
        for _ in range(2):
            runner.step()
            runner.sync()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    print(f"\n== profile of {runner.spec.label} ({runner.s.task}, 2 steps) ==")
    print(events.table(sort_by=key, row_limit=top))
    total = sum(getattr(e, key) for e in events) or 1.0
    rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    return [
        {
            "op": e.key,
            "self_ms_per_step": getattr(e, key) / 1000.0 / 2,
            "share": getattr(e, key) / total,
            "calls_per_step": e.count / 2,
        }
        for e in rows
    ]


def _child_main(job: Dict[str, Any]) -> Dict[str, Any]:
    """Run one measurement job (see :func:`run_benchmark`) and return its results."""
    import torch

    s = BenchmarkSettings(**{**job["settings"], "image_size": tuple(job["settings"]["image_size"])})
    if s.threads:
        torch.set_num_threads(s.threads)
    specs = [ModelSpec(**m) for m in job["models"]]
    memory = job["memory"]
    runners = [_Runner(spec, s, breakdown=not memory) for spec in specs]
    fns = [r.step for r in runners]
    result: Dict[str, Any] = {"environment": environment_info(s.device), "models": []}

    reference = None
    if job.get("vs_timm"):
        wrapper = runners[0]
        if wrapper.info.get("bottom_up") != "PVTv2Backbone" or s.task != "backbone":
            raise ValueError("--vs-timm needs the backbone task and a PVT-v2 config")
        ref_model, ref_forward = _timm_reference(wrapper.model, s.device)
        reference = (ref_model, ref_forward)

        def timm_step():
            with torch.no_grad(), _autocast(s.device, s.amp):
                return ref_forward(wrapper.inputs)

        fns.append(timm_step)

    sync = runners[0].sync
    peak = PeakMemory(s.device)
    if memory:
        warmup, iters = max(1, min(s.warmup, 1)), s.memory_iters
        # warm-up first: one-time allocations (optimizer state, allocator caches) are baseline
        time_alternating(fns, 0, warmup, sync)
        peak.reset()
        times = time_alternating(fns, iters, 0, sync)
        mem = peak.read()
    else:
        for r in runners:  # warm-up iterations are not part of the breakdown
            if r.timer is not None:
                time_alternating([r.step], 0, s.warmup, sync)
                r.timer.discard()
        warmup = 0 if any(r.timer is not None for r in runners) else s.warmup
        times = time_alternating(fns, s.iters, warmup, sync)
        mem = {}

    for r, t in zip(runners, times):
        entry = dict(r.info)
        entry.update(latency_stats(t, s.batch_size))
        entry.update(mem)
        if r.first_losses is not None:
            entry["first_step_losses"] = r.first_losses
        if r.timer is not None:
            entry["components"] = r.timer.summary()
            r.timer.remove()
        result["models"].append(entry)

    if reference is not None:
        ref_model, ref_forward = reference
        wrapper = runners[0]
        with torch.no_grad(), _autocast(s.device, s.amp):
            ours = list(wrapper.model(wrapper.inputs).values())
            theirs = ref_forward(wrapper.inputs)
        diff = _max_abs_diff(ours, theirs)
        timm_entry = {"label": f"timm {wrapper.model.name} stages called one by one"}
        timm_entry.update(latency_stats(times[-1], s.batch_size))
        result["vs_timm"] = {
            "timm": timm_entry,
            "max_abs_diff": diff,
            "time_ratio_wrapper_over_timm": pair_ratio_stats(times[0], times[-1]),
        }

    if not memory and len(runners) == 2 and s.task == "backbone":
        diff = _same_weights_output_diff(*runners)
        if diff is not None:
            result["outputs_a_vs_b"] = {"max_abs_diff": diff}

    if not memory and s.flops:
        for r, entry in zip(runners, result["models"]):
            entry.update(r.flops())
    if not memory and s.profile:
        for r, entry in zip(runners, result["models"]):
            entry["profile"] = _profile(r, s.profile)
    result["environment"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    return result


def _same_weights_output_diff(a: "_Runner", b: "_Runner") -> Optional[float]:
    """Two backbones of one architecture (e.g. channels-last against the default layout): load
    A's weights into B and return the largest difference of their outputs on A's input, or None
    when the architectures differ."""
    import torch

    sa, sb = a.model.state_dict(), b.model.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        return None
    b.model.load_state_dict(sa)  # copies into B's tensors: B keeps its memory format
    with torch.no_grad(), _autocast(a.s.device, a.s.amp):
        out_a, out_b = a.model(a.inputs), b.model(a.inputs)
    return _max_abs_diff(out_a.values(), out_b.values())


def _max_abs_diff(xs, ys) -> float:
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(xs, ys))


def _return_freed_memory_to_the_system() -> None:
    """glibc: mmap every allocation above 64 KiB, so that freed tensors leave the resident set
    (by default the threshold grows up to 32 MiB at run time and freed heap memory stays
    resident, blurring the peak). Used in the memory children only."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def _child_entry(job: Dict[str, Any], conn) -> None:
    """Child process body: run the job, send ("ok", result) or ("error", traceback)."""
    try:
        if job["memory"]:
            _return_freed_memory_to_the_system()
        conn.send(("ok", _child_main(job)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# the modules every child needs, imported once by the fork server (which runs no torch op, so
# forking it is safe; children start in well under a second instead of ~8 s)
_PRELOAD = ("torch", "timm", "detectron2.modeling", "detectron2.config", "pvt_fpn_d2.benchmark")


def _fork_server_context():
    """The multiprocessing context of the children; starts the fork server (~8 s of imports),
    so that calling this early lets the server start while the caller does other work."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(_PRELOAD))
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return ctx


def _run_child(job: Dict[str, Any]) -> Dict[str, Any]:
    """Run a job in a new process, forked from a server that has the libraries imported."""
    ctx = _fork_server_context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_entry, args=(job, sender), daemon=False)
    proc.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = "crashed", None
    proc.join()
    if status == "ok":
        return payload
    if status == "error":
        raise RuntimeError(f"The benchmark child process failed:\n{payload}")
    raise RuntimeError(
        f"The benchmark child process died (exit code {proc.exitcode}; -9 is usually the kernel's "
        f"out-of-memory killer). Job: {json.dumps(job)}"
    )


# ---------------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------------


def run_benchmark(
    settings: BenchmarkSettings,
    models: Sequence[ModelSpec],
    compare_act_checkpoint: bool = False,
) -> Dict[str, Any]:
    """
    Measure one model, or compare two (``models[0]`` is A, ``models[1]`` is B: ratios are A/B,
    B being the reference), in child processes.

    Args:
        settings: what to measure.
        models: one or two model specs.
        compare_act_checkpoint: compare ``models[0]`` with activation checkpointing (A) against
            itself without (B): time ratio, peak memory ratio and first-step losses (train task).

    Returns:
        a JSON-serialisable dict: ``task``, ``settings``, ``environment``, ``models`` (one entry
        per model: latency, images/s, peak memory, GFLOPs, ...), and ``comparison``, ``vs_timm``
        and ``act_checkpoint`` where they apply.
    """
    s = settings
    if s.task == "eval":
        raise ValueError("the eval task has no models: use run_eval_benchmark")
    models = list(models)
    if not 1 <= len(models) <= 2:
        raise ValueError(f"need one or two models, got {len(models)}")
    if compare_act_checkpoint:
        if s.task != "train":
            raise ValueError("--compare-act-checkpoint needs --task train")
        if len(models) != 1:
            raise ValueError("--compare-act-checkpoint compares one config with itself")
        base = models[0]
        models = [
            ModelSpec(base.config, base.opts, True, base.label + " [act-checkpoint]"),
            ModelSpec(base.config, base.opts, False, base.label),
        ]
    if s.vs_timm and (len(models) != 1 or s.task != "backbone"):
        raise ValueError("--vs-timm needs --task backbone and no --compare")
    if len(models) == 2 and models[0].label == models[1].label:
        models[1].label += " (B)"
    _fork_server_context()  # starts while the configs load
    for m in models:  # the children may not share our working directory
        if m.config != R50_FPN:
            m.config = os.path.abspath(m.config)
    # config errors (a file, an override) here, before any child starts
    cfgs = [load_model_config(m, s.task) for m in models]
    pvt = [_is_pvt_config(_select(c, "model.backbone.bottom_up")) for c in cfgs]
    if any(m.act_checkpoint for m in models) and not any(pvt):
        raise ValueError(
            "Activation checkpointing needs a PVTv2Backbone bottom-up network; "
            + ", ".join(
                f"{m.label} has {_target_name(_select(c, 'model.backbone.bottom_up'))}"
                for m, c in zip(models, cfgs)
            )
        )

    jobs_settings = asdict(s)
    timing = _run_child(
        {
            "settings": jobs_settings,
            "models": [asdict(m) for m in models],
            "memory": False,
            "vs_timm": s.vs_timm,
        }
    )
    result: Dict[str, Any] = {
        "task": s.task,
        "settings": dict(jobs_settings, padded_size=list(padded_size(s.image_size))),
        "environment": timing["environment"],
        "models": timing["models"],
    }
    if "vs_timm" in timing:
        result["vs_timm"] = timing["vs_timm"]
    if "outputs_a_vs_b" in timing:
        result["outputs_a_vs_b"] = timing["outputs_a_vs_b"]
    for m, entry in zip(models, result["models"]):
        mem = _run_child({"settings": jobs_settings, "models": [asdict(m)], "memory": True})
        mem = mem["models"][0]
        for k in ("peak_memory_mb", "baseline_memory_mb", "peak_increase_mb", "memory_kind"):
            entry[k] = mem[k]
        if "first_step_losses" in mem:
            entry["first_step_losses_memory_child"] = mem["first_step_losses"]

    if len(models) == 2:
        result["comparison"] = _compare(result["models"][0], result["models"][1])
    if compare_act_checkpoint:
        ckpt, plain = result["models"]
        # losses from the two separate memory children (separate processes, same seed)
        la, lb = ckpt["first_step_losses_memory_child"], plain["first_step_losses_memory_child"]
        lc, lp = ckpt["first_step_losses"], plain["first_step_losses"]
        result["act_checkpoint"] = {
            "peak_memory_ratio": ckpt["peak_memory_mb"] / plain["peak_memory_mb"],
            "peak_memory_reduction": 1.0 - ckpt["peak_memory_mb"] / plain["peak_memory_mb"],
            "peak_increase_reduction": (
                1.0 - ckpt["peak_increase_mb"] / plain["peak_increase_mb"]
                if plain["peak_increase_mb"] > 0
                else None
            ),
            "time_ratio": result["comparison"]["latency"],
            # what autograd keeps of the bottom-up network's activations (exact, not a peak)
            "saved_activations_ratio": ckpt["bottom_up_saved_activations_mb"]
            / plain["bottom_up_saved_activations_mb"],
            "max_loss_diff_separate_processes": max(abs(la[k] - lb[k]) for k in lb),
            "max_loss_diff_same_process": max(abs(lc[k] - lp[k]) for k in lp),
            "determinism": "both models are built and stepped from the same seeds (torch RNG "
            "reseeded before each first step; checkpointing restores the RNG state when it "
            "recomputes), so drop path draws the same masks with the config's drop_path_rate",
        }
    return result


def _compare(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    def ratio(key):
        va, vb = a.get(key), b.get(key)
        return va / vb if isinstance(va, (int, float)) and vb else None

    out = {
        "direction": f"A/B = {a['label']} / {b['label']}",
        "latency": pair_ratio_stats(a["latency_ms"]["all"], b["latency_ms"]["all"]),
        "latency_p90_ratio": a["latency_ms"]["p90"] / b["latency_ms"]["p90"],
        "images_per_s_ratio": a["images_per_s"] / b["images_per_s"],
        "peak_memory_ratio": ratio("peak_memory_mb"),
        "gflops_ratio": ratio("gflops"),
        "params_ratio": ratio("params_m"),
    }
    if "components" in a and "components" in b:
        out["components_ms_ratio"] = {
            k: a["components"][k]["ms"] / b["components"][k]["ms"]
            for k in a["components"]
            if k in b["components"] and b["components"][k]["ms"] > 0
        }
    return out


# ---------------------------------------------------------------------------------------------
# eval task
# ---------------------------------------------------------------------------------------------


def _random_polygon(rng: np.random.Generator, cx, cy, rx, ry, vertices: int = 12) -> List[float]:
    angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    radius = rng.uniform(0.6, 1.0, vertices)
    pts = np.stack([cx + rx * radius * np.cos(angles), cy + ry * radius * np.sin(angles)], axis=1)
    return [float(v) for v in pts.ravel()]


def synthetic_coco_eval_data(
    num_images: int = 500,
    instances: int = 20,
    image_size: Sequence[int] = (480, 640),
    num_classes: int = 10,
    false_positives: int = 5,
    seed: int = 0,
) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """
    A COCO ground truth (polygons) with ``instances`` objects per image and detectron2-style
    results: each object found with probability 0.9 with a jittered polygon (RLE mask, box from the
    mask), a score and usually the right class, plus ``false_positives`` random detections per
    image. Object sizes span COCO's small, medium and large ranges.

    Returns:
        (ground-truth dict, list of results with "bbox" and "segmentation").
    """
    import pycocotools.mask as mask_util

    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in image_size)
    images, anns, results = [], [], []

    def rle_of(poly):
        return mask_util.merge(mask_util.frPyObjects([poly], h, w))

    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": h, "width": w})
        for _ in range(instances):
            size = np.exp(rng.uniform(np.log(6), np.log(min(h, w) / 4)))
            rx, ry = np.minimum(size * rng.uniform(0.6, 1.4, 2), (w / 2 - 1, h / 2 - 1))
            cx, cy = rng.uniform(rx, w - rx), rng.uniform(ry, h - ry)
            poly = _random_polygon(rng, cx, cy, rx, ry)
            rle = rle_of(poly)
            area = float(mask_util.area(rle))
            if area < 1:
                continue
            category = int(rng.integers(1, num_classes + 1))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": [poly],
                    "area": area,
                    "bbox": [float(v) for v in mask_util.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
            if rng.random() < 0.9:
                jitter = (
                    rng.normal(0, 0.08 * size, len(poly))
                    + np.repeat(rng.normal(0, 0.1 * size, (1, 2)), len(poly) // 2, axis=0).ravel()
                )
                pred_cat = (
                    category if rng.random() < 0.85 else int(rng.integers(1, num_classes + 1))
                )
                results.append(
                    _result(image_id, pred_cat, rle_of(list(poly + jitter)), rng.uniform(0.3, 1.0))
                )
        for _ in range(false_positives):
            size = rng.uniform(8, min(h, w) / 4)
            cx, cy = rng.uniform(size, w - size), rng.uniform(size, h - size)
            rle = rle_of(_random_polygon(rng, cx, cy, size, size))
            results.append(
                _result(image_id, int(rng.integers(1, num_classes + 1)), rle, rng.uniform(0, 0.6))
            )
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, num_classes + 1)]
    gt = {"images": images, "annotations": anns, "categories": categories}
    return gt, results


def _result(image_id: int, category: int, rle, score: float) -> Dict[str, Any]:
    import pycocotools.mask as mask_util

    return {
        "image_id": image_id,
        "category_id": category,
        "bbox": [float(v) for v in mask_util.toBbox(rle)],
        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
        "score": float(score),
    }


def run_eval_benchmark(
    num_images: int = 500,
    instances: int = 20,
    iters: int = 1,
    warmup: int = 0,
    seed: int = 0,
) -> Dict[str, Any]:
    """
    Time pycocotools' COCOeval against faster-coco-eval's (as :class:`pvt_fpn_d2.evaluation.
    FasterCOCOeval`: built from the pycocotools ``COCO`` objects detectron2 makes) on a synthetic
    set, bbox and segm, each timing being construction + evaluate + accumulate + summarize
    (loading the results, common to both, is not timed). The two run alternately ``iters`` times.

    Returns:
        a dict with per-type times, the speed-up (pycocotools / faster) and the largest
        difference between their 12 summary stats.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from .evaluation import FasterCOCOeval

    t0 = time.perf_counter()
    gt_dict, results = synthetic_coco_eval_data(num_images, instances, seed=seed)
    generate_s = time.perf_counter() - t0
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        dts = {}
        for iou_type in ("bbox", "segm"):
            res = [dict(r) for r in results]
            if iou_type == "segm":  # as detectron2: the area of a mask result is the mask's
                for r in res:
                    r.pop("bbox")
            dts[iou_type] = coco_gt.loadRes(res)

    def evaluate(cls, iou_type):
        with contextlib.redirect_stdout(io.StringIO()):
            e = cls(coco_gt, dts[iou_type], iou_type)
            e.evaluate()
            e.accumulate()
            e.summarize()
        return [float(v) for v in e.stats[:12]]

    out: Dict[str, Any] = {
        "num_images": num_images,
        "instances_per_image": instances,
        "gt_instances": len(gt_dict["annotations"]),
        "detections": len(results),
        "generate_s": generate_s,
        "per_type": {},
    }
    total = {"pycocotools": [0.0] * iters, "faster_coco_eval": [0.0] * iters}
    for iou_type in ("bbox", "segm"):
        impls = {"pycocotools": COCOeval, "faster_coco_eval": FasterCOCOeval}
        stats: Dict[str, List[float]] = {}
        fns = []
        for name, cls in impls.items():

            def fn(name=name, cls=cls):
                stats[name] = evaluate(cls, iou_type)

            fns.append(fn)
        times = time_alternating(fns, iters, warmup, lambda: None)
        for name, t in zip(impls, times):
            for i, v in enumerate(t):
                total[name][i] += v
        diff = max(abs(a - b) for a, b in zip(stats["pycocotools"], stats["faster_coco_eval"]))
        py, fast = float(np.median(times[0])), float(np.median(times[1]))
        out["per_type"][iou_type] = {
            "pycocotools_s": py,
            "faster_coco_eval_s": fast,
            "speedup": py / fast,
            "max_abs_stat_diff": diff,
            "pycocotools_stats": stats["pycocotools"],
            "faster_coco_eval_stats": stats["faster_coco_eval"],
        }
    py, fast = float(np.median(total["pycocotools"])), float(np.median(total["faster_coco_eval"]))
    out.update(
        pycocotools_s=py,
        faster_coco_eval_s=fast,
        speedup=py / fast,
        max_abs_stat_diff=max(v["max_abs_stat_diff"] for v in out["per_type"].values()),
    )
    return out


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{digits}f}"
    return str(v)


def format_report(result: Dict[str, Any]) -> str:
    """A plain-text report of :func:`run_benchmark` / eval results."""
    lines = []
    env = result["environment"]
    lines.append(
        f"environment: torch {env.get('torch')}, timm {env.get('timm')}, detectron2 "
        f"{env.get('detectron2')}; device {env.get('device')}"
        + (f" ({env['gpu']})" if env.get("gpu") else "")
        + f"; CPU {env.get('cpu_model')} x{env.get('cpu_count')}; torch threads "
        f"{env.get('torch_threads')}; load average {env.get('load_average_1min')}"
        + (f" -> {env['load_average_1min_end']}" if "load_average_1min_end" in env else "")
    )
    task = result["task"]
    if task == "eval":
        e = result["eval"]
        lines.append(
            f"eval: {e['num_images']} images, {e['gt_instances']} objects, {e['detections']} "
            f"detections (bbox + segm RLE); construction + evaluate + accumulate + summarize"
        )
        lines.append(
            f"{'':<8}{'pycocotools s':>15}{'faster-coco-eval s':>20}{'speed-up':>10}"
            f"{'max |stat diff|':>17}"
        )
        for t, v in list(e["per_type"].items()) + [("total", e)]:
            lines.append(
                f"{t:<8}{v['pycocotools_s']:>15.3f}{v['faster_coco_eval_s']:>20.3f}"
                f"{v['speedup']:>9.2f}x{v['max_abs_stat_diff']:>17.2e}"
            )
        return "\n".join(lines)

    s = result["settings"]
    h, w = s["image_size"]
    ph, pw = s["padded_size"]
    size = f"{h}x{w}" + (f" (tensor padded to {ph}x{pw})" if task == "backbone" else "")
    lines.append(
        f"task {task}: image {size}, batch {s['batch_size']}, amp {s['amp'] or 'off (fp32)'}, "
        f"{s['iters']} iterations after {s['warmup']} warm-up"
    )
    models = result["models"]
    names = ["A: " + models[0]["label"]] + (["B: " + models[1]["label"]] if len(models) > 1 else [])
    col = max(24, *(len(n) + 2 for n in names))
    header = f"{'':<28}" + "".join(f"{n:>{col}}" for n in names)
    two = len(models) == 2
    if two:
        header += f"{'A/B':>10}"
    lines.append(header)

    def row(title, values, ratio=None, digits=1):
        text = f"{title:<28}" + "".join(f"{_fmt(v, digits):>{col}}" for v in values)
        if two:
            text += f"{_fmt(ratio, 3):>10}"
        lines.append(text)

    cmp = result.get("comparison", {})
    lat = cmp.get("latency", {})
    row(
        "latency median (ms)",
        [m["latency_ms"]["median"] for m in models],
        lat.get("median_of_ratios"),
    )
    row("latency p90 (ms)", [m["latency_ms"]["p90"] for m in models], cmp.get("latency_p90_ratio"))
    row("images/s", [m["images_per_s"] for m in models], cmp.get("images_per_s_ratio"), 2)
    row("peak memory (MB)", [m.get("peak_memory_mb") for m in models], cmp.get("peak_memory_ratio"))
    row(
        "peak increase (MB)",
        [m.get("peak_increase_mb") for m in models],
        (
            (models[0].get("peak_increase_mb") or 0) / models[1]["peak_increase_mb"]
            if two and models[1].get("peak_increase_mb")
            else None
        ),
    )
    row("GFLOPs (per image)", [m.get("gflops") for m in models], cmp.get("gflops_ratio"))
    row("params (M)", [m.get("params_m") for m in models], cmp.get("params_ratio"), 2)
    if two:
        lines.append(
            f"A/B latency: median of per-iteration ratios {lat['median_of_ratios']:.3f} "
            f"(p10 {lat['p10']:.3f}, p90 {lat['p90']:.3f}), ratio of medians "
            f"{lat['ratio_of_medians']:.3f}, ratio of minimums {lat['ratio_of_mins']:.3f}"
        )
    for m, n in zip(models, names):
        if "flops_scope" in m:
            unsupported = ", ".join(sorted(m.get("unsupported_ops", {}))) or "none"
            lines.append(f"{n}: GFLOPs of {m['flops_scope']}; ops not counted: {unsupported}")
        if "fused_attn" in m:
            lines.append(
                f"{n}: {m['attention_modules']} attention modules, fused attention "
                f"(F.scaled_dot_product_attention) {'on' if m['fused_attn'] else 'OFF'}"
            )
        if "detections_per_image" in m:
            lines.append(
                f"{n}: proposals per image {m.get('proposals_per_image')} (mean side "
                f"{m.get('proposal_mean_side_px', float('nan')):.0f} px), detections per image "
                f"{m['detections_per_image']} (score threshold 0: the heads see the full load)"
            )
    if models[0].get("memory_kind"):
        lines.append(f"peak memory: {models[0]['memory_kind']}")

    if all("components" in m for m in models):
        keys = list(models[0]["components"])
        lines.append("per-component median ms (share of the total):")
        for k in keys:
            cells = []
            for m in models:
                c = m["components"].get(k)
                cells.append(f"{c['ms']:.1f} ({100 * c['share']:.0f}%)" if c else "-")
            text = f"  {k:<26}" + "".join(f"{c:>{col}}" for c in cells)
            if two:
                text += f"{_fmt(cmp.get('components_ms_ratio', {}).get(k), 3):>10}"
            lines.append(text)
        lines.append(
            "  (fpn = backbone - bottom_up; other = pre/post-processing incl. mask pasting; ROI "
            "pooling grows with the proposals' size, set by the random weights)"
        )

    if "vs_timm" in result:
        v = result["vs_timm"]
        r = v["time_ratio_wrapper_over_timm"]
        lines.append(
            f"wrapper vs timm's stages called directly: time ratio wrapper/timm "
            f"{r['median_of_ratios']:.4f} (p10 {r['p10']:.4f}, p90 {r['p90']:.4f}; ratio of "
            f"medians {r['ratio_of_medians']:.4f}, of minimums {r['ratio_of_mins']:.4f}); timm median "
            f"{v['timm']['latency_ms']['median']:.1f} ms; max |output diff| {v['max_abs_diff']:.3g}"
        )
    if "outputs_a_vs_b" in result:
        lines.append(
            f"outputs A vs B with A's weights loaded into B, same input: max |diff| "
            f"{result['outputs_a_vs_b']['max_abs_diff']:.3g}"
        )
    for m, n in zip(models, names):
        if "first_step_losses" in m:
            losses = ", ".join(f"{k} {v:.6f}" for k, v in m["first_step_losses"].items())
            lines.append(f"{n}: first-step losses: {losses}")
    if "act_checkpoint" in result:
        a = result["act_checkpoint"]
        lines.append(
            f"activation checkpointing: peak memory ratio with/without "
            f"{a['peak_memory_ratio']:.3f} (reduction {100 * a['peak_memory_reduction']:.1f}%"
            + (
                f"; of the increase over the baseline {100 * a['peak_increase_reduction']:.1f}%"
                if a["peak_increase_reduction"] is not None
                else ""
            )
            + f"), time ratio {a['time_ratio']['median_of_ratios']:.3f}; max first-step loss "
            f"difference {a['max_loss_diff_separate_processes']:.3g} (separate processes), "
            f"{a['max_loss_diff_same_process']:.3g} (same process)"
        )
        ckpt, plain = models
        lines.append(
            f"  activations the bottom-up network keeps for backward: "
            f"{ckpt['bottom_up_saved_activations_mb']:.1f} MB with, "
            f"{plain['bottom_up_saved_activations_mb']:.1f} MB without "
            f"(ratio {a['saved_activations_ratio']:.3f})"
        )
        lines.append(f"  determinism: {a['determinism']}")
    for m, n in zip(models, names):
        if m.get("profile"):
            top = ", ".join(f"{p['op']} {100 * p['share']:.0f}%" for p in m["profile"][:8])
            lines.append(f"{n}: top operators by self time: {top}")
    return "\n".join(lines)
