"""tools/benchmark.py: every task on tiny inputs, exactness checks, fused attention (issue
"Benchmarks and speed"). Tiny sizes and 1-2 iterations: these check the tool, not the speed."""

import json
import math
import os
import time

import pytest
import torch

from pvt_fpn_d2 import PVT_V2_VARIANTS, PVTv2Backbone
from benchmarks import (
    ComponentTimer,
    attention_modules,
    pair_ratio_stats,
    run_eval_benchmark,
    time_alternating,
)
from benchmarks.runner import _max_abs_diff, _timm_reference

from .conftest import REPO, load_script

B0 = str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py")
TINY = ["--image-size", "64", "96", "--iters", "2", "--warmup", "1", "--threads", "1"]
# detectors: one timed iteration, one in each peak-memory child
ONE = ["--image-size", "64", "96", "--iters", "1", "--warmup", "1", "--threads", "1"]
ONE += ["--memory-iters", "1"]
ENVIRONMENT_KEYS = {"torch", "timm", "device", "torch_threads", "cpu_model", "cpu_count"}
MODEL_KEYS = {
    "label",
    "params_m",
    "latency_ms",
    "images_per_s",
    "peak_memory_mb",
    "peak_increase_mb",
    "memory_kind",
}


def _tool():
    return load_script("tools/benchmark.py", "benchmark_tool")


def _run(tmp_path, *args):
    out = tmp_path / "figures.json"
    returned = _tool().main([*map(str, args), "--json", str(out)])
    written = json.loads(out.read_text())
    assert written["task"] == returned["task"]
    return written


def _check_model_entry(entry, iters=2):
    assert MODEL_KEYS <= set(entry), MODEL_KEYS - set(entry)
    lat = entry["latency_ms"]
    assert len(lat["all"]) == iters
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"]
    assert entry["images_per_s"] > 0
    assert entry["peak_memory_mb"] > 100  # a process with torch loaded
    assert entry["peak_increase_mb"] >= 0


@pytest.mark.parametrize("name", PVT_V2_VARIANTS)
def test_every_attention_module_uses_fused_attention(name):
    with torch.device("meta"):  # no memory, no init cost
        backbone = PVTv2Backbone(name)
    attn = attention_modules(backbone)
    assert len(attn) == sum(backbone.model.depths) > 0
    assert all(m.fused_attn for m in attn), [m.fused_attn for m in attn]


def test_forward_calls_scaled_dot_product_attention_once_per_block(monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    backbone = PVTv2Backbone("pvt_v2_b0").eval()
    with torch.no_grad():
        backbone(torch.randn(1, 3, 64, 64))
    assert len(calls) == len(attention_modules(backbone)) == 8


def test_channels_last_matches_the_default_path():
    """The speed option: outputs and gradients equal the default path's within 1e-4, and the
    weights keep their layout through load_state_dict and .to()."""
    torch.manual_seed(0)
    plain = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0, channels_last=False)
    fast = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0, channels_last=True)
    fast.load_state_dict(plain.state_dict())
    fast.to("cpu", torch.float32)
    block = fast.model.stages[0].blocks[0]
    assert block.mlp.dwconv.weight.stride() == (9, 1, 3, 1)  # NCHW: (9, 9, 3, 1)
    sr = block.attn.sr.weight
    assert sr.is_contiguous(memory_format=torch.channels_last) and not sr.is_contiguous()
    x = torch.randn(2, 3, 64, 96)
    grads = []
    for m in (plain, fast):
        out = m.train()(x)
        sum((t * t.detach().sign()).sum() for t in out.values()).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
        m.eval()
        with torch.no_grad():
            grads[-1]["outputs"] = m(x)
    for f, t in grads[0].pop("outputs").items():
        torch.testing.assert_close(grads[1]["outputs"][f], t, rtol=0, atol=1e-4)
        # inference hands the FPN channels-last maps (its convs run faster on them); the
        # NCHW path keeps NCHW
        assert grads[1]["outputs"][f].is_contiguous(memory_format=torch.channels_last)
        assert t.is_contiguous()
    grads[1].pop("outputs")
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, rtol=1e-4, atol=1e-4 * g.abs().max().item())


