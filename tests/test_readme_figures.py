"""
Every figure in the README, re-measured by the command the README names and compared with the
README's own text (issue #20).

The deterministic figures (the model-zoo sizes, attention blocks) are checked by `make test`.
The measurements are marked ``benchmark`` and left out of `make test` (setup.cfg); run them on
an idle machine like the README's (2-core CPU, no GPU), one figure or all:

  python -m pytest -m benchmark -s tests/test_readme_figures.py -k eval_speed   # ~1 min
  python -m pytest -m benchmark -s tests/test_readme_figures.py                # ~2 h

Each prints "figure: measured M, README R" lines and fails when a figure is off by more than
TOLERANCE.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO, load_script, run_tool, subprocess_env, tiny_config

#: The one tolerance of the measured figures: a re-run may differ from the README by this fraction
#: of the README's value (times, ratios, memory, and AP or mIoU after CPU training, which move
#: with the machine, its load and its thread count). Counts, sizes and GFLOPs are exact: equal to
#: the README's printed digits.
TOLERANCE = 0.25

README = (REPO / "README.md").read_text()
B0 = "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"
B2 = "configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py"
CONFIGS = {"b0": B0, "b2": B2}
CL = "model.backbone.bottom_up.channels_last="
# the README's settings: 2 torch threads, fp32, 800x1333, batch 1
THREADS = ["--threads", "2"]


N = r"(\d+(?:\.\d+)?)"  # a number
#: rows of the export speed table: figure name -> the row's title
EXPORT_ROWS = {
    "mask_rcnn_b0": "Mask R-CNN b0",
    "mask_rcnn_b2": "Mask R-CNN b2",
    "retinanet_b0": "RetinaNet b0",
    "retinanet_b2": "RetinaNet b2",
}
ROW4 = r" \| (\d+) \((\d+)%\) \| (\d+) \((\d+)%\) \| (\d+) \((\d+)%\) \| (\d+) \((\d+)%\) \|"
#: Where each figure is in the README's text (one match each; a line break is \s+).
FIGURES = {
    "attention": r"`F.scaled_dot_product_attention` \((\d+) in\s+b2, (\d+) in b0",
    "eval": rf"bbox {N} s vs {N} s \({N}x\), segm {N} s vs {N} s\s+\({N}x\), together {N}x",
    "eval_detections": r"\(([\d,]+) detections\)",
    **{
        f"backbone_{v}": rf"\| PVT-v2-{v} \| {N} \| {N}x \| \*\*{N}x\*\* \((\d+) ms vs (\d+) ms\) "
        rf"\| {N}x \| {N}x \|"
        for v in ("b0", "b2")
    },
    "vs_timm": rf"the time ratio is\s+{N} and the outputs are identical \(max difference 0\)",
    "channels_last": rf"b2 {N}x the time, b0 {N}x, peak memory -(\d+)% and\s+-(\d+)%, outputs "
    r"equal to ([\d.e-]+) \(b2\) and ([\d.e-]+) \(b0\)",
    "fused_gelu": r"\(A fused, B `fuse_gelu=False`, 800x1344\): "
    rf"b2 {N}x the time, b0 {N}x, outputs equal \(max\s+difference 0\)",
    "bottom-up": r"\| bottom-up" + ROW4,
    "FPN": r"\| FPN" + ROW4,
    "proposal generator": r"\| proposal generator" + ROW4,
    "ROI heads": r"\| ROI heads" + ROW4,
    "total": r"\| total \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|",
    **{
        f"export_{name}": rf"\| {title} \| {N} s \| {N}x \| {N}x \| {N}x \|"
        for name, title in EXPORT_ROWS.items()
    },
    "export_thresh0": rf"eager takes {N} s, ONNX Runtime {N}x \(default\) and {N}x \(standard\),"
    rf"\s+OpenVINO\s+{N}x, at the same (\d+) detections",
    "whole_ratio": rf"\*\*latency ratio to R50\*\* \| \*\*{N}x\*\* \| \| \*\*{N}x\*\*",
    "whole_gflops": r"Whole-model GFLOPs \(fvcore, the same input and 100 detections each\): "
    rf"b0 {N}, b2 {N}, R50\s+{N}, FLOP ratios {N}x and {N}x",
    "whole_default": rf"whole-model ratios are b0 {N}x and b2 {N}x \(bottom-up (\d+)%\s+of b2's "
    r"time\)",
    "act_checkpoint": r"peak memory \(process RSS\)\s+(\d+) MB -> (\d+) MB \(-([\d.]+)%\) for "
    r"(\d+)% more time, first-step losses identical \(difference 0\)",
    "amp": r"evaluation of the tiny test set: (\d+) s\s+against (\d+) s for bf16",
    "demo_wall": r"\*\*(\d+) min (\d+) s wall time\*\*",
    "demo_steps": rf"(\d+) iterations\s+of 4 images in (\d+) min (\d+) s at {N} s/iteration, "
    r"evaluation of the 50 validation images in (\d+) s",
    "demo_bbox": r"\| bbox \| " + r" \| ".join([N] * 8) + r" \|",
    "demo_segm": r"\| segm \| " + r" \| ".join([N] * 8) + r" \|",
    "semantic": rf"reached mIoU {N} \(pixel accuracy {N}; IoU background {N}, circle {N}, "
    rf"triangle {N},\s+square {N}\) on the 50 validation images at iteration 500 of its 1000, "
    r"after (\d+) min (\d+) s",
    "data": rf"start to the first training batch {N} s, evaluator set-up\s+{N} s, peak memory "
    r"(\d+) MB",
    **{
        f"semseg_{head}": rf"\| {title} \(`{config}`\) \| {N} \| {N} \|"
        for head, title, config in (
            ("concat", "concat", "pvt_v2_b0_fpn_concat_synthetic.py"),
            ("semantic_fpn", "Semantic FPN", "semantic_fpn_pvt_v2_b0_synthetic.py"),
            ("upernet", "UPerNet", "upernet_pvt_v2_b0_synthetic.py"),
        )
    },
    "upernet_1000": rf"UPerNet reached mIoU {N} \(pixel accuracy {N}\) at iteration 1000",
    **{
        f"classifier_{head}": rf"\| {title} \(`{config}`\) \| {N} \| {N} \|"
        for head, title, config in (
            ("p5", "GAP of P5", "classifier_pvt_v2_b0_synthetic.py"),
            ("res5", "GAP of res5", "classifier_pvt_v2_b0_res5_synthetic.py"),
        )
    },
    "depth": rf"\| trained \(`depth_pvt_v2_b0_synthetic.py`, 600 iterations\) \| {N} \| {N} \| "
    rf"{N} \| {N} \|",
    "depth_mean": rf"\| the training set's mean depth everywhere \| {N} \| {N} \| {N} \| {N} \|",
    "finetune": r"`masks: all (\d+) objects\s+have a mask`, `most objects in one image: (\d+) "
    r"\(000013.jpg\)`; 10 iterations of 2 images and the\s+evaluation of the 10 validation images "
    r"took (\d+) min (\d+) s \((\d+) s per iteration",
}


def readme(figure: str):
    """The numbers of a README figure (FIGURES), as floats."""
    found = re.findall(FIGURES[figure], README)
    assert len(found) == 1, f"README: {len(found)} matches of {figure!r}: {FIGURES[figure]!r}"
    groups = found[0] if isinstance(found[0], tuple) else (found[0],)
    return [float(g.replace(",", "")) for g in groups]


class Figures:
    """Measured figures against the README's, printed, then checked together."""

    def __init__(self):
        self.rows = []

    def close(self, name, measured, readme_value):
        ok = abs(measured - readme_value) <= TOLERANCE * abs(readme_value)
        self.rows.append((name, measured, readme_value, ok, f"within {TOLERANCE:.0%}"))

    def exact(self, name, measured, readme_value, digits=None):
        rounded = measured if digits is None else round(measured, digits)
        self.rows.append((name, measured, readme_value, rounded == readme_value, "exact"))

    def check(self):
        for name, m, r, ok, how in self.rows:
            print(f"{'ok  ' if ok else 'OFF '} {name}: measured {m:.4g}, README {r:g} ({how})")
        off = [row[0] for row in self.rows if not row[3]]
        assert not off, f"figures off the README: {off}"


