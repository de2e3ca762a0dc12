"""Fine-tuning from a checkpoint with another number of classes (#4)."""

import logging

import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from pvt_fpn_d2 import PVTCheckpointer

from .conftest import REPO

MASK_RCNN_CLASS_SPECIFIC = {
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.cls_score.bias",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_predictor.bbox_pred.bias",
    "roi_heads.mask_head.predictor.weight",
    "roi_heads.mask_head.predictor.bias",
}


def _model(config, num_classes, seed):
    cfg = LazyConfig.load(str(REPO / f"configs/COCO/{config}.py"))
    if "retinanet" in config:
        cfg.model.num_classes = num_classes
    else:
        cfg.model.roi_heads.num_classes = num_classes
    torch.manual_seed(seed)
    return instantiate(cfg.model)


@pytest.mark.parametrize(
    "config, expected_skipped",
    [
        ("mask_rcnn_pvt_v2_b0_fpn_1x", MASK_RCNN_CLASS_SPECIFIC),
        ("retinanet_pvt_v2_b0_fpn_1x", {"head.cls_score.weight", "head.cls_score.bias"}),
    ],
)
def test_coco_checkpoint_into_3_classes_skips_exactly_the_class_layers(
    tmp_path, caplog, config, expected_skipped
):
    coco = _model(config, 80, seed=1)
    path = tmp_path / "coco_model_final.pth"
    torch.save({"model": coco.state_dict(), "iteration": 89999}, path)

    model = _model(config, 3, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="pvt_fpn_d2.engine.checkpoint"):
        PVTCheckpointer(model).resume_or_load(str(path), resume=False)

    source, loaded = coco.state_dict(), model.state_dict()
    skipped = {
        k
        for k in loaded
        if loaded[k].shape != source[k].shape or not torch.equal(loaded[k], source[k])
    }
    assert skipped == expected_skipped
    for k in expected_skipped:  # left at this model's initialisation
        assert torch.equal(loaded[k], before[k])
    lines = [r.getMessage() for r in caplog.records if "class-specific" in r.getMessage()]
    assert len(lines) == 1 and f"skipped {len(expected_skipped)} class-specific" in lines[0]
    assert "0 missing" in caplog.text  # the whole backbone loaded


def test_same_number_of_classes_loads_everything(tmp_path):
    src = _model("mask_rcnn_pvt_v2_b0_fpn_1x", 3, seed=1)
    path = tmp_path / "m.pth"
    torch.save({"model": src.state_dict()}, path)
    model = _model("mask_rcnn_pvt_v2_b0_fpn_1x", 3, seed=2)
    PVTCheckpointer(model).load(str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_checkpoints_are_saved_atomically_and_load_with_weights_only(tmp_path):
    model = _model("mask_rcnn_pvt_v2_b0_fpn_1x", 3, seed=0)
    ckpt = PVTCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000009", iteration=9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000009.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    # torch >= 2.6 default: weights_only=True
    data = torch.load(tmp_path / "model_0000009.pth", weights_only=True)
    assert data["iteration"] == 9 and len(data["model"]) == len(model.state_dict())