def test_time_alternating_runs_abba_and_ratios():
    order = []
    times = time_alternating(
        [lambda: order.append("A"), lambda: order.append("B")], iters=4, warmup=1, sync=lambda: None
    )
    assert "".join(order) == "AB" + "ABBAABBA"  # warm-up, then A B, B A, ...
    assert [len(t) for t in times] == [4, 4]
    r = pair_ratio_stats([2.0, 4.0, 2.0], [1.0, 1.0, 2.0])
    assert r["median_of_ratios"] == 2.0 and r["ratio_of_medians"] == 2.0


def test_timing_recovers_a_known_ratio():
    """Against a clock the tool does not own: callables that sleep 150 ms (A) and 50 ms (B) must
    come out as A/B = 3, not 1 (nothing timed) or 1/3 (swapped). A loaded machine wakes sleepers
    late by a few ms, hence the margins."""
    times = time_alternating(
        [lambda: time.sleep(0.15), lambda: time.sleep(0.05)], iters=5, warmup=0, sync=lambda: None
    )
    r = pair_ratio_stats(*times)
    assert 2.4 < r["median_of_ratios"] < 3.1, r
    assert 149 < 1000 * min(times[0]) < 170 and 49 < 1000 * min(times[1]) < 70, times


def test_component_breakdown_recovers_known_times():
    """The inference breakdown (bottom-up, FPN, proposals, ROI heads, other) on a stand-in
    detector whose parts sleep for known times."""

    class Sleep(torch.nn.Module):
        def __init__(self, seconds, inner=None):
            super().__init__()
            self.seconds, self.bottom_up = seconds, inner

        def forward(self):
            if self.bottom_up is not None:
                self.bottom_up()
            time.sleep(self.seconds)

    model = torch.nn.Module()
    model.backbone = Sleep(0.02, inner=Sleep(0.06))  # bottom-up 60 ms, FPN 20 ms
    model.proposal_generator, model.roi_heads = Sleep(0.01), Sleep(0.04)
    timer = ComponentTimer(model, sync=lambda: None)
    for _ in range(5):
        t0 = time.perf_counter()
        model.backbone(), model.proposal_generator(), model.roi_heads()
        time.sleep(0.01)  # "other": outside every part
        timer.end_iteration(time.perf_counter() - t0)
    parts = timer.summary()
    expected = {"bottom_up": 60, "fpn": 20, "proposal_generator": 10, "roi_heads": 40, "other": 10}
    for k, ms in expected.items():
        assert ms - 1 < parts[k]["ms"] < ms + 10, (k, parts)  # "fpn": a difference of two
    assert 140 <= parts["total"]["ms"] < 165
    assert parts["bottom_up"]["share"] == pytest.approx(60 / 140, abs=0.05)


def test_backbone_task_vs_timm_is_exact(tmp_path):
    r = _run(tmp_path, "--config-file", B0, "--task", "backbone", "--vs-timm", *TINY)
    assert ENVIRONMENT_KEYS <= set(r["environment"])
    assert r["environment"]["torch_threads"] == 1
    assert r["settings"]["padded_size"] == [64, 96]
    (entry,) = r["models"]
    _check_model_entry(entry)
    assert entry["bottom_up"] == "PVTv2Backbone" and entry["fused_attn"] is True
    assert entry["flops_scope"] == "backbone.bottom_up"
    # fvcore's conv/linear/norm count plus attention (our handle): b0 is ~0.4 GFLOPs at 224^2
    assert 0.03 < entry["gflops"] < 0.2
    assert "aten::scaled_dot_product_attention" not in entry["unsupported_ops"]
    v = r["vs_timm"]
    # timm's stages called one by one, not the wrapper's forward_intermediates: equal to the bit
    assert v["max_abs_diff"] == 0.0
    assert len(v["timm"]["latency_ms"]["all"]) == 2


