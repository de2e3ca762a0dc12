"""
Every measured figure of the docs (README.md and docs/*.md), re-measured by the command its
table's header names and compared with the docs' own text.

The deterministic figures (the model-zoo sizes, attention blocks) are checked by `make test`.
The measurements are marked ``benchmark`` and left out of `make test` (setup.cfg); run them on
an idle machine like the one a table names (2-core CPU, no GPU), one figure or all:

  python -m pytest -m benchmark -s tests/test_doc_figures.py -k eval_speed   # ~1 min
  python -m pytest -m benchmark -s tests/test_doc_figures.py                # ~2 h

Each prints "figure: measured M, docs R" lines and fails when a figure is off by more than
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

from .conftest import REPO, load_script, run_tool, run_train_net, subprocess_env, tiny_config

#: The one tolerance of the measured figures: a re-run may differ from the docs by this fraction
#: of the docs' value (times, ratios, memory, and AP or mIoU after CPU training, which move
#: with the machine, its load and its thread count). Counts, sizes and GFLOPs are exact: equal to
#: the docs' printed digits.
TOLERANCE = 0.25

#: the pages whose figures are checked, as one text
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOCS = "\n".join(page.read_text() for page in PAGES)
README = (REPO / "README.md").read_text()
MODEL_ZOO = (REPO / "docs" / "MODEL_ZOO.md").read_text()
B0 = "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"
B2 = "configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py"
CONFIGS = {"b0": B0, "b2": B2}
CL = "model.backbone.bottom_up.channels_last="
# the tables' settings: 2 torch threads, fp32, 800x1333, batch 1
THREADS = ["--threads", "2"]


N = r"(\d+(?:\.\d+)?)"  # a number


def sentence(pattern: str) -> str:
    """``pattern`` with each space matching any line break a page's wrapping puts there."""
    return pattern.replace(" ", r"\s+")


#: the seeds of the demo's table (docs/GETTING_STARTED.md)
DEMO_SEEDS = (0, 1, 2)
#: how far the demo's expected range (tools/demo_summary.py) reaches beyond its lowest and
#: highest run, each side, in AP
DEMO_MARGIN = 1.5

