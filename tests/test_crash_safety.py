"""Crash-safe checkpoints and resume, non-finite losses, safe weight loading (#6)."""

import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from pvt_fpn_d2 import PVTCheckpointer
from pvt_fpn_d2.engine import NonFiniteLossError, Trainer
from pvt_fpn_d2.modeling.weights import UnsafeCheckpointError

from .conftest import REPO, metrics, run_train_net, subprocess_env, tiny_config


def _start(config, *overrides):
    return subprocess.Popen(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", str(config), *overrides],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=subprocess_env(),
        cwd=REPO,
    )


def _wait_for(predicate, proc, timeout=300, poll=0.002):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


def _all_checkpoints_load(out):
    files = sorted(f for f in os.listdir(out) if f.endswith(".pth"))
    for f in files:  # the project's own checkpoints load with torch's safe default
        state = torch.load(os.path.join(out, f), weights_only=True)
        assert "model" in state and "iteration" in state, f
    last = (out / "last_checkpoint").read_text()
    assert last in files
    return files, last


def test_sigkill_after_first_checkpoint_then_resume(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=40, eval_period=1000)
    out = tmp_path / "out"
    proc = _start(config, "train.checkpointer.period=2")
    assert _wait_for(lambda: (out / "last_checkpoint").exists(), proc), "no checkpoint written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    files, last = _all_checkpoints_load(out)
    saved = torch.load(out / last, weights_only=True)["iteration"]

    # resume: continue at the saved iteration + 1, with optimizer, LR and scaler state
    r = run_train_net("--config-file", config, "--resume", f"train.max_iter={saved + 4}")
    assert f"Starting training from iteration {saved + 1}" in r.stdout + r.stderr
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["iteration"] == saved + 3
    # AdamW's step count carried over: it was restored, not restarted
    steps = {int(s["step"]) for s in final["trainer"]["optimizer"]["state"].values()}
    assert steps == {saved + 4}
    assert "grad_scaler" in final["trainer"]
    # the learning rate at each resumed iteration is the schedule's, as in an uninterrupted run
    resumed = {
        m["iteration"]: m["lr"] for m in metrics(out) if "lr" in m and m["iteration"] > saved
    }
    reference_dir = tmp_path / "reference"
    run_train_net(
        "--config-file",
        config,
        f"train.max_iter={saved + 4}",
        f"train.output_dir={reference_dir}",
        "train.checkpointer.period=1000",
    )
    reference = {m["iteration"]: m["lr"] for m in metrics(reference_dir) if "lr" in m}
    assert resumed and all(resumed[i] == pytest.approx(reference[i]) for i in resumed)


def test_sigkill_during_a_save_loses_no_checkpoint(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=60, eval_period=1000)
    out = tmp_path / "out"
    proc = _start(config, "train.checkpointer.period=1", "train.checkpointer.max_to_keep=3")
    # wait for a checkpoint to exist, then for the next save to be half-way (its temp file)
    assert _wait_for(lambda: (out / "last_checkpoint").exists(), proc)
    saving = _wait_for(
        lambda: any(f.startswith(".model_") and f.endswith(".tmp") for f in os.listdir(out)),
        proc,
        poll=0.0005,
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert saving, "the job ended before a save could be interrupted"
    files, last = _all_checkpoints_load(out)  # every file on disk is complete
    saved = torch.load(out / last, weights_only=True)["iteration"]
    r = run_train_net(
        "--config-file",
        config,
        "--resume",
        f"train.max_iter={saved + 3}",
        "train.checkpointer.period=1000",
    )
    assert f"Starting training from iteration {saved + 1}" in r.stdout + r.stderr
    assert not any(f.endswith(".tmp") for f in os.listdir(out))  # leftovers cleaned up
    _all_checkpoints_load(out)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=2, eval_period=1000)
    out = tmp_path / "out"
    run_train_net("--config-file", config)
    before = (out / "model_final.pth").read_bytes()
    saved = torch.load(out / "model_final.pth", weights_only=True)["iteration"]
    # a zero pixel std turns the input into inf: the losses become NaN at the next iteration
    r = run_train_net(
        "--config-file",
        config,
        "--resume",
        "train.max_iter=5",
        "model.pixel_std=[0.0,0.0,0.0]",
        check=False,
    )
    log = r.stdout + r.stderr
    assert r.returncode != 0
    # the first resumed iteration fails, before the optimizer touches the weights
    assert f"NonFiniteLossError: Non-finite loss at iteration {saved + 1}" in log, log[-3000:]
    assert "lower the learning rate" in log and "the last saved checkpoint is intact" in log
    assert (out / "model_final.pth").read_bytes() == before
    assert (out / "last_checkpoint").read_text() == "model_final.pth"


class _NaNModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, data):
        return {"loss_cls": self.w * 0 + 1.0, "loss_box_reg": self.w * float("nan")}


def test_trainer_names_the_non_finite_loss_and_does_not_step():
    model = _NaNModel()
    trainer = Trainer(
        model, [[{}]] * 3, torch.optim.SGD(model.parameters(), lr=1.0), device_type="cpu"
    )
    with EventStorage():
        with pytest.raises(
            NonFiniteLossError, match=r"iteration 0: loss_box_reg=nan\. .*lower the learning rate"
        ):
            trainer.run_step()
    assert torch.equal(model.w, torch.ones(1))  # weights untouched


def test_amp_fp16_hint_names_other_precisions():
    model = _NaNModel()
    trainer = Trainer(
        model, [[{}]], torch.optim.SGD(model.parameters(), lr=1.0), amp="fp16", device_type="cpu"
    )
    with EventStorage():
        with pytest.raises(NonFiniteLossError, match="train.amp.precision=bf16"):
            trainer.run_step()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _model():
    cfg = LazyConfig.load(str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"))
    return instantiate(cfg.model)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_a_pickle_that_runs_code_is_refused(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    if suffix == ".pth":
        torch.save({"model": {"x": _Payload(marker)}}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"model": {"x": _Payload(marker)}}, f)
    with pytest.raises(UnsafeCheckpointError, match="could run code"):
        PVTCheckpointer(_model()).load(str(path))
    assert not marker.exists()


def test_a_legacy_pickle_needs_an_explicit_opt_in(tmp_path, monkeypatch):
    import argparse

    model = _model()
    path = tmp_path / "legacy.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="PVT_FPN_D2_TRUST_PICKLE=1"):
        PVTCheckpointer(model).load(str(path))
    monkeypatch.setenv("PVT_FPN_D2_TRUST_PICKLE", "1")
    PVTCheckpointer(model).load(str(path))  # trusted on purpose: loads
