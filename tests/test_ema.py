"""train.ema, the moving average of the weights (pvt_fpn_d2/engine/ema.py): against an average
computed by hand, through detectron2's trainer and checkpointer, across --resume, and in
train_net.py."""

import pytest
import torch
from torch import nn

from detectron2.engine import HookBase, SimpleTrainer, hooks

from pvt_fpn_d2.engine import PVTCheckpointer
from pvt_fpn_d2.engine.ema import EMAHook, ModelEMA, build_ema_hook

from .conftest import run_train_net, tiny_config


class Tiny(nn.Module):
    """A detectron2-style model: a dict of losses in training."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 2)
        self.register_buffer("scale", torch.ones(2))

    def forward(self, batch):
        x, y = batch
        return {"loss": ((self.fc(x) * self.scale - y) ** 2).mean()}


def _batches():
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(4, 3, generator=g), torch.randn(4, 2, generator=g)) for _ in range(3)]
    i = 0
    while True:  # the same sequence in every run, so a resumed run can repeat it
        yield data[i % 3]
        i += 1


def _hand_average(snapshots, decay, power=None):
    """The average by its definition: the first update copies, update k (k >= 2) uses decay
    d_k = decay, or min(decay, 1 - k ** -power) with the warm-up."""
    avg = None
    for k, w in enumerate(snapshots, start=1):
        if avg is None:
            avg = {n: v.clone().double() for n, v in w.items()}
            continue
        d = decay if power is None else min(decay, 1 - k**-power)
        avg = {n: d * avg[n] + (1 - d) * w[n].double() for n in avg}
    return avg


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("warmup", [False, True])
def test_average_equals_the_hand_computed_one(warmup):
    model = Tiny()
    ema = ModelEMA(model, decay=0.9, warmup=warmup, power=0.75)
    snapshots = []
    g = torch.Generator().manual_seed(2)
    for _ in range(7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g))
            model.scale.mul_(1.5)
        snapshots.append(_weights(model))
        ema.step(model)
    expected = _hand_average(snapshots, 0.9, 0.75 if warmup else None)
    for k, v in ema.module.state_dict().items():
        torch.testing.assert_close(v.double(), expected[k], rtol=1e-6, atol=1e-6)
        # and not simply the last weights
        assert not torch.allclose(v, snapshots[-1][k])
    assert int(ema.num_updates) == 7


class _Record(HookBase):
    """The weights after every optimizer step (registered before the EMA hook)."""

    def __init__(self):
        self.seen = []

    def after_step(self):
        self.seen.append(_weights(self.trainer.model))


def _train(out, start, max_iter, resume_from=None, decay=0.8):
    out.mkdir(parents=True, exist_ok=True)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = SimpleTrainer(model, _batches(), opt)
    ema = build_ema_hook({"enabled": True, "decay": decay, "warmup": True, "power": 0.75}, model)
    assert isinstance(ema, EMAHook)
    checkpointer = PVTCheckpointer(model, str(out), trainer=trainer, ema=ema.ema)
    record = _Record()
    trainer.register_hooks(
        [record, ema, hooks.PeriodicCheckpointer(checkpointer, period=3, max_iter=max_iter)]
    )
    if resume_from:
        checkpointer.load(str(resume_from))  # what --resume does with last_checkpoint
    trainer.train(start, max_iter)
    return model, ema, record.seen


def test_hook_averages_every_step_saves_and_resumes(tmp_path):
    model, ema, seen = _train(tmp_path / "a", 0, 6)
    assert len(seen) == 6
    expected = _hand_average(seen, 0.8, 0.75)
    final = torch.load(tmp_path / "a" / "model_final.pth", weights_only=True)
    for k, v in expected.items():
        # the average, in the checkpoint's "ema" entry and as the final model
        torch.testing.assert_close(final["ema"][f"module.{k}"].double(), v, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(final["model"][k].double(), v, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(model.state_dict()[k].double(), v, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(final["model"]["fc.weight"], seen[-1]["fc.weight"])

    # model_0000002.pth: the training weights under "model", the average of 3 updates
    mid = torch.load(tmp_path / "a" / "model_0000002.pth", weights_only=True)
    torch.testing.assert_close(mid["model"]["fc.weight"], seen[2]["fc.weight"])
    three = _hand_average(seen[:3], 0.8, 0.75)
    torch.testing.assert_close(mid["ema"]["module.fc.weight"].double(), three["fc.weight"])
    assert int(mid["ema"]["num_updates"]) == 3

    # --resume from it continues both the training and the average: the same end
    resumed, _, seen_b = _train(tmp_path / "a", 3, 6, resume_from=tmp_path / "a/model_0000002.pth")
    assert len(seen_b) == 3
    for k, v in expected.items():
        torch.testing.assert_close(resumed.state_dict()[k].double(), v, rtol=1e-5, atol=1e-6)


def test_checkpoint_loads_its_average_except_on_resume(tmp_path):
    _train(tmp_path, 0, 6)
    mid = torch.load(tmp_path / "model_0000002.pth", weights_only=True)
    averaged = {k[len("module.") :]: v for k, v in mid["ema"].items() if k.startswith("module.")}
    # evaluation, prediction, export, fine-tuning: a checkpointer without an average
    plain = Tiny()
    PVTCheckpointer(plain).load(str(tmp_path / "model_0000002.pth"), checkpointables=[])
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(v, averaged[k])
    assert not torch.allclose(averaged["fc.weight"], mid["model"]["fc.weight"])
    # --resume: the training weights, and the average into its own module
    model = Tiny()
    ema = ModelEMA(model, decay=0.8)
    PVTCheckpointer(model, ema=ema).load(str(tmp_path / "model_0000002.pth"))
    torch.testing.assert_close(model.state_dict()["fc.weight"], mid["model"]["fc.weight"])
    torch.testing.assert_close(ema.module.fc.weight, averaged["fc.weight"])


def test_resuming_a_run_saved_without_an_average_starts_it_from_the_loaded_weights(tmp_path):
    model = Tiny()
    with torch.no_grad():
        model.fc.weight.fill_(3.0)
    torch.save({"model": model.state_dict(), "iteration": 2}, tmp_path / "model_0000002.pth")
    _, ema, seen = _train(tmp_path, 3, 5, resume_from=tmp_path / "model_0000002.pth")
    expected = _hand_average(seen, 0.8, 0.75)
    torch.testing.assert_close(ema.ema.module.fc.weight.double(), expected["fc.weight"])
    assert ema.ema.module.fc.weight.min() > 1.0  # from the loaded 3.0, not Tiny()'s (< 0.6)


def test_bad_decay_is_named():
    with pytest.raises(ValueError, match="train.ema.decay must be between 0 and 1"):
        build_ema_hook({"enabled": True, "decay": 1.5}, Tiny())
    assert build_ema_hook({"enabled": False, "decay": 0.9}, Tiny()) is None
    assert build_ema_hook(None, Tiny()) is None


def test_train_net_with_ema(tmp_path, tiny_dataset):
    """train.ema.enabled=True on a detector: model_final.pth's model is its average, and the
    evaluation at the end scores it."""
    config = tiny_config(tmp_path, tiny_dataset, max_iter=3, eval_period=3)
    out = tmp_path / "out"
    r = run_train_net("--config-file", config, "train.ema.enabled=True", "train.ema.decay=0.5")
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert int(final["ema"]["num_updates"]) == 3
    for k, v in final["model"].items():
        torch.testing.assert_close(final["ema"][f"module.{k}"], v)
    # and the average differs from the last training weights (model_0000001: 2 updates in)
    mid = torch.load(out / "model_0000001.pth", weights_only=True)
    key = next(k for k in mid["model"] if k.endswith("box_predictor.cls_score.weight"))
    assert not torch.equal(mid["model"][key], mid["ema"][f"module.{key}"])
    assert "EMA: the average of the weights (3 updates" in r.stdout + r.stderr
    assert (out / "eval_results.json").is_file()
