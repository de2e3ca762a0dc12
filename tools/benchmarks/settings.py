"""
What a benchmark run is: the tasks, the model specs and settings, and the machine it ran on.
"""

import os
import platform
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

R50_FPN = "detectron2:R50-FPN"
TASKS = ("backbone", "inference", "train", "eval", "data", "export")
# per task: (iterations, warm-up iterations) when not given
DEFAULT_ITERS = {
    "backbone": (10, 2),
    "inference": (10, 2),
    "train": (5, 1),
    "eval": (1, 0),
    "data": (1, 0),
    "export": (5, 1),
}
# a training image gets this many random boxes + masks when not given (eval: instances per image)
DEFAULT_INSTANCES = {"train": 5, "eval": 20, "data": 10}


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
    # "best": every bottom-up network at its best known layout on the CPU (channels-last
    # weights and, for the backbone task, input: PVT-v2's default, applied to detectron2's
    # ResNet too); "default": each as its config builds it (PVT-v2 channels_last=False)
    layout: str = "best"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.layout not in ("best", "default"):
            raise ValueError(f"layout must be 'best' or 'default', got {self.layout!r}")
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
