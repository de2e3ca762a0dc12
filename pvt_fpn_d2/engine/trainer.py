"""Training loop pieces used by ``train_net.py``."""

import logging
import os
import sys
import time
from typing import Dict, List, Optional

import torch

from omegaconf import OmegaConf

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.engine import SimpleTrainer, default_writers
from detectron2.utils import comm
from detectron2.utils.events import EventWriter, JSONWriter

from ..data.validation import BOX_ONLY_CONFIGS
from ..modeling.mask_head import supports_boxes_without_masks
from .checkpoint import write_error

__all__ = [
    "Trainer",
    "CheckedWriter",
    "NonFiniteLossError",
    "checked_writers",
    "resolve_device",
    "check_classes",
    "check_data_fits_model",
    "detections_per_image",
    "amp_dtype",
]

logger = logging.getLogger(__name__)

_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def amp_dtype(precision: str) -> torch.dtype:
    """The autocast dtype of ``train.amp.precision`` ("fp16" or "bf16")."""
    if precision not in _AMP_DTYPES:
        raise ValueError(f"train.amp.precision must be 'fp16' or 'bf16', got {precision!r}.")
    return _AMP_DTYPES[precision]


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite."""


def resolve_device(device: str) -> str:
    """``train.device``, falling back to the CPU (with a warning) when CUDA is unavailable."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(f"train.device={device!r} but CUDA is not available: using the CPU.")
        return "cpu"
    return device


def _model_num_classes(model: torch.nn.Module):
    """(number of classes, the config key that sets it) of a detectron2 model, if known."""
    model = getattr(model, "module", model)
    if hasattr(model, "roi_heads"):
        return model.roi_heads.num_classes, "model.roi_heads.num_classes"
    if hasattr(model, "sem_seg_head"):
        return getattr(model.sem_seg_head, "num_classes", None), "model.sem_seg_head.num_classes"
    return getattr(model, "num_classes", None), "model.num_classes"


def _dataset_classes(names_cfg):
    names = instantiate(names_cfg)  # registers a dataset given by a LazyCall
    names = [names] if isinstance(names, str) else list(names)
    meta = MetadataCatalog.get(names[0])
    classes = meta.get("thing_classes", None) or meta.get("stuff_classes", None)
    return names[0], classes


def check_classes(cfg, model: torch.nn.Module, splits=("train", "test")) -> None:
    """
    Stop before training or evaluation if the model's number of classes differs from the
    dataset's, or the test dataset's classes differ from the training dataset's.
    """
    num, key = _model_num_classes(model)
    found = []
    for split in splits:
        if split in cfg.dataloader and "dataset" in cfg.dataloader[split]:
            found.append(_dataset_classes(cfg.dataloader[split].dataset.names))
    for name, classes in found:
        if classes is not None and num is not None and len(classes) != num:
            raise ValueError(
                f"The model has {num} classes ({key}) but dataset {name!r} has {len(classes)}: "
                f"{list(classes)}. Set {key}={len(classes)}, or let the config read it from "
                "the dataset as configs/finetune does."
            )
    if len(found) == 2 and None not in (found[0][1], found[1][1]):
        (train, a), (test, b) = found
        if list(a) != list(b):
            raise ValueError(
                f"The training dataset {train!r} has classes {list(a)} but the test dataset "
                f"{test!r} has {list(b)}: both need the same categories."
            )


def detections_per_image(model: torch.nn.Module):
    """(detections a detector keeps per image, the config key that sets it), or (None, None)."""
    model = getattr(model, "module", model)
    if hasattr(model, "max_detections_per_image"):  # RetinaNet
        return model.max_detections_per_image, "model.max_detections_per_image"
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if isinstance(predictor, torch.nn.ModuleList):  # Cascade: the last stage decides
        last = len(predictor) - 1
        key = f"model.roi_heads.box_predictors.{last}.test_topk_per_image"
        return predictor[last].test_topk_per_image, key
    if predictor is not None:
        return predictor.test_topk_per_image, "model.roi_heads.box_predictor.test_topk_per_image"
    return None, None