def benchmark(*args) -> dict:
    """tools/benchmark.py with these arguments, in this process; its figures."""
    return load_script("tools/benchmark.py", "benchmark_tool").main([*map(str, args)])


def _seconds(text: str) -> float:
    """'0:08:42' or '0:00:03.912' -> seconds."""
    h, m, s = text.split(":")
    return 3600 * int(h) + 60 * int(m) + float(s)


# ------------------------------------------------------------------------- exact, in make test


@pytest.mark.parametrize("figure", FIGURES)
def test_the_benchmarks_find_their_figure_in_the_readme(figure):
    """A README edit that moves a figure out of a benchmark's sight fails here, in make test."""
    assert readme(figure)


def test_model_zoo_table_is_what_the_configs_build():
    """The README's table is `python tools/model_zoo_table.py`'s output, row for row."""
    rows = load_script("tools/model_zoo_table.py", "table").table()
    assert len(rows) == 2 + 16
    missing = [row for row in rows if row not in README.splitlines()]
    assert missing == [], "README rows differ from tools/model_zoo_table.py"


def test_attention_blocks_of_b0_and_b2():
    import torch

    from pvt_fpn_d2 import PVTv2Backbone
    from benchmarks import attention_modules

    b2, b0 = readme("attention")
    with torch.device("meta"):
        assert len(attention_modules(PVTv2Backbone("pvt_v2_b2"))) == b2
        assert len(attention_modules(PVTv2Backbone("pvt_v2_b0"))) == b0


