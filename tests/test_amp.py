"""Mixed precision through the whole detector, for training and evaluation, the fp16 grad
scaler and gradient clipping (#5)."""

import json
import math

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from pvt_fpn_d2 import PVTCheckpointer
from pvt_fpn_d2.engine import Trainer

from .conftest import REPO, load_script, make_batch, metrics, run_train_net, tiny_config


def _train_net():
    return load_script("train_net.py", "train_net")


def _b0_detector(num_classes=3, masks=True):
    """PVT-v2-b0 Mask R-CNN with few proposals and RoIs: a training step in about a second.
    ``masks=False``: its Faster R-CNN (no mask head)."""
    cfg = LazyConfig.load(str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"))
    if not masks:
        cfg.model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
    cfg.model.roi_heads.num_classes = num_classes
    cfg.model.roi_heads.batch_size_per_image = 32
    cfg.model.proposal_generator.post_nms_topk = (100, 50)
    torch.manual_seed(0)
    return instantiate(cfg.model).train()


def _grad_norm(model):
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return float(
        torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    )


def _record_clipping(monkeypatch):
    """The total norms clip_grad_norm_ sees (before clipping), as the Trainer calls it."""
    seen = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording(*args, **kwargs):
        norm = clip(*args, **kwargs)
        seen.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    return seen


def _dtypes_seen(model):
    """Record the dtype of what the backbone, the FPN and every ROI head module return."""
    seen = {}

    def hook(name):
        def record(module, inputs, output):
            t = next(iter(output.values())) if isinstance(output, dict) else output
            seen[name] = t.dtype

        return record

    heads = model.roi_heads
    for name, module in [
        ("bottom_up", model.backbone.bottom_up),
        ("fpn", model.backbone),
        ("box_head", heads.box_head),
        ("mask_head", heads.mask_head.predictor),
    ]:
        module.register_forward_hook(hook(name))
    return seen


def test_bf16_autocast_trains_through_the_whole_detector():
    cfg = LazyConfig.load(str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"))
    cfg.model.roi_heads.num_classes = 3
    cfg.model.backbone.bottom_up.channels_last = True  # the CPU speed switch, under AMP too
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    seen = _dtypes_seen(model)
    before = model.backbone.bottom_up.model.patch_embed.proj.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    trainer = Trainer(model.train(), [make_batch()], optimizer, amp="bf16", device_type="cpu")
    with EventStorage():
        trainer.run_step()
    # the heavy layers ran in bf16; the weights and their update stay fp32
    assert seen == {k: torch.bfloat16 for k in ("bottom_up", "fpn", "box_head", "mask_head")}
    weight = model.backbone.bottom_up.model.patch_embed.proj.weight
    assert weight.dtype == torch.float32 and not torch.equal(weight, before)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("amp", [True, False], ids=["bf16", "fp32"])
def test_train_net_do_test_evaluates_under_the_configured_amp(tmp_path, tiny_dataset, amp):
    """The evaluation train_net.py runs (periodic and --eval-only) is autocast by the config's
    train.amp alone: bf16 through the backbone, FPN and heads when enabled, fp32 when not."""
    cfg = LazyConfig.load(str(tiny_config(tmp_path, tiny_dataset)))
    cfg.train.amp.update(enabled=amp, precision="bf16")
    (tmp_path / "out").mkdir()
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    seen = _dtypes_seen(model)
    results = _train_net().do_test(cfg, model)
    dtype = torch.bfloat16 if amp else torch.float32
    assert seen == {k: dtype for k in ("bottom_up", "fpn", "box_head", "mask_head")}
    assert set(results) == {"bbox", "segm"} and all(
        math.isfinite(r["AP"]) for r in results.values()
    )
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert {t: saved[t]["AP"] for t in saved} == {t: results[t]["AP"] for t in results}


def test_train_net_with_bf16_amp_end_to_end(tmp_path, tiny_dataset):
    """bf16 from the command line: the losses are those of fp32 (same seed) up to bf16 rounding,
    not equal to them (bf16 really ran), and the checkpoint holds fp32 weights."""
    runs = {}
    for precision, overrides in [("fp32", []), ("bf16", ["train.amp.precision=bf16"])]:
        (tmp_path / precision).mkdir()
        config = tiny_config(tmp_path / precision, tiny_dataset, max_iter=2, eval_period=100)
        amp = [f"train.amp.enabled={bool(overrides)}", *overrides]
        run_train_net("--config-file", config, *amp, "model.backbone.bottom_up.channels_last=True")
        out = tmp_path / precision / "out"
        runs[precision] = [m for m in metrics(out) if "total_loss" in m]
    losses = [m["total_loss"] for m in runs["bf16"]]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    # iteration 0, same weights and data: the RPN losses (anchors, not sampled proposals) agree
    # to bf16's precision (measured: 6e-5 and 4e-4 relative) and are not equal
    fp32, bf16 = runs["fp32"][0], runs["bf16"][0]
    for k in ("loss_rpn_cls", "loss_rpn_loc"):
        assert bf16[k] != fp32[k] and bf16[k] == pytest.approx(fp32[k], rel=1e-2), (k, fp32, bf16)
    out = tmp_path / "bf16" / "out"
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results) == {"bbox", "segm"}
    assert all(math.isfinite(results[t]["AP"]) for t in results)
    state = torch.load(out / "model_final.pth", weights_only=True)
    assert all(v.dtype != torch.bfloat16 for v in state["model"].values())  # saved in fp32


def test_clipping_bounds_the_global_gradient_norm(monkeypatch):
    model = _b0_detector()
    seen = _record_clipping(monkeypatch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    trainer = Trainer(
        model, [make_batch(1, (64, 96))], optimizer, clip_grad_norm=1e-3, device_type="cpu"
    )
    with EventStorage():
        trainer.run_step()
    assert seen[0] > 1e-2  # clipping had work to do
    assert _grad_norm(model) == pytest.approx(1e-3, rel=1e-3)


def test_fp16_scaler_survives_an_overflow_clips_unscaled_and_resumes_with_its_scale(
    tmp_path, monkeypatch
):
    """fp16 with loss scaling on the b0 detector: a step whose gradients overflow is skipped
    (weights untouched, scale halved, no error); the next step updates the weights with the
    gradients clipped after unscaling (global norm = max_norm, not max_norm / scale); the scale
    is saved in the checkpoint and restored on resume. Without the mask head: on a CPU without
    native fp16, PyTorch's fp16 convolution backward is slow (measured here: 50 s a step, 47 of
    them in the mask head's four 256-channel convolutions; bf16: 0.3 s)."""
    model = _b0_detector(masks=False)
    seen = _record_clipping(monkeypatch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = make_batch(1, (64, 96))
    trainer = Trainer(
        model, [batch] * 2, optimizer, amp="fp16", clip_grad_norm=1e-3, device_type="cpu"
    )
    assert trainer.grad_scaler.is_enabled()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    # an overflow, as a too-high scale gives: an infinite gradient in one layer
    handle = model.roi_heads.box_predictor.cls_score.weight.register_hook(
        lambda g: g * float("inf")
    )
    with EventStorage():
        trainer.run_step()
        handle.remove()
        assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
        assert trainer.grad_scaler.get_scale() == 2.0**15  # 2**16 backed off once
        trainer.iter = 1
        trainer.run_step()
    assert trainer.grad_scaler.get_scale() == 2.0**15
    assert not torch.equal(
        model.backbone.bottom_up.model.patch_embed.proj.weight,
        weights["backbone.bottom_up.model.patch_embed.proj.weight"],
    )
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert seen[1] < 1e3  # the norm clipping saw is unscaled (scaled: x 32768)
    assert _grad_norm(model) == pytest.approx(1e-3, rel=1e-3)

    PVTCheckpointer(model, str(tmp_path), trainer=trainer).save("model_0000001")
    resumed = Trainer(model, [batch], optimizer, amp="fp16", device_type="cpu")
    assert resumed.grad_scaler.get_scale() == 2.0**16
    PVTCheckpointer(model, str(tmp_path), trainer=resumed).resume_or_load("", resume=True)
    assert resumed.iter == 1 and resumed.grad_scaler.get_scale() == 2.0**15
