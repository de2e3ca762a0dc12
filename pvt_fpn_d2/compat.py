"""
Compatibility with detectron2 v0.6 (what ``make setup`` builds from the PyPI sdist) and with
detectron2 builds that lack their C++ ops. Every such fix lives here, is feature-detected, and
leaves upstream detectron2 on its own code path.

* :func:`launch`: v0.6's launcher asserts CUDA and always uses NCCL; on a machine without GPUs
  this starts the worker processes with the gloo backend instead (upstream does the same).
* :func:`cocoeval_class`: detectron2's fast COCOeval needs its compiled ops; this swaps in
  another COCOeval class (faster-coco-eval's C++ one) for the duration of an evaluation.
* :func:`preloaded_coco_apis`: detectron2's ``load_coco_json`` and ``COCOEvaluator`` each parse
  their json again with pycocotools' ``COCO(path)``; this hands them the ``COCO`` object already
  built from the one read of that json. Where a detectron2 version reads the json some other
  way, it simply parses it as before.
* :func:`flop_count_analysis_class`: v0.6's ``detectron2.export`` imports caffe2, gone from
  torch 2, and ``detectron2.utils.analysis`` (the FLOP counter) imports ``detectron2.export``.
"""

import contextlib
import importlib
import inspect
import logging
import os
import socket
import sys
import types
from datetime import timedelta
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.utils import comm

# the modules themselves: detectron2.engine re-exports a *function* named launch
d2_launch = importlib.import_module("detectron2.engine.launch")
d2_coco_evaluation = importlib.import_module("detectron2.evaluation.coco_evaluation")

__all__ = [
    "launch",
    "launcher_supports_cpu",
    "cocoeval_class",
    "preloaded_coco_apis",
    "flop_count_analysis_class",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = getattr(d2_launch, "DEFAULT_TIMEOUT", timedelta(minutes=30))


def launcher_supports_cpu() -> bool:
    """Whether detectron2's own launcher can start CPU-only (gloo) workers (upstream can)."""
    return "GLOO" in inspect.getsource(d2_launch._distributed_worker).upper()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """
    detectron2's ``launch``. ``num_gpus_per_machine`` is the number of processes per machine;
    without GPUs they train on the CPU with the gloo backend, also on detectron2 v0.6.
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1 or torch.cuda.is_available() or launcher_supports_cpu():
        return d2_launch.launch(
            main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout
        )
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url=auto works on one machine only; pass tcp://HOST:PORT.")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(
    local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args, timeout
) -> None:
    dist.init_process_group(
        backend="gloo",
        init_method=dist_url,
        world_size=world_size,
        rank=machine_rank * per_machine + local_rank,
        timeout=timeout,
    )
    # detectron2's comm.get_local_rank()/get_local_size() read the per-machine group
    for i in range(world_size // per_machine):
        group = dist.new_group(list(range(i * per_machine, (i + 1) * per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    # share the cores instead of every worker using all of them
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_machine))
    comm.synchronize()
    main_func(*args)


@contextlib.contextmanager
def cocoeval_class(cls: type, max_dets_cls: Optional[type] = None) -> Iterator[None]:
    """
    Make detectron2's COCOEvaluator evaluate with ``cls`` (constructed as
    ``cls(coco_gt, coco_dt, iou_type)`` like pycocotools' COCOeval) inside this context.
    detectron2 (v0.6 and upstream) picks ``COCOeval``, or ``COCOevalMaxDets`` when
    ``max_dets_per_image`` is not 100, from its ``coco_evaluation`` module at call time;
    ``max_dets_cls`` replaces the latter (default: ``cls``).
    """
    names = [n for n in ("COCOeval", "COCOevalMaxDets") if hasattr(d2_coco_evaluation, n)]
    saved = {n: getattr(d2_coco_evaluation, n) for n in names}
    try:
        for n in names:
            use = max_dets_cls if n == "COCOevalMaxDets" and max_dets_cls else cls
            setattr(d2_coco_evaluation, n, use)
        yield
    finally:
        for n, v in saved.items():
            setattr(d2_coco_evaluation, n, v)


@contextlib.contextmanager
def preloaded_coco_apis(apis: Mapping[str, Any]) -> Iterator[None]:
    """
    Inside this context, ``COCO(path)`` as detectron2's ``load_coco_json`` (which imports
    ``pycocotools.coco.COCO`` when called) and ``COCOEvaluator`` (through its
    ``coco_evaluation`` module) call it returns ``apis[abspath(path)]``, a ``COCO`` object built
    once from the data already read; any other path is parsed as usual.
    """
    import pycocotools.coco as pycocotools_coco

    modules = [m for m in (pycocotools_coco, d2_coco_evaluation) if hasattr(m, "COCO")]
    saved = {m: m.COCO for m in modules}

    def preloaded(original):
        def COCO(annotation_file=None):
            if isinstance(annotation_file, (str, os.PathLike)):
                api = apis.get(os.path.abspath(annotation_file))
                if api is not None:
                    return api
            return original(annotation_file)

        return COCO

    try:
        for m in modules:
            m.COCO = preloaded(saved[m])
        yield
    finally:
        for m, original in saved.items():
            m.COCO = original


def flop_count_analysis_class() -> type:
    """
    detectron2's ``FlopCountAnalysis`` (``detectron2.utils.analysis``). When
    ``detectron2.export`` cannot be imported (v0.6: it imports caffe2), only its ``flatten``
    module, which holds the ``TracingAdapter`` the analysis needs, is loaded under a bare
    ``detectron2.export`` package; upstream detectron2 imports as it is.
    """
    try:
        importlib.import_module("detectron2.export")
    except ImportError:
        import detectron2

        package = types.ModuleType("detectron2.export")
        package.__path__ = [os.path.join(os.path.dirname(detectron2.__file__), "export")]
        sys.modules["detectron2.export"] = package
        package.TracingAdapter = importlib.import_module("detectron2.export.flatten").TracingAdapter
    return importlib.import_module("detectron2.utils.analysis").FlopCountAnalysis
