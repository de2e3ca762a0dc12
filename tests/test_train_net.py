"""train_net.py end to end on tiny data: train, checkpoint, eval-only, resume, DDP on CPU (#4)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from pycocotools.coco import COCO

from .conftest import REPO, metrics, run_tool, run_train_net, subprocess_env, tiny_config


def _predictions(path):
    """The evaluator's coco_instances_results.json, in a fixed order."""
    rows = json.loads(path.read_text())
    return sorted(rows, key=lambda r: (r["image_id"], -r["score"], r["bbox"]))


def test_train_checkpoint_eval_only_and_resume(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset)
    out = tmp_path / "out"
    # every detection is kept and written: after 4 iterations the APs are ~0, the predictions
    # are what tells one set of weights from another
    keep_all = "model.roi_heads.box_predictor.test_score_thresh=0.0"
    run_train_net("--config-file", config, keep_all, f"dataloader.evaluator.output_dir={out}")
    assert {"model_0000001.pth", "model_0000003.pth", "model_final.pth", "last_checkpoint"} <= set(
        os.listdir(out)
    )
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    logged = metrics(out)
    assert [m["iteration"] for m in logged if "total_loss" in m] == [0, 1, 2, 3]
    # detectron2's writers: losses and lr every iteration, time and ETA once timing has started
    assert all(k in logged[0] for k in ("loss_mask", "loss_rpn_cls", "lr", "total_loss"))
    last = [m for m in logged if "total_loss" in m][-1]
    assert all(k in last for k in ("loss_mask", "lr", "time", "eta_seconds"))
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results) == {"bbox", "segm"} and "AP" in results["segm"]
    assert (out / "model_best.pth").is_file()  # kept by the default metric segm/AP

    # --eval-only on the saved checkpoint: the same predictions as the evaluation at the end of
    # training (the final weights), hence the same AP tables
    r = run_train_net(
        "--config-file",
        config,
        "--eval-only",
        keep_all,
        f"train.init_checkpoint={out / 'model_final.pth'}",
        f"train.output_dir={tmp_path / 'eval'}",
        f"dataloader.evaluator.output_dir={tmp_path / 'eval'}",
    )
    during, after = (
        _predictions(d / "coco_instances_results.json") for d in (out, tmp_path / "eval")
    )
    assert len(during) == len(after) > 3 * 50  # 3 images, up to 100 detections each
    for a, b in zip(during, after):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)
    again = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    for task in ("bbox", "segm"):
        for k, v in results[task].items():
            assert again[task][k] == pytest.approx(v, abs=1e-6, nan_ok=True), (task, k)
    assert "copypaste: Task: segm" in r.stdout + r.stderr

    # --resume with a longer schedule continues at iteration 4, not 0
    run_train_net("--config-file", config, "--resume", "train.max_iter=6", "train.eval_period=100")
    iters = [m["iteration"] for m in metrics(out) if "total_loss" in m]
    assert iters == [0, 1, 2, 3, 4, 5]
    state = torch.load(out / "model_final.pth", weights_only=True)
    assert state["iteration"] == 5
    assert "grad_scaler" in state["trainer"] and "optimizer" in state["trainer"]


def test_same_seed_gives_the_same_losses(tmp_path, tiny_dataset):
    """train.seed repeats a run: 3 iterations, every loss equal; another seed gives others."""
    losses = {}
    for run, seed, iters in [("a", 0, 3), ("b", 0, 3), ("c", 1, 1)]:
        (tmp_path / run).mkdir()
        config = tiny_config(tmp_path / run, tiny_dataset, max_iter=iters, eval_period=100)
        run_train_net("--config-file", config, f"train.seed={seed}")
        rows = [m for m in metrics(tmp_path / run / "out") if "total_loss" in m]
        losses[run] = [{k: v for k, v in m.items() if "loss" in k} for m in rows]
    assert len(losses["a"]) == 3 and len(losses["a"][0]) == 6  # 5 losses and their total
    assert losses["a"] == losses["b"]
    assert losses["c"][0]["total_loss"] != losses["a"][0]["total_loss"]


def test_retinanet_finetune_config_trains_and_evaluates(tmp_path, tiny_dataset):
    config = tiny_config(
        tmp_path, tiny_dataset, "retinanet_pvt_v2_b0_fpn_coco_json.py", max_iter=3, eval_period=3
    )
    # RetinaNet's scores start at its prior (0.01): keep them all, or 3 iterations predict nothing
    r = run_train_net("--config-file", config, "model.test_score_thresh=0.0")
    assert "3 classes ['circle', 'triangle', 'square']" in r.stdout + r.stderr
    out = tmp_path / "out"
    assert [m["iteration"] for m in metrics(out) if "loss_cls" in m] == [0, 1, 2]
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results) == {"bbox"} and {"AP", "AP-circle", "AP-square"} <= set(results["bbox"])
    assert math.isfinite(results["bbox"]["AP"])
    assert (out / "model_best.pth").is_file()  # kept by bbox/AP
    state = torch.load(out / "model_final.pth", weights_only=True)["model"]
    assert state["head.cls_score.weight"].shape[0] == 9 * 3  # 9 anchors x the json's 3 classes


