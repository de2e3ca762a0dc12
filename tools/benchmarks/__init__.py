"""
The measurements behind ``tools/benchmark.py`` (a developer tool, not part of the runtime
package): latency, throughput, peak memory and FLOPs of backbones and detectors, and the speed of
the fast COCO evaluation.

* ``settings``: what a run is (tasks, model specs, settings) and the machine it ran on;
* ``models``: models with random weights and synthetic inputs, built in the child processes;
* ``measure``: latency statistics, alternated timing, peak memory, FLOPs, per-component times;
* ``runner``: the child processes and the comparison of two models;
* ``coco_eval``: pycocotools against faster-coco-eval;
* ``data``: a large COCO json from registration to the first batch and the evaluator;
* ``export``: the ONNX export run by ONNX Runtime / OpenVINO against the eager model;
* ``report``: the text report.

Tasks:

* ``backbone``: ``model.backbone.bottom_up`` alone (PVT-v2 or detectron2's ResNet) in eval mode on
  a (B, 3, H, W) tensor padded to a multiple of 32. With ``vs_timm`` the ``PVTv2Backbone``
  wrapper is timed against timm's patch embedding and stages called one by one, same weights.
* ``inference``: the whole model in eval mode on a list of B images, with a per-component
  breakdown (bottom-up, FPN, proposal generator, ROI heads, other) from forward hooks.
* ``train``: one training step (forward, backward, AdamW step) on synthetic targets; the losses of
  the first step are recorded, so runs with and without activation checkpointing can be checked
  for equal losses.
* ``eval``: pycocotools' COCOeval against faster-coco-eval's (``pvt_fpn_d2.evaluation.
  FasterCOCOeval``, what ``pvt_fpn_d2.evaluation.COCOEvaluator`` uses) on a synthetic set.

Measurements of models run in child processes, forked from a fork server that has imported the
libraries and run nothing else. One *timing* child holds every compared model and runs them
alternately, iteration by iteration (A B B A A B ...), so that a noisy machine slows both alike and
the per-iteration ratios stay meaningful; one *memory* child per model then runs just that model,
so models do not pollute each other's peak memory. Models are built with random weights: nothing
is downloaded (detectron2's ResNet gets batch-norm statistics from a random input, see
``models.calibrate_frozen_batchnorm``).
"""

from .settings import (
    DEFAULT_INSTANCES,
    DEFAULT_ITERS,
    R50_FPN,
    TASKS,
    BenchmarkSettings,
    ModelSpec,
    environment_info,
    padded_size,
)
from .models import attention_modules
from .measure import ComponentTimer, PeakMemory, latency_stats, pair_ratio_stats, time_alternating
from .runner import run_benchmark
from .coco_eval import run_eval_benchmark, synthetic_coco_eval_data
from .data import make_large_coco, run_data_benchmark
from .export import format_export_report, run_export_benchmark
from .report import format_report

__all__ = [
    "DEFAULT_INSTANCES",
    "DEFAULT_ITERS",
    "R50_FPN",
    "TASKS",
    "BenchmarkSettings",
    "ModelSpec",
    "environment_info",
    "padded_size",
    "attention_modules",
    "ComponentTimer",
    "PeakMemory",
    "latency_stats",
    "pair_ratio_stats",
    "time_alternating",
    "run_benchmark",
    "run_eval_benchmark",
    "synthetic_coco_eval_data",
    "make_large_coco",
    "run_data_benchmark",
    "run_export_benchmark",
    "format_export_report",
    "format_report",
]