# ------------------------------------------------------------------------ measured: benchmark


@pytest.mark.benchmark
def test_eval_speedup():
    """`python tools/benchmark.py --task eval` (about 1 min)."""
    bbox_fast, bbox_py, bbox_x, segm_fast, segm_py, segm_x, both = readme("eval")
    (detections,) = readme("eval_detections")
    e = benchmark("--task", "eval")["eval"]
    f = Figures()
    f.exact("detections", e["detections"], detections)
    f.exact("largest AP statistic difference", e["max_abs_stat_diff"], 0.0)
    for name, fast, py, x in [
        ("bbox", bbox_fast, bbox_py, bbox_x),
        ("segm", segm_fast, segm_py, segm_x),
    ]:
        t = e["per_type"][name]
        f.close(f"{name} faster-coco-eval s", t["faster_coco_eval_s"], fast)
        f.close(f"{name} pycocotools s", t["pycocotools_s"], py)
        f.close(f"{name} speed-up", t["speedup"], x)
    f.close("bbox+segm speed-up", e["speedup"], both)
    f.check()


@pytest.mark.benchmark
def test_large_json():
    """`python tools/benchmark.py --task data --iters 2` (about 2 min; the dataset is generated
    once into datasets/large_coco). The figures of the older commit come from
    `--other-checkout` on a worktree of it and are not re-measured here."""
    first_batch, evaluator, peak = readme("data")
    d = benchmark("--task", "data", "--iters", "2")["data"]["A"]
    f = Figures()
    f.close("start to first batch s", d["start_to_first_batch_s"], first_batch)
    f.close("evaluator set-up s", d["evaluator_setup_s"], evaluator)
    f.close("peak memory MB", d["peak_rss_mb"], peak)
    f.check()