def test_cascade_finetune_config_trains_evaluates_and_predicts(tmp_path, tiny_dataset):
    """The Cascade Mask R-CNN (a mask head per stage) through train_net and predict.py."""
    config = tiny_config(
        tmp_path,
        tiny_dataset,
        "cascade_mask_rcnn_pvt_v2_b2_fpn_coco_json.py",
        overrides=["model.backbone.bottom_up.name=pvt_v2_b0"],
        max_iter=2,
        eval_period=2,
    )
    r = run_train_net("--config-file", config)
    assert "3 classes ['circle', 'triangle', 'square']" in r.stdout + r.stderr
    out = tmp_path / "out"
    losses = [m for m in metrics(out) if "loss_mask_stage2" in m]
    assert [m["iteration"] for m in losses] == [0, 1]
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results) == {"bbox", "segm"}
    assert all(math.isfinite(results[k]["AP"]) for k in results)
    state = torch.load(out / "model_final.pth", weights_only=True)["model"]
    for stage in range(3):  # the json's 3 classes in every stage's class-specific layers
        assert state[f"roi_heads.box_predictor.{stage}.cls_score.weight"].shape[0] == 3 + 1
        assert state[f"roi_heads.box_predictor.{stage}.bbox_pred.weight"].shape[0] == 3 * 4
        assert state[f"roi_heads.mask_head.{stage}.predictor.weight"].shape[0] == 3
    image = tiny_dataset["val"]["image_root"]
    r = run_tool(
        "tools/predict.py",
        *("--config-file", config, "--checkpoint", out / "model_final.pth"),
        *("--input", image, "--output", tmp_path / "pred", "--confidence-threshold", "0.0"),
    )
    anns = json.loads((tmp_path / "pred" / "predictions.json").read_text())["annotations"]
    assert anns and all("segmentation" in a for a in anns)


def test_two_cpu_processes_with_gloo_hold_identical_weights(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=2, eval_period=100)
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/ddp_rank_weights.py"),
            "--config-file",
            str(config),
            "--num-gpus",
            "2",
            "--dist-url",
            "auto",
            "train.checkpointer.period=100",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(RANK_WEIGHTS_DIR=str(tmp_path)),
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    out = tmp_path / "out"
    # the ranks started from different random weights (seed + rank) and saw different images:
    # only DDP (broadcast, then averaged gradients) makes them equal after 2 iterations
    ranks = [torch.load(tmp_path / f"weights_rank{i}.pth", weights_only=True) for i in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    different = [k for k in ranks[0] if not torch.equal(ranks[0][k], ranks[1][k])]
    assert different == []
    saved = torch.load(out / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in ranks[0].items())
    checkpoints = sorted(f for f in os.listdir(out) if f.endswith(".pth"))
    # one periodic checkpoint, plus the best one kept by the evaluation at the end
    assert checkpoints == ["model_best.pth", "model_final.pth"]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    # both ranks ran (detectron2 writes one log per rank)
    assert "World size: 2" in (out / "log.txt.rank1").read_text()
    state = torch.load(out / "model_final.pth", weights_only=True)
    assert state["iteration"] == 1
    assert not any(k.startswith("module.") for k in state["model"])  # saved unwrapped


def test_finetune_on_fruits_nuts(tmp_path, fruits_nuts):
    dataset = {
        split: {
            "json_file": str(fruits_nuts / "annotations.json"),
            "image_root": str(fruits_nuts / "images"),
        }
        for split in ("train", "val")
    }
    config = tiny_config(tmp_path, dataset, max_iter=3, eval_period=3)
    r = run_train_net("--config-file", config)
    log = r.stdout + r.stderr
    assert "3 classes ['date', 'fig', 'hazelnut']" in log
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert set(results["segm"]) >= {"AP", "AP-date", "AP-fig", "AP-hazelnut"}


def test_predict_writes_pictures_and_coco_json(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=1, eval_period=100)
    run_train_net("--config-file", config)
    images = tiny_dataset["val"]["image_root"]
    out = tmp_path / "pred"
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools/predict.py"),
            "--config-file",
            str(config),
            "--checkpoint",
            str(tmp_path / "out" / "model_final.pth"),
            "--input",
            images,
            "--output",
            str(out),
            "--confidence-threshold",
            "0.0",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    inputs = sorted(os.listdir(images))
    assert sorted(f for f in os.listdir(out) if f.endswith(".jpg")) == inputs
    coco = COCO(str(out / "predictions.json"))
    assert len(coco.getImgIds()) == len(inputs)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["circle", "triangle", "square"]
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns and all("score" in a and "segmentation" in a for a in anns)
    assert coco.annToMask(anns[0]).shape == (96, 96)
