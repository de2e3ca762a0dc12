"""Mixed precision through the whole detector, for training and inference (#5)."""

import json
import math

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from pvt_fpn_d2.engine import Trainer

from .conftest import REPO, make_batch, metrics, run_train_net, tiny_config


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


def test_bf16_autocast_trains_and_predicts_through_the_whole_detector():
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

    seen.clear()
    model.eval()
    batch = [{k: v for k, v in d.items() if k != "instances"} for d in make_batch()]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(batch)
    assert seen["bottom_up"] == torch.bfloat16
    for d, out in zip(batch, outputs):
        inst = out["instances"]
        assert len(inst) > 0 and inst.image_size == (d["height"], d["width"])
        assert inst.pred_masks.shape[1:] == (d["height"], d["width"])
        assert torch.isfinite(inst.pred_boxes.tensor).all() and torch.isfinite(inst.scores).all()


def test_train_net_with_bf16_amp_end_to_end(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=2, eval_period=100)
    run_train_net(
        "--config-file",
        config,
        "train.amp.enabled=True",
        "train.amp.precision=bf16",
        "model.backbone.bottom_up.channels_last=True",
    )
    out = tmp_path / "out"
    losses = [m["total_loss"] for m in metrics(out) if "total_loss" in m]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results) == {"bbox", "segm"}
    assert all(math.isfinite(results[t]["AP"]) for t in results)
    state = torch.load(out / "model_final.pth", weights_only=True)
    assert all(v.dtype != torch.bfloat16 for v in state["model"].values())  # saved in fp32
