"""Crash-safe checkpoints and resume, non-finite losses, safe weight loading (#6)."""

import argparse
import errno
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from pvt_fpn_d2 import PVTCheckpointer
from pvt_fpn_d2.engine import NonFiniteLossError, Trainer
from pvt_fpn_d2.engine.checkpoint import OutputWriteError
from pvt_fpn_d2.modeling.weights import UnsafeCheckpointError

from .conftest import REPO, load_script, metrics, run_train_net, subprocess_env, tiny_config


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


# train_net.py whose checkpoint save number `at` writes half the file, then the process dies
# (SIGKILL: no clean-up runs), or the disk is full (ENOSPC): deterministic, whatever the timing
_HALF_A_SAVE = """
import errno, io, os, runpy, signal, sys
import torch

real_save, saves = torch.save, []


def save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and "iteration" in obj:  # a training checkpoint
        saves.append(obj["iteration"])
        if len(saves) == {at}:
            buffer = io.BytesIO()
            real_save(obj, buffer)
            f.write(buffer.getvalue()[: buffer.tell() // 2])
            f.flush()
            if {fault!r} == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_save(obj, f, *args, **kwargs)


torch.save = save
sys.argv = ["train_net.py", *{argv!r}]
runpy.run_path({train_net!r}, run_name="__main__")
"""


def _train_with_a_failing_save(fault, at, *argv):
    code = _HALF_A_SAVE.format(fault=fault, at=at, argv=list(map(str, argv)),
                               train_net=str(REPO / "train_net.py"))  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
        cwd=REPO,
    )


def _resume_continues_from(config, out, saved):
    """--resume after the fault: continues at ``saved`` + 1, the leftovers removed."""
    r = run_train_net(
        "--config-file",
        config,
        "--resume",
        f"train.max_iter={saved + 2}",
        "train.checkpointer.period=1000",
    )
    assert f"Starting training from iteration {saved + 1}" in r.stdout + r.stderr
    assert not any(f.endswith(".tmp") for f in os.listdir(out))  # leftovers cleaned up
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == saved + 1
    _all_checkpoints_load(out)


def test_sigkill_during_a_save_loses_no_checkpoint(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=10, eval_period=1000)
    out = tmp_path / "out"
    # the second checkpoint (iteration 1) is half-written when the process is killed
    r = _train_with_a_failing_save("kill", 2, "--config-file", config,
                                   "train.checkpointer.period=1")  # fmt: skip
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    files, last = _all_checkpoints_load(out)  # every file under a checkpoint's name is complete
    assert files == ["model_0000000.pth"] and last == "model_0000000.pth"
    assert [f for f in os.listdir(out) if f.endswith(".tmp")], "no half-written temporary file"
    _resume_continues_from(config, out, saved=0)


def test_disk_full_during_a_save_stops_with_a_message_and_loses_no_checkpoint(
    tmp_path, tiny_dataset
):
    config = tiny_config(tmp_path, tiny_dataset, max_iter=10, eval_period=1000)
    out = tmp_path / "out"
    r = _train_with_a_failing_save("ENOSPC", 2, "--config-file", config,
                                   "train.checkpointer.period=1")  # fmt: skip
    assert r.returncode == 1, r.stderr[-3000:]
    message = r.stderr.strip().splitlines()[-1]  # the last line of the traceback
    path = out / "model_0000001.pth"
    assert message == (
        f"pvt_fpn_d2.engine.checkpoint.OutputWriteError: Cannot write checkpoint {path}: disk "
        "full (no space left on the device) [ENOSPC]. No partial file was written under that "
        "name, and every checkpoint saved before is complete; last_checkpoint names "
        f"model_0000000.pth. Free space on the disk of {out} (or write to another disk), then "
        "continue with train_net.py --resume (train.checkpointer.max_to_keep=N keeps only the "
        "last N checkpoints)."
    )
    assert not path.exists() and not [f for f in os.listdir(out) if f.endswith(".tmp")]
    files, last = _all_checkpoints_load(out)
    assert files == ["model_0000000.pth"] and last == "model_0000000.pth"
    _resume_continues_from(config, out, saved=0)


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