@pytest.mark.benchmark
@pytest.mark.parametrize("variant", ["b0", "b2"])
def test_backbone_against_r50(variant):
    """The backbone table: `--task backbone --compare detectron2:R50-FPN`, both channels-last
    (`--layout best`), both in the default layout, and out of the box (PVT-v2 channels-last, R50
    default) (b0: about 2 min, b2: about 4 min on the README's machine)."""
    gflops, gflops_x, best_x, best_ms, r50_ms, default_x, oob_x = readme(f"backbone_{variant}")
    compare = ["--task", "backbone", "--compare", "detectron2:R50-FPN", *THREADS]
    best = benchmark("--config-file", CONFIGS[variant], *compare, "--layout", "best")
    compare += ["--no-flops", "--layout", "default"]
    default = benchmark("--config-file", CONFIGS[variant], *compare)
    oob = benchmark("--config-file", CONFIGS[variant], *compare, CL + "True")
    f = Figures()
    f.exact("GFLOPs", best["models"][0]["gflops"], gflops, 1)
    f.exact("GFLOPs ratio to R50", best["comparison"]["gflops_ratio"], gflops_x, 2)
    for name, run, x in [("best", best, best_x), ("default", default, default_x),
                         ("out of the box", oob, oob_x)]:  # fmt: skip
        f.close(f"latency ratio, {name}", run["comparison"]["latency"]["median_of_ratios"], x)
    f.close("ms, best", best["models"][0]["latency_ms"]["median"], best_ms)
    f.close("ms, R50 best", best["models"][1]["latency_ms"]["median"], r50_ms)
    f.check()


@pytest.mark.benchmark
def test_wrapper_against_timm():
    """`--task backbone --vs-timm` on b2 (about 4 min)."""
    (ratio,) = readme("vs_timm")
    r = benchmark("--config-file", B2, "--task", "backbone", "--vs-timm", "--no-flops", *THREADS)
    f = Figures()
    f.close(
        "wrapper / timm time",
        r["vs_timm"]["time_ratio_wrapper_over_timm"]["median_of_ratios"],
        ratio,
    )
    f.exact("largest output difference", r["vs_timm"]["max_abs_diff"], 0.0)
    f.check()


@pytest.mark.benchmark
@pytest.mark.parametrize("variant", ["b0", "b2"])
def test_channels_last_alone(variant):
    """`--task backbone CL=True --compare-opt CL=False` (b0: about 2 min, b2: about 6 min)."""
    b2_x, b0_x, b2_mem, b0_mem, b2_diff, b0_diff = readme("channels_last")
    x, mem, diff = {"b0": (b0_x, b0_mem, b0_diff), "b2": (b2_x, b2_mem, b2_diff)}[variant]
    r = benchmark(
        "--config-file", CONFIGS[variant], "--task", "backbone", "--no-flops", *THREADS,
        CL + "True", "--compare-opt", CL + "False",
    )  # fmt: skip
    f = Figures()
    f.close("time ratio channels_last / default", r["comparison"]["latency"]["median_of_ratios"], x)
    f.close("peak memory saved %", 100 * (1 - r["comparison"]["peak_memory_ratio"]), mem)
    f.close("largest output difference", r["outputs_a_vs_b"]["max_abs_diff"], float(diff))
    f.check()


@pytest.mark.benchmark
@pytest.mark.parametrize("variant", ["b0", "b2"])
def test_fused_gelu_alone(variant):
    """`--task backbone --compare-opt model.backbone.bottom_up.fuse_gelu=False` (b0: about 1
    min, b2: about 2 min)."""
    b2_x, b0_x = readme("fused_gelu")
    r = benchmark(
        "--config-file", CONFIGS[variant], "--task", "backbone", "--no-flops", *THREADS,
        "--compare-opt", "model.backbone.bottom_up.fuse_gelu=False",
    )  # fmt: skip
    f = Figures()
    x = {"b0": b0_x, "b2": b2_x}[variant]
    f.close("time ratio fused / plain", r["comparison"]["latency"]["median_of_ratios"], x)
    f.exact("largest output difference", r["outputs_a_vs_b"]["max_abs_diff"], 0.0)
    f.check()