#: rows of the export speed table: figure name -> the row's title
EXPORT_ROWS = {
    "mask_rcnn_b0": "Mask R-CNN b0",
    "mask_rcnn_b2": "Mask R-CNN b2",
    "retinanet_b0": "RetinaNet b0",
    "retinanet_b2": "RetinaNet b2",
}
#: rows of the int8 AP table (docs/DEPLOYMENT.md): the config trained -> the row's title
INT8_AP_ROWS = {
    "mask_rcnn_pvt_v2_b0_fpn_synthetic": r"Mask R-CNN b0 \(`make demo`, seed 0\)",
    "retinanet_pvt_v2_b0_fpn_synthetic": r"RetinaNet b0 \(`retinanet_pvt_v2_b0_fpn_synthetic\.py`, "
    r"seed 0\)",
}
ROW4 = r" \| (\d+) \((\d+)%\) \| (\d+) \((\d+)%\) \| (\d+) \((\d+)%\) \| (\d+) \((\d+)%\) \|"
#: Where each figure is in the docs' text (one match each; a line break is \s+ or \n).
FIGURES = {
    "attention": r"\| (\d+) in b2, (\d+) in b0 \(`F.scaled_dot_product_attention`\)",
    "eval": rf"\| bbox \| {N} s \| {N} s \| {N}x \|\n\| segm \| {N} s \| {N} s \| {N}x \|\n"
    rf"\| together \| \| \| {N}x \|",
    "eval_detections": r"\(500 synthetic images, 20 objects each, ([\d,]+) detections\)",
    **{
        f"backbone_{v}": rf"\| PVT-v2-{v} \| {N} \| {N}x \| \*\*{N}x\*\* \((\d+) ms vs (\d+) ms\) "
        rf"\| {N}x \| {N}x \|"
        for v in ("b0", "b2")
    },
    "vs_timm": rf"time ratio {N}, outputs identical \(difference 0\)",
    "channels_last": rf"time b2 {N}x, b0 {N}x; peak memory b2 -(\d+)%, b0 -(\d+)%; outputs equal "
    r"to ([\d.e-]+) \(b2\), ([\d.e-]+) \(b0\)",
    "fused_gelu": rf"against timm's two ops \| {N}x \| {N}x \| 0 \|",
    "bottom-up": r"\| bottom-up" + ROW4,
    "FPN": r"\| FPN" + ROW4,
    "proposal generator": r"\| proposal generator" + ROW4,
    "ROI heads": r"\| ROI heads" + ROW4,
    "total": r"\| total \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|",
    **{
        f"export_{name}": rf"\| {title} \| {N} s \| {N}x \| {N}x \| {N}x \|"
        for name, title in EXPORT_ROWS.items()
    },
    **{
        f"int8_{name}": rf"\| {title} \| {N} s \| {N}x \| {N}x \|\n"
        for name, title in EXPORT_ROWS.items()
    },
    "int8_demo": rf"\| Mask R-CNN b0, 160x160 \(`make demo`\) \| {N} ms \| {N}x \| {N}x \|",
    **{
        f"int8_ap_{name}": rf"\| {title} \| {N} \| {N} \| "
        + (rf"{N} \| {N} \|" if name.startswith("mask") else r"- \| - \|")
        for name, title in INT8_AP_ROWS.items()
    },
    "export_thresh0": r"\| Mask R-CNN b0, score threshold 0 \((\d+) detections\) "
    rf"\| {N} s \| {N}x \| {N}x \| {N}x \|",
    "whole_ratio": rf"\*\*latency ratio to R50\*\* \| \*\*{N}x\*\* \| \| \*\*{N}x\*\*",
    "whole_gflops": rf"\| GFLOPs \(fvcore\) \| {N} \| {N} \| {N} \| {N} \|\n"
    rf"\| FLOP ratio to R50 \| {N}x \| \| {N}x \| \|",
    "whole_default": rf"\| latency ratio, both in the default layout \| {N}x \| \| {N}x "
    r"\(bottom-up (\d+)%\) \| \|",
    "act_checkpoint": r"peak memory (\d+) MB -> (\d+) MB \(-([\d.]+)%\), (\d+)% more time, "
    r"first-step losses identical \(difference 0\)",
    "amp": r"\| fp16 (\d+) s, bf16 (\d+) s \|",
    "demo_seeds": "\\n".join(
        rf"\| {seed} \| {N} \| {N} \| (\d+) min (\d+) s \|" for seed in DEMO_SEEDS
    ),
    "demo_mean": rf"\| \*\*mean \(min-max\)\*\* \| \*\*{N} \({N}-{N}\)\*\* "
    rf"\| \*\*{N} \({N}-{N}\)\*\* \| \|",
    "demo_range": sentence(rf"within box AP {N}-{N} and mask AP {N}-{N}"),
    "demo_steps": rf"(\d+) iterations of 4 images in (\d+) min (\d+) s at {N} s/iteration,\s+"
    r"evaluation of the 50 validation images in (\d+) s",
    "data": r"\| start to the first training batch \| evaluator set-up \| peak memory \|\n"
    rf"\|---\|---\|---\|\n\| {N} s \| {N} s \| (\d+) MB \|",
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
    "finetune": sentence(
        r"as written: (\d+) min (\d+) s in all. The check prints `masks: all (\d+) objects have "
        r"a mask` and `most objects in one image: (\d+) \(000013.jpg\)`; each of the 10 "
        rf"iterations of 2 images takes {N} s"
    ),
}


def documented(figure: str):
    """The numbers of a figure of the docs (FIGURES), as floats."""
    found = re.findall(FIGURES[figure], DOCS)
    assert len(found) == 1, f"docs: {len(found)} matches of {figure!r}: {FIGURES[figure]!r}"
    groups = found[0] if isinstance(found[0], tuple) else (found[0],)
    return [float(g.replace(",", "")) for g in groups]


class Figures:
    """Measured figures against the docs', printed, then checked together."""

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
            print(f"{'ok  ' if ok else 'OFF '} {name}: measured {m:.4g}, docs {r:g} ({how})")
        off = [row[0] for row in self.rows if not row[3]]
        assert not off, f"figures off the docs: {off}"


def benchmark(*args) -> dict:
    """tools/benchmark.py with these arguments, in this process; its figures."""
    return load_script("tools/benchmark.py", "benchmark_tool").main([*map(str, args)])


