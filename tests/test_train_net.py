"""train_net.py end to end on tiny data: train, checkpoint, eval-only, resume, DDP on CPU (#4)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from pycocotools.coco import COCO

from .conftest import REPO, metrics, run_train_net, subprocess_env, tiny_config


def test_train_checkpoint_eval_only_and_resume(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset)
    out = tmp_path / "out"
    run_train_net("--config-file", config)
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

    # --eval-only on the saved checkpoint returns bbox and segm AP
    r = run_train_net(
        "--config-file",
        config,
        "--eval-only",
        f"train.init_checkpoint={out / 'model_final.pth'}",
        f"train.output_dir={tmp_path / 'eval'}",
    )
    again = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert again["segm"]["AP"] == pytest.approx(results["segm"]["AP"], abs=1e-6)
    assert "copypaste: Task: segm" in r.stdout + r.stderr

    # --resume with a longer schedule continues at iteration 4, not 0
    run_train_net("--config-file", config, "--resume", "train.max_iter=6", "train.eval_period=100")
    iters = [m["iteration"] for m in metrics(out) if "total_loss" in m]
    assert iters == [0, 1, 2, 3, 4, 5]
    state = torch.load(out / "model_final.pth", weights_only=True)
    assert state["iteration"] == 5
    assert "grad_scaler" in state["trainer"] and "optimizer" in state["trainer"]


def test_two_cpu_processes_with_gloo(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=2, eval_period=100)
    run_train_net(
        "--config-file",
        config,
        "--num-gpus",
        "2",
        "--dist-url",
        "auto",
        "train.checkpointer.period=100",
    )
    out = tmp_path / "out"
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
