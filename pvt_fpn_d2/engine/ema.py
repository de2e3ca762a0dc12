"""
An exponential moving average (EMA) of the model's weights during training, as a detectron2
hook (``train.ema`` in the configs; ``train.ema.enabled=True`` turns it on for any config).

After every step, ``ema = decay * ema + (1 - decay) * weights``, over every floating-point
parameter and buffer (timm's ``ModelEmaV3`` does the arithmetic). ``decay`` may start low and
rise to its value (``warmup=True``: ``1 - (1 + n) ** -power`` after ``n`` updates, timm's
warm-up) so the early, fast-moving weights are forgotten quickly.

- Evaluation during training (``train.eval_period``) scores the averaged weights.
- Checkpoints hold the training weights under ``model`` and the average under ``ema``;
  ``--resume`` restores both and continues the average where it stopped. Every other use of a
  checkpoint (evaluation, prediction, export, fine-tuning from it) loads the averaged weights
  (:class:`~pvt_fpn_d2.engine.checkpoint.PVTCheckpointer`).
- At the last iteration the average is copied into the model, so ``model_final.pth`` holds it
  under ``model`` as well and any detectron2 checkpointer loads it.
"""

import logging
from typing import Optional

import torch
from torch import nn

from detectron2.engine import HookBase
from timm.utils import ModelEmaV3

__all__ = ["ModelEMA", "EMAHook", "build_ema_hook", "EMA_KEY"]

logger = logging.getLogger(__name__)

# the checkpoint entry of the average
EMA_KEY = "ema"


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel


class ModelEMA(ModelEmaV3):
    """timm's ``ModelEmaV3`` that also counts its updates (saved in its ``state_dict``), so a
    resumed run continues the decay warm-up where it stopped. The first update copies the
    weights (also after resuming a checkpoint saved without an average)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True, power: float = 0.75):
        super().__init__(
            _unwrap(model), decay=decay, use_warmup=warmup, warmup_power=power, foreach=True
        )
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def step(self, model: nn.Module) -> float:
        """Average ``model``'s current weights in; the first update copies them. Returns the
        decay it used."""
        n = int(self.num_updates)
        # timm: decay 0 (a copy) at step <= 1, then its warm-up from step 2 on
        decay = self.get_decay(n + 1)
        self.update(_unwrap(model), step=n + 1)
        self.num_updates += 1
        return decay

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        _unwrap(model).load_state_dict(self.module.state_dict())


class EMAHook(HookBase):
    """Keeps a :class:`ModelEMA` of the trainer's model. Put it before the checkpointer and the
    evaluation hooks: at the last iteration it copies the average into the model before they
    save and score it."""

    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def after_step(self):
        decay = self.ema.step(self.trainer.model)
        self.trainer.storage.put_scalar("ema_decay", decay, smoothing_hint=False)
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self.ema.copy_to(self.trainer.model)
            logger.info(
                f"EMA: the average of the weights ({int(self.ema.num_updates)} updates, decay "
                f"{self.ema.decay}) is the final model"
            )

    def eval_model(self) -> nn.Module:
        """The model evaluation scores: the average."""
        return self.ema.module


def build_ema_hook(cfg_ema, model: nn.Module) -> Optional[EMAHook]:
    """The hook of ``train.ema`` (``enabled``, ``decay``, ``warmup``, ``power``), or None when it
    is off or absent."""
    if not cfg_ema or not cfg_ema.get("enabled", False):
        return None
    decay = float(cfg_ema.get("decay", 0.999))
    if not 0.0 < decay < 1.0:
        raise ValueError(f"train.ema.decay must be between 0 and 1 (e.g. 0.999), got {decay}.")
    ema = ModelEMA(
        model,
        decay=decay,
        warmup=bool(cfg_ema.get("warmup", True)),
        power=float(cfg_ema.get("power", 0.75)),
    )
    logger.info(f"EMA of the weights: decay {decay}, warm-up {ema.use_warmup}")
    return EMAHook(ema)
