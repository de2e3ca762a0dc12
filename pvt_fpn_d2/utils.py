"""Small shared helpers."""

import os
import tempfile
from typing import Any

import torch

__all__ = ["atomic_torch_save", "atomic_write_text", "default_num_workers"]


def _atomic_replace(path: str, write) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` that never leaves a truncated file at ``path``, even if killed."""
    _atomic_replace(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str, text: str) -> None:
    _atomic_replace(path, lambda f: f.write(text.encode()))


def default_num_workers(max_workers: int = 4) -> int:
    """
    Data-loader worker processes for this machine: ``max_workers`` (detectron2's default 4), or
    fewer when the process may use fewer CPUs, so that PyTorch's DataLoader does not warn that
    it creates more workers than the system suggests. The configs call it when they are loaded,
    so a saved config holds a plain number.
    """
    try:
        cpus = len(os.sched_getaffinity(0))  # the CPUs this process may run on (Linux)
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(max_workers, cpus))