def _seconds(text: str) -> float:
    """'0:08:42' or '0:00:03.912' -> seconds."""
    h, m, s = text.split(":")
    return 3600 * int(h) + 60 * int(m) + float(s)


# ------------------------------------------------------------------------- exact, in make test


@pytest.mark.parametrize("figure", FIGURES)
def test_the_benchmarks_find_their_figure_in_the_docs(figure):
    """A docs edit that moves a figure out of a benchmark's sight fails here, in make test."""
    assert documented(figure)


def test_model_zoo_table_is_what_the_configs_build():
    """MODEL_ZOO.md's table is `python tools/model_zoo_table.py`'s output, row for row."""
    rows = load_script("tools/model_zoo_table.py", "table").table()
    assert len(rows) == 2 + len(list((REPO / "configs" / "COCO").glob("*.py")))
    missing = [row for row in rows if row not in MODEL_ZOO.splitlines()]
    assert missing == [], f"docs/MODEL_ZOO.md rows differ from tools/model_zoo_table.py: {missing}"


def test_readme_model_zoo_rows_agree_with_the_full_table():
    """Each row of the README's short table has the size and AP of MODEL_ZOO.md's row."""
    cell = r"\| \[(\w+)\]\((?:\.\./)?configs/COCO/\1\.py\) \| "
    short = re.findall(cell + r"([\d.]+M) \| ([\d.-]+) \| ([\d.-]+) \|$", README, re.M)
    full = {
        name: (params, box, mask)
        for name, params, _, box, mask in re.findall(
            cell + r"([\d.]+M) \| ([\d.M-]+) \| ([\d.-]+) \| ([\d.-]+) \|$", MODEL_ZOO, re.M
        )
    }
    n = len(list((REPO / "configs" / "COCO").glob("*.py")))
    assert len(short) >= 4 and len(full) == n, (len(short), len(full), n)
    for name, params, box, mask in short:
        assert full[name] == (params, box, mask), f"README row {name} differs from MODEL_ZOO.md"


def test_attention_blocks_of_b0_and_b2():
    import torch

    from pvt_fpn_d2 import PVTv2Backbone
    from benchmarks import attention_modules

    b2, b0 = documented("attention")
    with torch.device("meta"):
        assert len(attention_modules(PVTv2Backbone("pvt_v2_b2"))) == b2
        assert len(attention_modules(PVTv2Backbone("pvt_v2_b0"))) == b0


# ------------------------------------------------------------------------ measured: benchmark


