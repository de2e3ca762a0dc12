"""
The text report of a benchmark result.
"""

import math
from typing import Any, Dict


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
    if task == "export":
        from .export import format_export_report

        return "\n".join(lines + format_export_report(result["export"]))
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

    if task == "data":
        d = result["data"]
        lines.append(
            f"data: a generated COCO json of {d['num_images']} images and {d['num_annotations']} "
            f"polygon objects ({d['json_mb']:.0f} MB); medians of {result['settings']['iters']} "
            "fresh interpreters"
        )
        sides = [k for k in ("A", "B") if k in d]
        lines.append(f"{'':<34}" + "".join(f"{k:>12}" for k in sides))
        for key in (
            "imports_s",
            "register_s",
            "dataset_and_first_batch_s",
            "start_to_first_batch_s",
            "evaluator_setup_s",
            "peak_rss_mb",
        ):
            lines.append(f"{key:<34}" + "".join(f"{d[k][key]:>12.1f}" for k in sides))
        for k in sides:
            lines.append(f"{k}: {d[k]['package']}")
        return "\n".join(lines)

    s = result["settings"]
    h, w = s["image_size"]
    ph, pw = s["padded_size"]
    size = f"{h}x{w}" + (f" (tensor padded to {ph}x{pw})" if task == "backbone" else "")
    lines.append(
        f"task {task}: image {size}, batch {s['batch_size']}, amp {s['amp'] or 'off (fp32)'}, "
        f"layout {s.get('layout', 'best')}, "
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
    row("bottom-up weights", [m.get("memory_format") for m in models])
    if "input_memory_format" in models[0]:
        row("input tensor", [m.get("input_memory_format") for m in models])
    row("torch threads", [m.get("threads") for m in models])
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
