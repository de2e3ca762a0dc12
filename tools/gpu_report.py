#!/usr/bin/env python
"""
The GPU figures of docs/BENCHMARKS.md in one run: PVT-v2 against detectron2's ResNet-50 on one device.

  python tools/gpu_report.py --out output/gpu_report             # CUDA, 800x1333
  python tools/gpu_report.py --device cpu --iters 1 --image-size 64 96 --out /tmp/r  # a check

Each figure is one ``tools/benchmark.py`` run (random weights, nothing downloaded; the two
models of a comparison alternated iteration by iteration, same settings), for every variant in
``--variants``:

* backbone: the bottom-up network alone (PVT-v2-bN against R50), in fp32 and bf16 autocast;
* inference: the whole Mask R-CNN in eval mode (PVT-v2-bN FPN against detectron2's R50-FPN),
  in fp32 and bf16 autocast;
* train: one training step of batch ``--train-batch`` with and without activation
  checkpointing in the PVT-v2 backbone: images/s and peak memory, and the losses of both.

Writes ``OUT/report.json`` (the summary rows and every benchmark's full figures),
``OUT/report.md`` (the tables) and ``OUT/logs/*.txt`` (each benchmark's report).
"""

import argparse
import contextlib
import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tools/: benchmark, benchmarks

import benchmark  # noqa: E402

R50 = "detectron2:R50-FPN"
VARIANTS = ("b0", "b1", "b2", "b2_li", "b3", "b4", "b5")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(variant: str) -> str:
    return os.path.join(REPO, "configs", "COCO", f"mask_rcnn_pvt_v2_{variant}_fpn_1x.py")


def get_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="output/gpu_report", help="output folder")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--variants", nargs="+", default=["b0", "b2"], choices=VARIANTS)
    p.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"]
    )
    p.add_argument("--image-size", nargs=2, type=int, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--iters", type=int, default=20, help="timed iterations of each figure")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    p.add_argument("--train-batch", type=int, default=2, help="images per training step")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return p


build_parser = get_parser  # the former name


def _run(name: str, argv, out: str) -> dict:
    """One tools/benchmark.py run; its report goes to OUT/logs/NAME.txt, its figures returned."""
    buffer = io.StringIO()
    start = time.time()
    with contextlib.redirect_stdout(buffer):
        result = benchmark.main([*argv, "--json", os.path.join(out, "figures", f"{name}.json")])
    with open(os.path.join(out, "logs", f"{name}.txt"), "w") as f:
        f.write(" ".join(["tools/benchmark.py", *argv]) + "\n\n" + buffer.getvalue())
    print(f"  {name}: {time.time() - start:.0f} s", flush=True)
    return result


def _latency_row(kind, variant, precision, result) -> dict:
    a, b = result["models"]
    c = result["comparison"]
    return {
        "what": kind,
        "variant": f"pvt_v2_{variant}",
        "precision": precision,
        "pvt_ms": a["latency_ms"]["median"],
        "r50_ms": b["latency_ms"]["median"],
        "ratio": c["latency"]["median_of_ratios"],
        "pvt_peak_mb": a["peak_memory_mb"],
        "r50_peak_mb": b["peak_memory_mb"],
        "memory_kind": a["memory_kind"],
    }


def _train_rows(variant, result) -> list:
    rows = []
    for entry in result["models"]:  # A: with activation checkpointing, B: without
        rows.append(
            {
                "what": "train",
                "variant": f"pvt_v2_{variant}",
                "act_checkpoint": entry["use_act_checkpoint"],
                "images_per_s": entry["images_per_s"],
                "step_ms": entry["latency_ms"]["median"],
                "peak_mb": entry["peak_memory_mb"],
                "memory_kind": entry["memory_kind"],
                "first_step_total_loss": entry["first_step_losses"]["total"],
            }
        )
    return rows


def markdown(report: dict) -> str:
    s = report["settings"]
    env = report["environment"]
    device = env.get("gpu") or f"CPU {env.get('cpu_model')} x{env.get('cpu_count')}"
    lines = [
        f"# PVT-v2 against R50 on {device}",
        "",
        f"torch {env.get('torch')}, CUDA {env.get('cuda', '-')}, timm {env.get('timm')}; "
        f"{s['image_size'][0]}x{s['image_size'][1]}, batch 1 (training: {s['train_batch']}), "
        f"medians of {s['iters']} iterations after {s['warmup']}, random weights; "
        f"ratio: median of per-iteration PVT/R50 ratios (runs alternated).",
        "",
        "| network | variant | precision | PVT-v2 (ms) | R50 (ms) | PVT-v2 / R50 |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if r["what"] in ("backbone", "inference"):
            network = "bottom-up network" if r["what"] == "backbone" else "whole Mask R-CNN"
            lines.append(
                f"| {network} | {r['variant']} | {r['precision']} | {r['pvt_ms']:.1f} | "
                f"{r['r50_ms']:.1f} | {r['ratio']:.2f}x |"
            )
    lines += [
        "",
        f"Training, one step of {s['train_batch']} images (fp32, AdamW):",
        "",
        "| variant | activation checkpointing | images/s | step (ms) | peak memory (MB) |",
        "|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if r["what"] == "train":
            lines.append(
                f"| {r['variant']} | {'on' if r['act_checkpoint'] else 'off'} | "
                f"{r['images_per_s']:.2f} | {r['step_ms']:.0f} | {r['peak_mb']:.0f} |"
            )
    kinds = sorted({r["memory_kind"] for r in report["rows"]})
    lines += ["", f"Peak memory: {'; '.join(kinds)}.", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(
                "--device cuda, but torch sees no CUDA device (torch.cuda.is_available() is "
                "False): run this on a GPU machine, or pass --device cpu to check the script."
            )
    for sub in ("figures", "logs"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    common = [
        "--device", args.device, "--image-size", *map(str, args.image_size),
        "--iters", str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads),
        "--no-flops", "--memory-iters", "1",
    ]  # fmt: skip
    start = time.time()
    rows, figures = [], {}
    environment = None
    for variant in args.variants:
        for task in ("backbone", "inference"):
            for precision in args.precisions:
                name = f"{task}_{variant}_{precision}"
                amp = [] if precision == "fp32" else ["--amp", precision]
                result = _run(
                    name,
                    ["--config-file", _config(variant), "--task", task, "--compare", R50,
                     *common, *amp],
                    args.out,
                )  # fmt: skip
                figures[name] = result
                environment = environment or result["environment"]
                rows.append(_latency_row(task, variant, precision, result))
        name = f"train_{variant}"
        result = _run(
            name,
            ["--config-file", _config(variant), "--task", "train", "--compare-act-checkpoint",
             "--batch-size", str(args.train_batch), *common],
            args.out,
        )  # fmt: skip
        figures[name] = result
        rows.extend(_train_rows(variant, result))
    report = {
        "settings": dict(vars(args), wall_s=round(time.time() - start, 1)),
        "environment": environment,
        "rows": rows,
        "figures": figures,
    }
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    table = markdown(report)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(table)
    print(table)
    print(f"written: {args.out}/report.json, report.md, logs/ ({report['settings']['wall_s']} s)")
    return report


if __name__ == "__main__":
    main()