@pytest.mark.benchmark
@pytest.mark.parametrize("variant", ["b0", "b2"])
def test_whole_model_against_r50(variant):
    """The Mask R-CNN breakdown: `--task inference --compare detectron2:R50-FPN`, both
    channels-last, and the default-layout ratio (b0: about 4 min, b2: about 6 min on the
    README's machine)."""
    col = {"b0": 0, "b2": 2}[variant]
    rows = {"bottom-up": "bottom_up", "FPN": "fpn", "proposal generator": "proposal_generator"}
    rows.update({"ROI heads": "roi_heads"})
    compare = ["--task", "inference", "--compare", "detectron2:R50-FPN", *THREADS]
    run = benchmark("--config-file", CONFIGS[variant], *compare, "--layout", "best")
    compare.append("--no-flops")
    f = Figures()
    b0_gflops, b2_gflops, r50_gflops, b0_x, b2_x = readme("whole_gflops")
    gflops, x = {"b0": (b0_gflops, b0_x), "b2": (b2_gflops, b2_x)}[variant]
    f.exact("whole-model GFLOPs", run["models"][0]["gflops"], gflops, 1)
    f.exact("R50 whole-model GFLOPs", run["models"][1]["gflops"], r50_gflops, 1)
    f.exact("whole-model FLOP ratio", run["comparison"]["gflops_ratio"], x, 2)
    for title, key in rows.items():
        cells = readme(title)
        for model, name in [(0, variant), (1, "R50")]:
            ms, share = cells[2 * (col + model)], cells[2 * (col + model) + 1]
            part = run["models"][model]["components"][key]
            f.close(f"{name} {title} ms", part["ms"], ms)
            f.close(f"{name} {title} share %", 100 * part["share"], share)
    totals = readme("total")
    for model, name in [(0, variant), (1, "R50")]:
        f.close(
            f"{name} total ms",
            run["models"][model]["components"]["total"]["ms"],
            totals[col + model],
        )
    ratios = readme("whole_ratio")
    f.close(
        "latency ratio to R50", run["comparison"]["latency"]["median_of_ratios"], ratios[col // 2]
    )
    b0_ratio, b2_ratio, b2_share = readme("whole_default")
    default = benchmark("--config-file", CONFIGS[variant], *compare, "--layout", "default")
    f.close(
        "default layout: latency ratio",
        default["comparison"]["latency"]["median_of_ratios"],
        {"b0": b0_ratio, "b2": b2_ratio}[variant],
    )
    if variant == "b2":
        bottom_up = default["models"][0]["components"]["bottom_up"]["share"]
        f.close("default layout: bottom-up share %", 100 * bottom_up, b2_share)
    f.check()


@pytest.mark.benchmark
@pytest.mark.parametrize("name", EXPORT_ROWS)
def test_export_speed(name):
    """A row of the export table: `--task export` (b0: about 2 min, b2: about 3 min)."""
    eager_s, ort_x, ort_std_x, openvino_x = readme(f"export_{name}")
    family, variant = name.rsplit("_", 1)
    config = f"configs/COCO/{family}_pvt_v2_{variant}_fpn_1x.py"
    r = benchmark("--config-file", config, "--task", "export", "--iters", "3", *THREADS)
    (m,) = r["export"]
    _export_figures(m, eager_s, ort_x, ort_std_x, openvino_x).check()


def _export_figures(m: dict, eager_s, ort_x, ort_std_x, openvino_x) -> Figures:
    """One `--task export` model's eager time and ratios against the README's."""
    sides = m["sides"]
    f = Figures()
    f.close("eager s", sides["eager"]["median_ms"] / 1000, eager_s)
    f.close("ONNX Runtime / eager", sides["onnxruntime"]["ratio_to_eager"], ort_x)
    f.close(
        "ONNX Runtime, standard ops / eager", sides["onnxruntime_std"]["ratio_to_eager"], ort_std_x
    )
    if "openvino" in sides:
        f.close("OpenVINO / eager", sides["openvino"]["ratio_to_eager"], openvino_x)
    return f


@pytest.mark.benchmark
def test_export_speed_at_score_threshold_0():
    """The export paragraph at score threshold 0 (b0 Mask R-CNN, 100 detections, per-class NMS
    over 80,000 boxes; 5 iterations): about 3 min."""
    eager_s, ort_x, ort_std_x, openvino_x, detections = readme("export_thresh0")
    thresh = "model.roi_heads.box_predictor.test_score_thresh=0.0"
    r = benchmark("--config-file", B0, "--task", "export", "--iters", "5", *THREADS, thresh)
    (m,) = r["export"]
    f = _export_figures(m, eager_s, ort_x, ort_std_x, openvino_x)
    for side in ("onnxruntime", "onnxruntime_std"):
        f.exact(f"{side} detections", m["sides"][side]["vs_eager"]["detections"][1], detections)
    f.check()


@pytest.mark.benchmark
def test_activation_checkpointing_memory():
    """`--task train --batch-size 2 --compare-act-checkpoint` on b2 (about 10 min, 9 GB)."""
    plain_mb, ckpt_mb, saved, more_time = readme("act_checkpoint")
    r = benchmark(
        "--config-file", B2, "--task", "train", "--batch-size", "2", "--compare-act-checkpoint",
        "--no-flops", *THREADS,
    )  # fmt: skip
    ckpt, plain = r["models"]
    a = r["act_checkpoint"]
    f = Figures()
    f.close("peak MB without", plain["peak_memory_mb"], plain_mb)
    f.close("peak MB with", ckpt["peak_memory_mb"], ckpt_mb)
    f.close("peak memory saved %", 100 * a["peak_memory_reduction"], saved)
    f.close("more time %", 100 * (a["time_ratio"]["median_of_ratios"] - 1), more_time)
    f.exact("first-step loss difference", a["max_loss_diff_separate_processes"], 0.0)
    f.check()


@pytest.mark.benchmark
def test_fp16_and_bf16_on_the_cpu(tmp_path, tiny_dataset):
    """2 iterations + evaluation of the tests' tiny set with train_net.py (about 3 min)."""
    fp16_s, bf16_s = readme("amp")
    f = Figures()
    for precision, figure in [("fp16", fp16_s), ("bf16", bf16_s)]:
        (tmp_path / precision).mkdir()
        config = tiny_config(tmp_path / precision, tiny_dataset, max_iter=2, eval_period=100)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(REPO / "train_net.py"), "--config-file", str(config)]
            + ["train.amp.enabled=True", f"train.amp.precision={precision}"]
            + ["model.backbone.bottom_up.channels_last=True"],
            check=True,
            capture_output=True,
            env=subprocess_env(),
            cwd=REPO,
        )
        f.close(f"{precision} s", time.perf_counter() - start, figure)
    f.check()