def test_vs_timm_reference_is_independent_of_the_wrapper_path(monkeypatch):
    """The --vs-timm comparison can fail: a forward_intermediates that computed something else
    changes the wrapper's outputs and not the reference's."""
    from timm.models.pvt_v2 import PyramidVisionTransformerV2

    backbone = PVTv2Backbone("pvt_v2_b0").eval()
    _, reference = _timm_reference(backbone, "cpu")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert _max_abs_diff(backbone(x).values(), reference(x)) == 0.0
        original = PyramidVisionTransformerV2.forward_intermediates

        def off_by_a_little(self, *args, **kwargs):
            return [t + 1e-3 for t in original(self, *args, **kwargs)]

        monkeypatch.setattr(PyramidVisionTransformerV2, "forward_intermediates", off_by_a_little)
        assert _max_abs_diff(backbone(x).values(), reference(x)) == pytest.approx(1e-3, rel=1e-2)


def test_backbone_task_channels_last_against_default_layout(tmp_path):
    cl = "model.backbone.bottom_up.channels_last="
    r = _run(
        tmp_path,
        "--config-file",
        B0,
        "--task",
        "backbone",
        *TINY,
        "--no-flops",
        cl + "True",
        "--compare-opt",
        cl + "False",
    )
    a, b = r["models"]
    assert a["channels_last"] is True and b["channels_last"] is False
    # same architecture: B gets A's weights and both see the same input; the outputs differ in
    # the last digits (other convolution kernels), so B really ran the other layout
    assert 0 < r["outputs_a_vs_b"]["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("layout", ["best", "default"])
def test_a_comparison_gives_both_sides_the_same_settings(tmp_path, layout):
    """Fair by construction: PVT-v2 and detectron2's ResNet in the same layout (best: both
    channels-last, weights and input; default: both as built, PVT-v2 told channels_last=False)
    and at the same thread count, read from the models that ran."""
    r = _run(
        tmp_path, "--config-file", B0, "--task", "backbone", "--compare", "detectron2:R50-FPN",
        *TINY, "--no-flops", "--layout", layout,
    )  # fmt: skip
    a, b = r["models"]
    assert (a["bottom_up"], b["bottom_up"]) == ("PVTv2Backbone", "ResNet")
    wanted = "channels_last" if layout == "best" else "contiguous"
    assert a["memory_format"] == b["memory_format"] == wanted
    assert a["input_memory_format"] == b["input_memory_format"] == wanted
    assert a["threads"] == b["threads"] == 1
    assert r["settings"]["layout"] == layout


def test_inference_task_compares_with_r50_and_breaks_down(tmp_path):
    r = _run(
        tmp_path,
        "--config-file",
        B0,
        "--task",
        "inference",
        "--compare",
        "detectron2:R50-FPN",
        *ONE,
        "model.roi_heads.box_predictor.test_topk_per_image=5",
        "--compare-opt",
        "model.roi_heads.box_predictor.test_topk_per_image=5",
    )
    a, b = r["models"]
    for entry in (a, b):
        _check_model_entry(entry, iters=1)
        # random weights still give the heads their full load (R50: FrozenBN calibrated)
        assert entry["detections_per_image"] == [5]
        assert entry["proposals_per_image"][0] > 100
        assert entry["flops_scope"] == "whole model (inference forward)" and entry["gflops"] > 1
        comp = entry["components"]
        parts = ["bottom_up", "fpn", "proposal_generator", "roi_heads", "other"]
        assert set(parts) <= set(comp)
        assert comp["bottom_up"]["ms"] > 0 and comp["roi_heads"]["ms"] > 0
        # medians of parts need not add up exactly, but nearly
        assert sum(comp[k]["ms"] for k in parts) == pytest.approx(comp["total"]["ms"], rel=0.2)
    assert a["label"] == "mask_rcnn_pvt_v2_b0_fpn_1x"
    assert b["label"] == "detectron2:R50-FPN [model.roi_heads.box_predictor.test_topk_per_image=5]"
    assert a["bottom_up"] == "PVTv2Backbone" and b["bottom_up"] == "ResNet"
    # the models measured are the ones named: the docs' b0 size, detectron2's R50-FPN's
    assert a["params_m"] == pytest.approx(23.446, abs=1e-3)
    assert b["params_m"] == pytest.approx(44.343, abs=1e-3)  # Mask R-CNN R50-FPN, 80 classes
    c = r["comparison"]
    assert c["direction"].startswith("A/B")
    assert set(c["components_ms_ratio"]) >= {"bottom_up", "roi_heads"}


def test_train_task_act_checkpoint_gives_equal_losses(tmp_path):
    r = _run(
        tmp_path,
        "--config-file",
        B0,
        "--task",
        "train",
        "--compare-act-checkpoint",
        "--no-flops",
        *ONE,
        "model.roi_heads.batch_size_per_image=32",
        "model.proposal_generator.post_nms_topk=[100,50]",
    )
    ckpt, plain = r["models"]
    for entry in (ckpt, plain):
        _check_model_entry(entry, iters=1)
        assert set(entry["first_step_losses"]) == {
            "loss_cls",
            "loss_box_reg",
            "loss_mask",
            "loss_rpn_cls",
            "loss_rpn_loc",
            "total",
        }
        assert all(math.isfinite(v) for v in entry["first_step_losses"].values())
    assert ckpt["use_act_checkpoint"] is True and plain["use_act_checkpoint"] is False
    a = r["act_checkpoint"]
    assert a["max_loss_diff_separate_processes"] < 1e-5
    assert a["max_loss_diff_same_process"] < 1e-5
    # what autograd keeps of the backbone's activations at least halves (peak RSS at 64x96 is
    # mostly the process itself; the docs' -69.5% is measured at 800x1333)
    assert a["saved_activations_ratio"] <= 0.5, a
    assert plain["bottom_up_saved_activations_mb"] > 1


def test_eval_task_fast_equals_pycocotools_and_is_faster(tmp_path):
    args = ["--task", "eval", "--num-images", "20", "--instances", "5", "--iters", "3"]
    e = _run(tmp_path, *args, "--warmup", "1")["eval"]
    assert (e["num_images"], e["gt_instances"]) == (20, 100)
    assert e["max_abs_stat_diff"] <= 1e-9  # the docs' "identical"
    for iou_type in ("bbox", "segm"):
        t = e["per_type"][iou_type]
        assert len(t["pycocotools_stats"]) == len(t["faster_coco_eval_stats"]) == 12
        assert 0.1 < t["pycocotools_stats"][0] < 0.9  # a meaningful AP, not -1 or 0
    # faster even on this small set (3.4x measured; 5.1x on the docs' 500 images): a fast
    # path that fell back to pycocotools would give ~1
    assert e["speedup"] > 1.5, e


def test_eval_detects_a_difference_between_implementations(monkeypatch):
    """The AP comparison can fail: a COCOeval that reports other numbers is caught."""
    import pvt_fpn_d2.evaluation as evaluation

    class Wrong(evaluation.FasterCOCOeval):
        def summarize(self):
            super().summarize()
            self.stats[0] += 0.01

    monkeypatch.setattr(evaluation, "FasterCOCOeval", Wrong)
    e = run_eval_benchmark(num_images=5, instances=3)
    assert e["max_abs_stat_diff"] == pytest.approx(0.01)


def test_bad_arguments_are_clear_errors(tmp_path):
    tool = _tool()
    with pytest.raises(SystemExit, match="--config-file is required"):
        tool.main(["--task", "backbone"])
    with pytest.raises(ValueError, match="--vs-timm needs"):
        tool.main(["--config-file", B0, "--task", "inference", "--vs-timm", *TINY])
    with pytest.raises(ValueError, match="--compare-act-checkpoint needs --task train"):
        tool.main(["--config-file", B0, "--task", "backbone", "--compare-act-checkpoint"])


def test_data_task_measures_a_generated_coco_json(tmp_path):
    """--task data: the generated json has what was asked, and each side ran in its own
    interpreter with the checkout it names."""
    from benchmarks import make_large_coco

    json_file, images = make_large_coco(str(tmp_path / "d"), num_images=12, instances=3)
    data = json.loads(open(json_file).read())
    assert (len(data["images"]), len(data["annotations"])) == (12, 36)
    assert len(os.listdir(images)) == 12
    for a in data["annotations"]:  # polygons inside their image, boxes around them
        x, y, w, h = a["bbox"]
        poly = a["segmentation"][0]
        assert 0 <= min(poly) and max(poly[0::2]) < 640 and max(poly[1::2]) < 480
        assert x <= min(poly[0::2]) and y <= min(poly[1::2])
    result = _run(
        tmp_path,
        "--task",
        "data",
        "--num-images",
        "12",
        "--instances",
        "3",
        "--data-dir",
        tmp_path / "d",
        "--other-checkout",
        REPO,
    )
    d = result["data"]
    assert d["num_annotations"] == 36
    for side in ("A", "B"):
        assert d[side]["package"] == str(REPO / "pvt_fpn_d2/__init__.py")
        assert d[side]["start_to_first_batch_s"] >= d[side]["register_s"] > 0
        assert d[side]["peak_rss_mb"] > 100  # torch alone is more


def _gpu_report_tool():
    return load_script("tools/gpu_report.py", "gpu_report")


def test_gpu_report_runs_end_to_end_on_the_cpu(tmp_path):
    """tools/gpu_report.py, the one-run GPU figures, with tiny settings on the CPU: every
    figure of the table, each from the benchmark run it names, both sides measured alike."""
    out = tmp_path / "report"
    r = _gpu_report_tool().main(["--device", "cpu", "--variants", "b0", "--iters", "1",
                                 "--warmup", "0", "--image-size", "64", "96", "--threads", "1",
                                 "--out", str(out)])  # fmt: skip
    saved = json.loads((out / "report.json").read_text())
    assert saved["rows"] == r["rows"]
    latency = [(x["what"], x["precision"]) for x in r["rows"] if x["what"] != "train"]
    assert latency == [("backbone", "fp32"), ("backbone", "bf16"),
                       ("inference", "fp32"), ("inference", "bf16")]  # fmt: skip
    for row in r["rows"]:
        if row["what"] == "train":
            continue
        name = f"{row['what']}_b0_{row['precision']}"
        figures = json.loads((out / "figures" / f"{name}.json").read_text())
        a, b = figures["models"]
        assert (a["bottom_up"], b["bottom_up"]) == ("PVTv2Backbone", "ResNet")
        assert a["threads"] == b["threads"] == 1  # the same settings for both sides
        assert figures["settings"]["amp"] == ("" if row["precision"] == "fp32" else "bf16")
        # one iteration: the median of ratios is the ratio of the two latencies
        assert row["ratio"] == pytest.approx(row["pvt_ms"] / row["r50_ms"], rel=1e-9)
        assert (out / "logs" / f"{name}.txt").read_text().startswith("tools/benchmark.py ")
    train = [x for x in r["rows"] if x["what"] == "train"]
    assert [x["act_checkpoint"] for x in train] == [True, False]
    # the same model and batch with and without recomputation: the same first-step loss
    assert train[0]["first_step_total_loss"] == pytest.approx(train[1]["first_step_total_loss"])
    assert all(x["images_per_s"] > 0 and x["peak_mb"] > 0 for x in train)
    table = (out / "report.md").read_text()
    for row in r["rows"]:
        if row["what"] != "train":
            assert f"| {row['precision']} | {row['pvt_ms']:.1f} | {row['r50_ms']:.1f} |" in table
    assert table.count("| pvt_v2_b0 | on |") == table.count("| pvt_v2_b0 | off |") == 1


def test_gpu_report_without_a_gpu_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="torch sees no CUDA device.*--device cpu"):
        _gpu_report_tool().main(["--out", str(tmp_path)])