@pytest.mark.benchmark
def test_eval_speedup():
    """`python tools/benchmark.py --task eval` (about 1 min)."""
    bbox_fast, bbox_py, bbox_x, segm_fast, segm_py, segm_x, both = documented("eval")
    (detections,) = documented("eval_detections")
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
    first_batch, evaluator, peak = documented("data")
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
    default) (b0: about 2 min, b2: about 4 min on the table's machine)."""
    gflops, gflops_x, best_x, best_ms, r50_ms, default_x, oob_x = documented(f"backbone_{variant}")
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
    (ratio,) = documented("vs_timm")
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
    b2_x, b0_x, b2_mem, b0_mem, b2_diff, b0_diff = documented("channels_last")
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
    b2_x, b0_x = documented("fused_gelu")
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
    table's machine)."""
    col = {"b0": 0, "b2": 2}[variant]
    rows = {"bottom-up": "bottom_up", "FPN": "fpn", "proposal generator": "proposal_generator"}
    rows.update({"ROI heads": "roi_heads"})
    compare = ["--task", "inference", "--compare", "detectron2:R50-FPN", *THREADS]
    run = benchmark("--config-file", CONFIGS[variant], *compare, "--layout", "best")
    compare.append("--no-flops")
    f = Figures()
    b0_gflops, r50_gflops, b2_gflops, _, b0_x, b2_x = documented("whole_gflops")
    gflops, x = {"b0": (b0_gflops, b0_x), "b2": (b2_gflops, b2_x)}[variant]
    f.exact("whole-model GFLOPs", run["models"][0]["gflops"], gflops, 1)
    f.exact("R50 whole-model GFLOPs", run["models"][1]["gflops"], r50_gflops, 1)
    f.exact("whole-model FLOP ratio", run["comparison"]["gflops_ratio"], x, 2)
    for title, key in rows.items():
        cells = documented(title)
        for model, name in [(0, variant), (1, "R50")]:
            ms, share = cells[2 * (col + model)], cells[2 * (col + model) + 1]
            part = run["models"][model]["components"][key]
            f.close(f"{name} {title} ms", part["ms"], ms)
            f.close(f"{name} {title} share %", 100 * part["share"], share)
    totals = documented("total")
    for model, name in [(0, variant), (1, "R50")]:
        f.close(
            f"{name} total ms",
            run["models"][model]["components"]["total"]["ms"],
            totals[col + model],
        )
    ratios = documented("whole_ratio")
    f.close(
        "latency ratio to R50", run["comparison"]["latency"]["median_of_ratios"], ratios[col // 2]
    )
    b0_ratio, b2_ratio, b2_share = documented("whole_default")
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
    eager_s, ort_x, ort_std_x, openvino_x = documented(f"export_{name}")
    family, variant = name.rsplit("_", 1)
    config = f"configs/COCO/{family}_pvt_v2_{variant}_fpn_1x.py"
    r = benchmark("--config-file", config, "--task", "export", "--iters", "3", *THREADS)
    (m,) = r["export"]
    _export_figures(m, eager_s, ort_x, ort_std_x, openvino_x).check()


def _export_figures(m: dict, eager_s, ort_x, ort_std_x, openvino_x) -> Figures:
    """One `--task export` model's eager time and ratios against the docs'."""
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
@pytest.mark.parametrize("name", EXPORT_ROWS)
def test_int8_speed(name):
    """A row of the int8 speed table (docs/DEPLOYMENT.md): `--task export`'s eager time and the
    fp32 and int8 files' ratios to it (b0: about 3 min, b2: about 5 min)."""
    eager_s, ort_x, int8_x = documented(f"int8_{name}")
    family, variant = name.rsplit("_", 1)
    config = f"configs/COCO/{family}_pvt_v2_{variant}_fpn_1x.py"
    r = benchmark("--config-file", config, "--task", "export", "--iters", "3", *THREADS)
    (m,) = r["export"]
    f = Figures()
    f.close("eager s", m["sides"]["eager"]["median_ms"] / 1000, eager_s)
    f.close("ONNX Runtime fp32 / eager", m["sides"]["onnxruntime"]["ratio_to_eager"], ort_x)
    f.close("ONNX Runtime int8 / eager", m["sides"]["onnxruntime_int8"]["ratio_to_eager"], int8_x)
    f.check()


@pytest.mark.benchmark
def test_int8_ap_and_speed_of_the_trained_synthetic_models(tmp_path):
    """The int8 AP table and the demo-size speed row (docs/DEPLOYMENT.md): each synthetic config
    trained with seed 0, exported with --quantize int8 --evaluate; both files' AP against the
    table's, and int8 loses at most 1 AP (about 12 min)."""
    f = Figures()
    for config in INT8_AP_ROWS:
        fp32_box, int8_box, *masks = documented(f"int8_ap_{config}")  # masks: Mask R-CNN
        cfg_file = f"configs/synthetic/{config}.py"
        out = tmp_path / config
        run_train_net("--config-file", cfg_file, f"train.output_dir={out}", timeout=1200)
        run_tool("tools/export_model.py", "--config-file", cfg_file, "--checkpoint",
                 out / "model_final.pth", "--output", out / "onnx", "--quantize", "int8",
                 "--evaluate")  # fmt: skip
        ap = json.loads((out / "onnx" / "export.json").read_text())["int8"]["ap"]
        fp32, int8 = ap["model.onnx"], ap["model_int8.onnx"]
        f.close(f"{config} fp32 box AP", fp32["bbox"], fp32_box)
        f.close(f"{config} int8 box AP", int8["bbox"], int8_box)
        f.exact(f"{config} int8 box AP lost <= 1", fp32["bbox"] - int8["bbox"] <= 1.0, True)
        if masks:
            f.close(f"{config} fp32 mask AP", fp32["segm"], masks[0])
            f.close(f"{config} int8 mask AP", int8["segm"], masks[1])
            f.exact(f"{config} int8 mask AP lost <= 1", fp32["segm"] - int8["segm"] <= 1.0, True)
        if config.startswith("mask_rcnn"):
            eager_ms, ort_x, int8_x = documented("int8_demo")
            r = benchmark("--task", "export", "--onnx", out / "onnx", "--image-size", "160", "160",
                          "--iters", "20", "--warmup", "2", *THREADS)  # fmt: skip
            (m,) = r["export"]
            f.close("demo size: eager ms", m["sides"]["eager"]["median_ms"], eager_ms)
            f.close("demo size: fp32 / eager", m["sides"]["onnxruntime"]["ratio_to_eager"], ort_x)
            f.close(
                "demo size: int8 / eager", m["sides"]["onnxruntime_int8"]["ratio_to_eager"], int8_x
            )
    f.check()


@pytest.mark.benchmark
def test_export_speed_at_score_threshold_0():
    """The export paragraph at score threshold 0 (b0 Mask R-CNN, 100 detections, per-class NMS
    over 80,000 boxes; 5 iterations): about 3 min."""
    detections, eager_s, ort_x, ort_std_x, openvino_x = documented("export_thresh0")
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
    plain_mb, ckpt_mb, saved, more_time = documented("act_checkpoint")
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
    fp16_s, bf16_s = documented("amp")
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


def _demo_rows():
    """The demo table's runs: {seed: (box AP, mask AP, wall s)}."""
    cells = documented("demo_seeds")
    return {
        seed: (cells[4 * i], cells[4 * i + 1], 60 * cells[4 * i + 2] + cells[4 * i + 3])
        for i, seed in enumerate(DEMO_SEEDS)
    }


def test_demo_table_mean_range_and_the_summary_tools_range_agree():
    """The demo table's mean and min-max are its runs'; the range `make demo` judges a run by
    (tools/demo_summary.py) is theirs widened by DEMO_MARGIN, and the docs say so."""
    rows = _demo_rows()
    expected = []
    for task, i in (("bbox", 0), ("segm", 1)):
        aps = [r[i] for r in rows.values()]
        expected += [round(sum(aps) / len(aps), 1), min(aps), max(aps)]
    assert documented("demo_mean") == expected
    tool = load_script("tools/demo_summary.py", "demo_summary")
    b_lo, b_hi, s_lo, s_hi = documented("demo_range")
    assert tool.EXPECTED == {"bbox": (b_lo, b_hi), "segm": (s_lo, s_hi)}
    _, b_min, b_max, _, s_min, s_max = expected
    widened = [b_min - DEMO_MARGIN, b_max + DEMO_MARGIN, s_min - DEMO_MARGIN, s_max + DEMO_MARGIN]
    assert [b_lo, b_hi, s_lo, s_hi] == pytest.approx(widened, abs=1e-6)


@pytest.mark.benchmark
def test_make_demo(tmp_path):
    """`make demo` with each seed of the table, one after another (about 5 min each here): each
    run within the documented range, and the spread over the seeds at most 3 AP."""
    rows = _demo_rows()
    iters, train_min, train_s, per_iter, eval_s = documented("demo_steps")
    f = Figures()
    measured = {}
    for seed in DEMO_SEEDS:
        out = tmp_path / f"demo_{seed}"
        r = subprocess.run(
            ["make", "-s", "demo", f"PY={sys.executable}"],
            capture_output=True,
            text=True,
            env=subprocess_env(
                OUT=str(out), DATA=str(tmp_path / "synthetic"), ARGS=f"train.seed={seed}"
            ),
            cwd=REPO,
        )
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
        (wall,) = re.findall(r"make demo: (\d+) s wall time", r.stdout)
        results = json.loads((out / "eval_results.json").read_text())
        measured[seed] = (results["bbox"]["AP"], results["segm"]["AP"])
        box, mask, doc_wall = rows[seed]
        f.close(f"seed {seed} box AP", measured[seed][0], box)
        f.close(f"seed {seed} mask AP", measured[seed][1], mask)
        f.close(f"seed {seed} wall s", float(wall), doc_wall)
        f.exact(f"seed {seed} said as expected", "as expected:" in r.stdout, True)
        if seed == DEMO_SEEDS[0]:
            log = (out / "log.txt").read_text()
            (train_time,) = re.findall(r"Total training time: (\S+) \(", log)
            (speed,) = re.findall(
                r"Overall training speed: \d+ iterations in \S+ \(([\d.]+) s / it\)", log
            )
            (inference,) = re.findall(r"Total inference time: (\S+) \(", log)
            logged = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
            last = max(m["iteration"] for m in logged if "total_loss" in m)
            f.exact("iterations", 1 + last, iters)
            f.close("training s", _seconds(train_time), 60 * train_min + train_s)
            f.close("s/iteration", float(speed), per_iter)
            f.close("evaluation s", _seconds(inference), eval_s)
    for task, i in (("box", 0), ("mask", 1)):
        aps = [m[i] for m in measured.values()]
        f.exact(f"{task} AP max-min <= 3.0", max(aps) - min(aps) <= 3.0, True)
    f.exact("mean mask AP >= 40", sum(m[1] for m in measured.values()) / 3 >= 40.0, True)
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
@pytest.mark.parametrize("head", ["concat", "semantic_fpn", "upernet"])
def test_semantic_heads_at_the_same_iteration(tmp_path, head):
    """The three heads' synthetic configs until their evaluation at iteration 500 (about 10 min
    each); UPerNet also to 1000."""
    config = re.search(r"`([^`]+)`", FIGURES[f"semseg_{head}"].replace("\\", "")).group(1)
    miou, pacc = documented(f"semseg_{head}")
    data = tmp_path / "synthetic"
    run_tool("datasets/prepare_synthetic.py", "--out", data)
    args = [f"dataset.{s}_{k}={data}/{s}/{d}" for s in ("train", "val")
            for k, d in (("images", "images"), ("labels", "sem_seg"))]  # fmt: skip
    iterations = [500, 1000] if head == "upernet" else [500]
    f = Figures()
    for it, (m, p) in zip(iterations, [(miou, pacc)] + [documented("upernet_1000")]):
        row = _train_until_evaluated(f"configs/SemSeg/{config}", args, tmp_path / str(it), it)
        f.close(f"mIoU at {it}", row["sem_seg/mIoU"], m)
        f.close(f"pixel accuracy at {it}", row["sem_seg/pACC"], p)
    f.check()


@pytest.mark.benchmark
@pytest.mark.parametrize("head", ["p5", "res5"])
def test_classifier_heads(tmp_path, head):
    """The classification demo, GAP of P5 against GAP of res5, 600 iterations (a few min)."""
    config = re.search(r"`([^`]+)`", FIGURES[f"classifier_{head}"].replace("\\", "")).group(1)
    top1, mean_acc = documented(f"classifier_{head}")
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

    trained, mean_row = documented("depth"), documented("depth_mean")
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
def test_custom_data_walkthrough(tmp_path):
    """docs/CUSTOM_DATASETS.md's walk-through, run as written in a plain clone (data, check, 10
    iterations, evaluation, prediction; about 5 min): its wall time and the check's figures."""
    from .test_docs_run import plain_clone, run_block, runnable_block

    minutes, seconds, objects, most, per_iteration = documented("finetune")
    block = runnable_block(REPO / "docs" / "CUSTOM_DATASETS.md", "Walk-through")
    clone = plain_clone(tmp_path / "clone")
    start = time.perf_counter()
    out = run_block(block, clone, tmp_path, timeout=1800)
    wall = time.perf_counter() - start
    log = (clone / "output/finetune_small/log.txt").read_text()
    (train_time,) = re.findall(r"Total training time: (\S+) \(", log)
    results = json.loads((clone / "output/finetune_small/eval_results.json").read_text())
    predictions = json.loads(
        (clone / "output/finetune_small/predictions/predictions.json").read_text()
    )
    f = Figures()
    f.exact("objects with a mask", float(re.findall(r"masks: all (\d+) objects", out)[0]), objects)
    f.exact("most objects in one image", float(re.findall(r"one image: (\d+)", out)[0]), most)
    f.exact("bbox and segm evaluated", float({"bbox", "segm"} <= set(results)), 1.0)
    f.exact("validation images predicted", float(len(predictions["images"])), 10.0)
    f.close("whole walk-through, s", wall, 60 * minutes + seconds)
    f.close("s per iteration", _seconds(train_time) / 10, per_iteration)
    f.check()