def _on_a_full_disk(monkeypatch):
    """The checkpointer's temporary files are written to /dev/full: the kernel's own ENOSPC
    once the first buffer is flushed, as on a disk that filled up."""
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _fail(monkeypatch, name, code, when=lambda *args: True):
    """``os.<name>`` (or ``tempfile.mkstemp``) raises OSError(code) when ``when(*args)``."""
    module = tempfile if name == "mkstemp" else os
    real = getattr(module, name)

    def failing(*args, **kwargs):
        if when(*args):
            raise OSError(code, os.strerror(code), str(args[-1]) if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("full disk", "disk full (no space left on the device) [ENOSPC]"),
        ("read-only folder", "read-only file system [EROFS]"),
        ("rename refused", "permission denied (a read-only folder?) [EACCES]"),
    ],
)
def test_a_checkpoint_that_cannot_be_written_is_named_and_the_last_one_kept(
    tmp_path, monkeypatch, fault, reason
):
    checkpointer = PVTCheckpointer(torch.nn.Linear(3, 2), str(tmp_path))
    checkpointer.save("model_0000000", iteration=0)
    before = (tmp_path / "model_0000000.pth").read_bytes()
    if fault == "full disk":
        _on_a_full_disk(monkeypatch)
    elif fault == "read-only folder":  # root writes anywhere: the refusal is simulated
        _fail(monkeypatch, "mkstemp", errno.EROFS)
    else:
        _fail(monkeypatch, "replace", errno.EACCES)
    with pytest.raises(OutputWriteError) as info:
        checkpointer.save("model_0000001", iteration=1)
    path, folder = tmp_path / "model_0000001.pth", tmp_path
    todo = (
        f"Free space on the disk of {folder} (or write to another disk)"
        if fault == "full disk"
        else f"Make {folder} writable (or write to another folder)"
    )
    assert str(info.value).startswith(
        f"Cannot write checkpoint {path}: {reason}. No partial file was written under that name, "
        "and every checkpoint saved before is complete; last_checkpoint names model_0000000.pth. "
        f"{todo}, then continue with train_net.py --resume"
    ), str(info.value)
    assert info.value.errno == {"full disk": errno.ENOSPC, "read-only folder": errno.EROFS}.get(
        fault, errno.EACCES
    )
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000000.pth"]
    assert (tmp_path / "model_0000000.pth").read_bytes() == before
    assert checkpointer.get_checkpoint_file() == str(tmp_path / "model_0000000.pth")
    assert torch.load(tmp_path / "model_0000000.pth", weights_only=True)["iteration"] == 0


def test_last_checkpoint_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    checkpointer = PVTCheckpointer(torch.nn.Linear(3, 2), str(tmp_path))
    checkpointer.save("model_0000000", iteration=0)
    _fail(monkeypatch, "replace", errno.ENOSPC, lambda src, dst: dst.endswith("last_checkpoint"))
    with pytest.raises(OutputWriteError) as info:
        checkpointer.save("model_0000001", iteration=1)
    assert str(info.value).startswith(
        f"Cannot write last_checkpoint {tmp_path / 'last_checkpoint'}: disk full (no space left "
        "on the device) [ENOSPC]. The checkpoint model_0000001.pth itself is complete, but "
        "last_checkpoint still names model_0000000.pth: --resume continues from "
        "model_0000000.pth (write model_0000001.pth into last_checkpoint to continue from it). "
    ), str(info.value)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"
    assert torch.load(tmp_path / "model_0000001.pth", weights_only=True)["iteration"] == 1


def test_metrics_json_that_cannot_be_written_stops_training_with_its_name(
    tmp_path, tiny_dataset, monkeypatch
):
    """A real (in-process) train_net.py run whose metrics.json is on a full disk (/dev/full)."""
    config = tiny_config(tmp_path, tiny_dataset, max_iter=4, eval_period=1000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").symlink_to("/dev/full")
    train_net = load_script("train_net.py", "train_net_write_faults")
    with pytest.raises(OutputWriteError) as info:
        train_net.do_train(argparse.Namespace(resume=False), LazyConfig.load(str(config)))
    assert str(info.value) == (
        f"Cannot write the training metrics {out / 'metrics.json'}: disk full (no space left on "
        f"the device) [ENOSPC]. Free space on the disk of {out} (or write to another disk), then "
        "continue with train_net.py --resume (the checkpoints on disk are complete)."
    )
    # stopped at its first write (iteration 0), before the first checkpoint (iteration 1); the
    # writers' last write (the trainer's finally) was logged, not raised over the first cause
    assert not any(f.endswith(".pth") for f in os.listdir(out))