def _split_metadata(cfg, split: str):
    if split not in cfg.dataloader or "dataset" not in cfg.dataloader[split]:
        return None, None
    names = instantiate(cfg.dataloader[split].dataset.names)
    name = names if isinstance(names, str) else list(names)[0]
    return name, MetadataCatalog.get(name)


def check_data_fits_model(cfg, model: torch.nn.Module, splits=("train", "test")) -> None:
    """
    Before training or evaluation: stop if a mask model would train on a dataset without masks
    (or on boxes without masks with a mask head that would learn them as rectangles), and warn
    once per dataset when an image has more objects than the model keeps detections per image.
    """
    inner = getattr(model, "module", model)
    roi_heads = getattr(inner, "roi_heads", None)
    mask_on = bool(getattr(roi_heads, "mask_on", False))
    limit, key = detections_per_image(model)
    for split in splits:
        name, meta = _split_metadata(cfg, split)
        if meta is None:
            continue
        with_mask = meta.get("num_objects_with_mask", None)
        without = meta.get("num_objects_without_mask", 0)
        if split == "train" and mask_on and with_mask is not None and without:
            if with_mask == 0:
                raise ValueError(
                    f"Dataset {name!r} has boxes but no masks, and this config trains Mask "
                    f"R-CNN: it would learn no masks. Train a box-only config: {BOX_ONLY_CONFIGS}."
                )
            if not supports_boxes_without_masks(roi_heads.mask_head):
                raise ValueError(
                    f"Dataset {name!r} has {without} objects with a box and no mask, and the mask "
                    f"head {type(roi_heads.mask_head).__name__} would learn them as rectangles: "
                    "use pvt_fpn_d2.modeling.mask_head.PartialMaskRCNNConvUpsampleHead (the configs' "
                    "default) or drop those annotations."
                )
            logger.info(
                f"Dataset {name!r}: {without} of {with_mask + without} objects have a box and no "
                "mask: they train the box and RPN heads, not the mask head."
            )
        most = meta.get("max_objects_per_image", 0)
        if limit is not None and most > limit:
            suggest = (most // 100 + 1) * 100
            evaluator = cfg.dataloader.get("evaluator", None)
            # the configs make the evaluator's limit follow the model's by interpolation
            follows = evaluator is None or (
                "max_dets_per_image" in evaluator
                and OmegaConf.is_interpolation(evaluator, "max_dets_per_image")
            )
            logger.warning(
                f"Dataset {name!r}: image {meta.get('max_objects_file')} has {most} objects but "
                f"the model keeps {limit} detections per image, so the rest are never detected "
                f"and evaluation counts them as missed. Raise it: {key}={suggest}"
                + ("" if follows else f" dataloader.evaluator.max_dets_per_image={suggest}")
            )


class Trainer(SimpleTrainer):
    """
    detectron2's ``SimpleTrainer`` with mixed precision in fp16 or bf16, gradient clipping that
    is correct under AMP (gradients are unscaled first), and a clear stop on a non-finite loss
    (all processes stop together, before the optimizer touches the weights).

    The AMP grad scaler is part of the trainer's state, so it is saved in checkpoints and
    restored by ``--resume``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        *,
        amp: Optional[str] = None,
        clip_grad_norm: float = 0.0,
        device_type: str = "cuda",
    ):
        """
        Args:
            amp: None (fp32), "fp16" or "bf16".
            clip_grad_norm: clip the global L2 norm of the gradients to this value (0: off).
            device_type: "cuda" or "cpu", for autocast and the grad scaler.
        """
        super().__init__(model, data_loader, optimizer)
        if amp == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("This GPU does not support bf16: use train.amp.precision=fp16.")
        self.amp_dtype = amp_dtype(amp) if amp else None
        self.device_type = device_type
        self.clip_grad_norm = clip_grad_norm
        # loss scaling only matters for fp16 (bf16 has fp32's range)
        self.grad_scaler = torch.amp.GradScaler(
            device_type, enabled=self.amp_dtype == torch.float16
        )

    def run_step(self) -> None:
        assert self.model.training, "[Trainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        try:
            with torch.autocast(
                self.device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
            ):
                loss_dict = self.model(data)
        except FloatingPointError as e:  # detectron2's RPN stops on non-finite boxes/scores
            raise NonFiniteLossError(self._non_finite_message(str(e))) from e
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        losses = sum(loss_dict.values())
        self._check_finite(loss_dict)

        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        if self.clip_grad_norm > 0:
            self.grad_scaler.unscale_(self.optimizer)  # clip the true gradients
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _check_finite(self, loss_dict: Dict[str, torch.Tensor]) -> None:
        bad = {k: float(v.detach()) for k, v in loss_dict.items() if not torch.isfinite(v).all()}
        # every process must stop at the same step, or the others wait forever in DDP
        if comm.get_world_size() > 1:
            flag = torch.tensor([float(bool(bad))], device=next(iter(loss_dict.values())).device)
            torch.distributed.all_reduce(flag)
            stop = flag.item() > 0
        else:
            stop = bool(bad)
        if stop:
            what = ", ".join(f"{k}={v}" for k, v in bad.items()) or "on another process"
            raise NonFiniteLossError(self._non_finite_message(what))

    def _non_finite_message(self, what: str) -> str:
        hint = "lower the learning rate (optimizer.lr) or enable train.clip_grad"
        if self.amp_dtype == torch.float16:
            hint += ", or train with train.amp.precision=bf16 or train.amp.enabled=False"
        return (
            f"Non-finite loss at iteration {self.iter}: {what.rstrip('.')}. Training stopped before the "
            f"weights were updated; the last saved checkpoint is intact. Try: {hint}."
        )

    def state_dict(self):
        ret = super().state_dict()
        ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])


_RESUME = "continue with train_net.py --resume (the checkpoints on disk are complete)"


class CheckedWriter(EventWriter):
    """
    A detectron2 event writer whose write faults stop training with an
    :class:`~pvt_fpn_d2.engine.checkpoint.OutputWriteError` that names its file (disk full,
    read-only, ...) and says what to do. While training is already stopping for another reason
    (the writers' last write runs in the trainer's ``finally``), a failure of the writer is
    logged instead, so that the first cause stays the error the run ends with.
    """

    def __init__(self, writer: EventWriter, path: Optional[str] = None):
        """
        Args:
            writer: the writer to call.
            path: the file it writes, or None (the console).
        """
        self.writer = writer
        self.path = path

    def write(self) -> None:
        self._call(self.writer.write)

    def close(self) -> None:
        self._call(self.writer.close)

    def _call(self, method) -> None:
        stopping = sys.exc_info()[1]  # the exception training is stopping with, if any
        try:
            method()
        except Exception as e:
            error = e
            if isinstance(e, OSError) and self.path is not None:
                error = write_error("the training metrics", self.path, e, then=_RESUME)
            if stopping is not None:
                logger.error(f"{type(self.writer).__name__} failed while training was stopping "
                             f"({type(stopping).__name__}): {error}")  # fmt: skip
                return
            if error is e:
                raise
            raise error from e


def checked_writers(output_dir: str, max_iter: Optional[int] = None) -> List[EventWriter]:
    """
    detectron2's ``default_writers(output_dir, max_iter)`` (the console, ``metrics.json``,
    TensorBoard), each wrapped in a :class:`CheckedWriter` (``metrics.json`` named).
    """
    path = os.path.join(output_dir, "metrics.json")
    try:
        writers = default_writers(output_dir, max_iter)
    except OSError as e:  # metrics.json is opened here
        raise write_error("the training metrics", e.filename or path, e, then=_RESUME) from e
    return [CheckedWriter(w, path if isinstance(w, JSONWriter) else None) for w in writers]