@pytest.mark.benchmark
def test_make_demo(tmp_path):
    """`make demo`, the whole of it, into a temporary folder (about 5 min here)."""
    minutes, seconds = readme("demo_wall")
    iters, train_min, train_s, per_iter, eval_s = readme("demo_steps")
    out = tmp_path / "demo"
    r = subprocess.run(
        ["make", "-s", "demo", f"PY={sys.executable}"],
        capture_output=True,
        text=True,
        env=subprocess_env(OUT=str(out), DATA=str(tmp_path / "synthetic")),
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    f = Figures()
    (wall,) = re.findall(r"make demo: (\d+) s wall time", r.stdout)
    f.close("make demo wall s", float(wall), 60 * minutes + seconds)
    log = (out / "log.txt").read_text()
    (train_time,) = re.findall(r"Total training time: (\S+) \(", log)
    (speed,) = re.findall(r"Overall training speed: \d+ iterations in \S+ \(([\d.]+) s / it\)", log)
    (inference,) = re.findall(r"Total inference time: (\S+) \(", log)
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    f.exact("iterations", 1 + max(m["iteration"] for m in rows if "total_loss" in m), iters)
    f.close("training s", _seconds(train_time), 60 * train_min + train_s)
    f.close("s/iteration", float(speed), per_iter)
    f.close("evaluation s", _seconds(inference), eval_s)
    results = json.loads((out / "eval_results.json").read_text())
    keys = ["AP", "AP50", "AP75", "APs", "APm", "AP-circle", "AP-triangle", "AP-square"]
    for task in ("bbox", "segm"):
        cells = readme(f"demo_{task}")
        for key, value in zip(keys, cells):
            f.close(f"{task} {key}", results[task][key], value)
    f.check()


def _train_until_evaluated(config, args, out, iteration):
    """train_net.py on ``config`` until its evaluation at ``iteration``; that metrics row."""
    proc = subprocess.Popen(
        [sys.executable, "train_net.py", "--config-file", config, *args]
        + [f"train.eval_period={iteration}", f"train.output_dir={out}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=subprocess_env(),
        cwd=REPO,
    )
    row = None
    try:
        while row is None and proc.poll() is None:
            time.sleep(5)
            if (out / "metrics.json").is_file():
                rows = [
                    json.loads(line) for line in (out / "metrics.json").read_text().splitlines()
                ]
                row = next(
                    (
                        m
                        for m in rows
                        if m.get("iteration") == iteration - 1
                        and any(k.startswith(("sem_seg/", "classification/")) for k in m)
                    ),
                    None,
                )
    finally:
        proc.terminate()
        proc.wait()
    assert row is not None, f"train_net.py stopped before its evaluation at {iteration}"
    return row


@pytest.mark.benchmark
def test_semantic_synthetic_miou(tmp_path):
    """The concat-head synthetic config until its evaluation at iteration 500 (about 15 min)."""
    miou, pacc, background, circle, triangle, square, minutes, seconds = readme("semantic")
    data = tmp_path / "synthetic"
    run_tool("datasets/prepare_synthetic.py", "--out", data)
    args = [f"dataset.{s}_{k}={data}/{s}/{d}" for s in ("train", "val")
            for k, d in (("images", "images"), ("labels", "sem_seg"))]  # fmt: skip
    start = time.perf_counter()
    row = _train_until_evaluated(
        "configs/SemSeg/pvt_v2_b0_fpn_concat_synthetic.py", args, tmp_path / "out", 500
    )
    elapsed = time.perf_counter() - start
    f = Figures()
    f.exact("evaluated at iteration", row["iteration"] + 1, 500)
    f.close("minutes to the evaluation", elapsed / 60, minutes + seconds / 60)
    for key, value in [("mIoU", miou), ("pACC", pacc), ("IoU-background", background)]:
        f.close(key, row[f"sem_seg/{key}"], value)
    for key, value in [("circle", circle), ("triangle", triangle), ("square", square)]:
        f.close(f"IoU-{key}", row[f"sem_seg/IoU-{key}"], value)
    f.check()


@pytest.mark.benchmark
@pytest.mark.parametrize("head", ["concat", "semantic_fpn", "upernet"])
def test_semantic_heads_at_the_same_iteration(tmp_path, head):
    """The three heads' synthetic configs until their evaluation at iteration 500 (about 10 min
    each); UPerNet also to 1000."""
    config = re.search(r"`([^`]+)`", FIGURES[f"semseg_{head}"].replace("\\", "")).group(1)
    miou, pacc = readme(f"semseg_{head}")
    data = tmp_path / "synthetic"
    run_tool("datasets/prepare_synthetic.py", "--out", data)
    args = [f"dataset.{s}_{k}={data}/{s}/{d}" for s in ("train", "val")
            for k, d in (("images", "images"), ("labels", "sem_seg"))]  # fmt: skip
    iterations = [500, 1000] if head == "upernet" else [500]
    f = Figures()
    for it, (m, p) in zip(iterations, [(miou, pacc)] + [readme("upernet_1000")]):
        row = _train_until_evaluated(f"configs/SemSeg/{config}", args, tmp_path / str(it), it)
        f.close(f"mIoU at {it}", row["sem_seg/mIoU"], m)
        f.close(f"pixel accuracy at {it}", row["sem_seg/pACC"], p)
    f.check()


@pytest.mark.benchmark
@pytest.mark.parametrize("head", ["p5", "res5"])
def test_classifier_heads(tmp_path, head):
    """The classification demo, GAP of P5 against GAP of res5, 600 iterations (a few min)."""
    config = re.search(r"`([^`]+)`", FIGURES[f"classifier_{head}"].replace("\\", "")).group(1)
    top1, mean_acc = readme(f"classifier_{head}")
    data = tmp_path / "synthetic"
    run_tool("datasets/prepare_synthetic.py", "--out", data, "--classification")
    args = [f"dataset.{s}_root={data}/classification/{s}" for s in ("train", "val")]
    row = _train_until_evaluated(f"configs/Classification/{config}", args, tmp_path / "o", 600)
    f = Figures()
    f.close("top-1", row["classification/top1"], top1)
    f.close("mean class accuracy", row["classification/mean_class_acc"], mean_acc)
    f.check()


@pytest.mark.benchmark
def test_depth_against_the_mean_baseline(tmp_path):
    """The depth demo (600 iterations, a few min) and the predict-the-mean baseline."""
    from pvt_fpn_d2.data import generate_synthetic_depth, read_depth
    from pvt_fpn_d2.evaluation import depth_metrics

    trained, mean_row = readme("depth"), readme("depth_mean")
    out = generate_synthetic_depth(str(tmp_path / "depth"))
    train = [read_depth(str(f), 1000) for f in sorted(Path(out["train"]["depth_root"]).glob("*"))]
    mean = float(np.mean(np.concatenate([t.ravel() for t in train])))
    val = [read_depth(str(f), 1000) for f in sorted(Path(out["val"]["depth_root"]).glob("*"))]
    base = [depth_metrics(np.full(g.shape, mean), g) for g in val]
    args = [f"dataset.{s}_{k}={out[s if s == 'train' else 'val'][d]}" for s in ("train", "val")
            for k, d in (("images", "image_root"), ("depth", "depth_root"))]  # fmt: skip
    row = _train_until_evaluated(
        "configs/Depth/depth_pvt_v2_b0_synthetic.py", args, tmp_path / "o", 600
    )
    f = Figures()
    for i, key in enumerate(("abs_rel", "rmse", "d1", "d2")):
        f.close(f"mean baseline {key}", float(np.mean([m[key] for m in base])), mean_row[i])
        f.close(f"trained {key}", row[f"depth/{key}"], trained[i])
    f.check()


@pytest.mark.benchmark
def test_finetune_walkthrough(tmp_path):
    """The README's fine-tuning walk-through as written (data, check, 10 iterations, eval)."""
    objects, most, minutes, seconds, per_iteration = readme("finetune")
    d = tmp_path / "synthetic_small"
    run = dict(check=True, capture_output=True, text=True, env=subprocess_env(), cwd=REPO)
    subprocess.run(
        [sys.executable, "datasets/prepare_synthetic.py", "--out", str(d)]
        + ["--num-train", "60", "--num-val", "10", "--no-semantic"],
        **run,
    )
    check = subprocess.run(
        [sys.executable, "-m", "pvt_fpn_d2.check_dataset"]
        + ["--json", f"{d}/train/annotations.json", "--images", f"{d}/train/images"],
        **run,
    ).stdout
    data = [f"dataset.{s}_json={d}/{s}/annotations.json" for s in ("train", "val")]
    data += [f"dataset.{s}_images={d}/{s}/images" for s in ("train", "val")]
    out = tmp_path / "out"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "train_net.py", "--config-file"]
        + ["configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py", *data, "train.init_checkpoint="]
        + ["train.max_iter=10", "train.eval_period=10", "dataloader.train.total_batch_size=2"]
        + [f"train.output_dir={out}"],
        **run,
    )
    wall = time.perf_counter() - start
    (train_time,) = re.findall(r"Total training time: (\S+) \(", (out / "log.txt").read_text())
    f = Figures()
    f.exact(
        "objects with a mask", float(re.findall(r"masks: all (\d+) objects", check)[0]), objects
    )
    f.exact("most objects in one image", float(re.findall(r"one image: (\d+)", check)[0]), most)
    f.close("train + eval, s", wall, 60 * minutes + seconds)
    f.close("s per iteration", _seconds(train_time) / 10, per_iteration)
    f.check()
