"""
Measuring: latency statistics, alternated timing, peak memory, FLOPs and the per-component
breakdown of a detector's inference time.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np


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

    from pvt_fpn_d2.compat import flop_count_analysis_class

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
