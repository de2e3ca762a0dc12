"""
Checkpoint loading for PVT-v2 detectors.

:class:`PVTCheckpointer` is detectron2's ``DetectionCheckpointer`` plus:

* PVT-v2 ImageNet files in the official, timm or Hugging Face format load directly as
  ``train.init_checkpoint`` / ``MODEL.WEIGHTS`` (mapped onto the model's backbone);
* every backbone parameter must be loaded: a checkpoint of another architecture or variant is
  an error, not a page of warnings;
* fine-tuning from a checkpoint with another number of classes skips the class-specific
  layers with one summary line;
* files are read safely (:func:`pvt_fpn_d2.modeling.weights.read_checkpoint`);
* :func:`convert_mmdet_checkpoint` turns an mmdetection Mask R-CNN, Faster R-CNN or RetinaNet
  checkpoint with a PVT-v2 backbone (the official COCO models) into a checkpoint of the
  detectron2 model a config builds (the mapping: :mod:`pvt_fpn_d2.modeling.mmdet_weights`);
* a checkpoint with an average of the weights (``ema``, :mod:`pvt_fpn_d2.engine.ema`) loads
  that average, except when ``--resume`` restores the average itself;
* checkpoints and ``last_checkpoint`` are written atomically: a job killed while saving
  leaves the previous checkpoint and a ``last_checkpoint`` that points at a complete file;
  a save that cannot be written (disk full, read-only folder) stops with
  :class:`OutputWriteError`, which names the file, says why and what to do
  (:func:`write_error`, also used for ``metrics.json`` and the pictures of ``tools/predict.py``).

Importing this module also registers ``timm://<variant>`` with detectron2's PathManager: it
resolves to timm's ImageNet weights from the Hugging Face hub, converted to detectron2 keys, so
plain ``DetectionCheckpointer`` (yacs ``DefaultTrainer``) can use them too.
"""

import errno
import glob
import logging
import os
import re
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import torch
from iopath.common.file_io import PathHandler, get_cache_dir
from omegaconf import OmegaConf

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..modeling.backbone import PVTv2Backbone
from ..utils import atomic_torch_save, atomic_write_text
from ..modeling.mmdet_weights import (
    MMDET_PVT_NORM_EPS,
    MMDetCheckpointError,
    MMDetConversion,
    convert_mmdet_state_dict,
    detect_mmdet_detector,
    mmdet_backbone_to_timm,
    model_zoo_config_name,
    read_mmdet_checkpoint,
)
from ..modeling.weights import (
    TIMM_HUB_PREFIX,
    check_pickle_is_safe,
    detect_format,
    extract_state_dict,
    fetch_timm_hub_weights,
    guess_variant,
    read_checkpoint,
    to_detectron2_state_dict,
)
from .ema import EMA_KEY

__all__ = [
    "OutputWriteError",
    "PVTCheckpointer",
    "TimmHubHandler",
    "check_writable_folder",
    "convert_to_detectron2_checkpoint",
    "convert_mmdet_checkpoint",
    "write_error",
]

logger = logging.getLogger(__name__)

# Layers whose shapes depend on the number of classes (box, mask, RetinaNet, sem-seg heads).
_CLASS_SPECIFIC = re.compile(
    r"(^|\.)(cls_score|bbox_pred|mask_head\.(\d+\.)?predictor|sem_seg_head\.predictor)"
    r"\.(weight|bias)$"
)


class OutputWriteError(OSError):
    """
    A file of a run (a checkpoint, ``last_checkpoint``, ``metrics.json``, a prediction) could
    not be written. The message names the file, says why (disk full, read-only, ...) and what
    to do; ``errno`` is the operating system's, ``path`` the file.
    """

    def __init__(self, message: str, errno_: Optional[int] = None, path: Optional[str] = None):
        super().__init__(message)
        self.errno = errno_
        self.path = path


# why a write failed, by errno, in words (the errno's name follows in brackets)
_WRITE_REASONS = {
    errno.ENOSPC: "disk full (no space left on the device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied (a read-only folder?)",
    errno.EPERM: "operation not permitted (a read-only folder?)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "a folder of that name is in the way",
    errno.EIO: "input/output error (a failing disk or a lost network mount)",
}
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _os_error(error: BaseException) -> Optional[OSError]:
    """``error`` if it is an OSError, else the first OSError it was raised from or during
    (torch.save reports a failed write as a RuntimeError raised during the file's OSError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_error(what: str, path: str, error: BaseException, state: str = "", then: str = ""):
    """
    The :class:`OutputWriteError` to raise (``from error``) when writing ``path`` failed.

    Args:
        what: what the file is, e.g. "checkpoint"; the message starts "Cannot write <what>
            <path>: <why> [ERRNO]."
        path: the file (or folder) that could not be written.
        error: the OSError, or an exception raised from or during one.
        state: what is (still) on disk, a sentence.
        then: what to do once the cause is fixed, e.g. "continue with train_net.py --resume".

    Returns:
        the OutputWriteError (its ``errno`` is ``error``'s).
    """
    os_error = _os_error(error)
    code = getattr(os_error, "errno", None)
    reason = _WRITE_REASONS.get(code) or getattr(os_error, "strerror", None) or str(error)
    name = errno.errorcode.get(code)
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if code in _NO_SPACE:
        todo = f"Free space on the disk of {folder} (or write to another disk)"
    elif code in _NOT_WRITABLE:
        todo = f"Make {folder} writable (or write to another folder)"
    elif code in (errno.ENOTDIR, errno.EISDIR):
        todo = "Choose a path whose folders are folders"
    else:
        todo = f"Check the disk of {folder}"
    message = f"Cannot write {what} {path}: {reason}" + (f" [{name}]" if name else "") + ". "
    message += (state.rstrip() + " " if state else "") + todo + (f", then {then}." if then else ".")
    return OutputWriteError(message, code, path)


def check_writable_folder(folder: str, what: str, then: str = "") -> None:
    """
    Create ``folder`` if needed and write (then remove) a small file in it, so that a read-only
    or missing output folder stops a run at once, before any work, with an
    :class:`OutputWriteError` that names it. ``what`` says what the folder is, e.g.
    "into train.output_dir"; ``then`` as in :func:`write_error`.
    """
    if "://" in folder:  # remote storage (PathManager): nothing to probe here
        return
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write_test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise write_error(what, folder, e, then=then) from e


def convert_to_detectron2_checkpoint(src: str, dst: str, prefix: Optional[str] = None) -> int:
    """
    Convert PVT-v2 ImageNet weights (official, timm or HF format) into a detectron2 checkpoint
    that ``train.init_checkpoint`` / ``MODEL.WEIGHTS`` load directly. Written atomically.

    Returns:
        the number of tensors written.
    """
    sd = extract_state_dict(read_checkpoint(src))
    kwargs = {} if prefix is None else {"prefix": prefix}
    model = to_detectron2_state_dict(sd, **kwargs)
    atomic_torch_save(
        {"model": model, "__author__": "pvt_fpn_d2", "matching_heuristics": False}, dst
    )
    return len(model)


_PVT_FIRST_KEY = "patch_embed.proj.weight"  # the first parameter of every PVT-v2


def _move_backbone(state: Dict[str, Any], prefix: Optional[str]) -> None:
    """A PVT-v2 stored under another prefix than this model's (a detector's
    ``backbone.bottom_up.model.`` loaded into a classifier or depth model whose backbone is the
    bottom-up network alone, ``backbone.model.``, or the other way round) is moved to it."""
    if prefix is None or any(k.startswith(prefix) for k in state):
        return
    found = [k[: -len(_PVT_FIRST_KEY)] for k in state if k.endswith("." + _PVT_FIRST_KEY)]
    if len(found) != 1:
        return  # none, or several backbones: nothing is guessed
    other = found[0]
    for k in [k for k in state if k.startswith(other)]:
        state[prefix + k[len(other) :]] = state.pop(k)
    logger.info(f"PVT-v2 backbone weights found under {other}*: loaded into {prefix}*")


def _anchor_layout(anchor_generator) -> Tuple[int, int]:
    """(sizes, aspect ratios) per location of a DefaultAnchorGenerator, from its cell anchors."""
    cell = next(iter(anchor_generator.cell_anchors))  # order: for size: for aspect ratio
    ratios = torch.unique(
        torch.round((cell[:, 3] - cell[:, 1]) / (cell[:, 2] - cell[:, 0]), decimals=4)
    )
    return len(cell) // len(ratios), len(ratios)


def convert_mmdet_checkpoint(
    src: str, dst: Optional[str] = None, cfg: Optional[Any] = None
) -> Tuple[MMDetConversion, Any]:
    """
    Convert an mmdetection checkpoint (Mask R-CNN, Faster R-CNN, RetinaNet or Cascade Mask R-CNN
    with a PVT-v2 backbone, mmdetection 2.x or 3.x) into the detectron2 model that ``cfg``
    builds, and write it to ``dst`` (atomically) if given. Every parameter is filled and every
    checkpoint tensor placed, or
    :class:`~pvt_fpn_d2.modeling.mmdet_weights.MMDetCheckpointError` names the keys.

    Args:
        src: the mmdetection ``.pth`` (read with ``weights_only=True``).
        dst: the detectron2 checkpoint to write, or None.
        cfg: a LazyConfig whose ``model`` is the target; None: this project's COCO config of the
            checkpoint's detector and PVT-v2 variant (e.g. ``COCO/retinanet_pvt_v2_b0_fpn_1x.py``).

    Returns:
        (the conversion, the config used)
    """
    from detectron2.config import instantiate

    sd, meta = read_mmdet_checkpoint(src)
    config_name = ""
    if cfg is None:
        from ..model_zoo import get_config

        backbone = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
        detector = detect_mmdet_detector(sd)
        variant = guess_variant(mmdet_backbone_to_timm(backbone)[0])
        config_name = model_zoo_config_name(detector, variant)
        logger.info(f"{src}: converting for the config {config_name}")
        cfg = get_config(config_name)
    node = cfg.model.get("anchor_generator") or cfg.model.get("proposal_generator", {}).get(
        "anchor_generator"
    )
    if node is None:
        raise MMDetCheckpointError(
            "The config builds no anchor-based detector (no model.anchor_generator or "
            "model.proposal_generator.anchor_generator): use a Mask R-CNN, Faster R-CNN or "
            "RetinaNet config."
        )
    with torch.device("meta"):  # names and shapes only: no memory, no init
        model = instantiate(cfg.model)
    backbones = [(n, m) for n, m in model.named_modules() if isinstance(m, PVTv2Backbone)]
    if not backbones:
        raise MMDetCheckpointError("The config's model has no PVTv2Backbone.")
    name, backbone = backbones[0]
    conversion = convert_mmdet_state_dict(
        sd,
        model.state_dict(),
        _anchor_layout(instantiate(node)),
        model_variant=backbone.name,
        backbone_prefix=f"{name}.model.",
    )
    conversion.config = config_name
    # mmdetection's own PVT-v2 has LayerNorm eps 1e-6 where timm (and the official code) has 1e-5
    eps = MMDET_PVT_NORM_EPS if conversion.backbone_naming == "mmdetection" else None
    key = f"model.{name}.patch_and_sr_norm_eps"
    yacs_eps = ""
    if OmegaConf.select(cfg, key, default=None) != eps:
        conversion.config_overrides.append(f"{key}={'null' if eps is None else eps}")
        yacs_eps = f"; in a yacs config MODEL.PVT.PATCH_AND_SR_NORM_EPS {eps}"
    version = meta.get("mmdet_version") or ("3.x" if "mmengine_version" in meta else "unknown")
    logger.info(f"{src} (mmdetection {version}): {conversion}")
    if conversion.config_overrides:
        logger.warning(
            f"For mmdetection's exact numbers, run the model with {conversion.config_overrides} "
            f"(the checkpoint's backbone is {conversion.backbone_naming}'s PVT-v2{yacs_eps})."
        )
    if dst:
        atomic_torch_save(
            {
                "model": conversion.state_dict,
                "__author__": f"pvt_fpn_d2, converted from mmdetection ({src})",
                "matching_heuristics": False,
            },
            dst,
        )
    return conversion, cfg


class TimmHubHandler(PathHandler):
    """``timm://pvt_v2_b2`` -> timm's ImageNet weights, converted to a detectron2 checkpoint."""

    PREFIX = TIMM_HUB_PREFIX

    def _get_supported_prefixes(self) -> List[str]:
        return [self.PREFIX]

    def _get_local_path(self, path: str, **kwargs: Any) -> str:
        name = path[len(self.PREFIX) :]
        dst = os.path.join(get_cache_dir(), "pvt_fpn_d2", f"{name}_timm_in1k_d2.pth")
        if not os.path.isfile(dst):
            src = fetch_timm_hub_weights(name)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            convert_to_detectron2_checkpoint(src, dst)
            logger.info(f"{path}: converted {src} to {dst}")
        return dst

    def _open(self, path: str, mode: str = "r", **kwargs: Any):
        return PathManager.open(self._get_local_path(path), mode, **kwargs)


if TimmHubHandler.PREFIX not in PathManager._path_handlers:
    PathManager.register_handler(TimmHubHandler())


def _shape(v) -> tuple:
    return tuple(getattr(v, "shape", ()))


class PVTCheckpointer(DetectionCheckpointer):
    """See the module docstring. Use it wherever ``DetectionCheckpointer`` is used."""

    # snapshots that ``--resume`` must not continue from: detectron2's BestCheckpointer saves
    # model_best.pth, which may be older than the newest checkpoint
    UNTAGGED_NAMES = ("model_best",)

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        if not self._is_local(self.save_dir):  # remote storage: fvcore's own writer
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        try:
            atomic_torch_save(data, path)
        except Exception as e:  # the OSError, or torch's RuntimeError during it
            if _os_error(e) is None:
                raise
            state = (
                "No partial file was written under that name, and every checkpoint saved before "
                "is complete"
                f"{self._last_saved('; last_checkpoint names ')}."
            )
            raise self._write_error("checkpoint", path, e, state) from e
        if name not in self.UNTAGGED_NAMES:
            try:
                self.tag_last_checkpoint(basename)
            except OSError as e:
                previous = self._last_saved("")
                state = (
                    f"The checkpoint {basename} itself is complete, but last_checkpoint "
                    + (
                        f"still names {previous}: --resume continues from {previous}"
                        if previous
                        else "names none: --resume starts over"
                    )
                    + f" (write {basename} into last_checkpoint to continue from it)."
                )
                last = os.path.join(self.save_dir, "last_checkpoint")
                raise self._write_error("last_checkpoint", last, e, state) from e

    def _last_saved(self, prefix: str) -> str:
        """``prefix`` and the checkpoint ``last_checkpoint`` names, or "" if there is none."""
        try:
            with open(os.path.join(self.save_dir, "last_checkpoint")) as f:
                return prefix + f.read().strip()
        except OSError:
            return ""

    def _write_error(self, what: str, path: str, error: BaseException, state: str):
        then = "continue with train_net.py --resume"
        if getattr(_os_error(error), "errno", None) in _NO_SPACE:
            # model_*.pth are hundreds of MB: PeriodicCheckpointer can keep fewer of them
            then = f"{then} (train.checkpointer.max_to_keep=N keeps only the last N checkpoints)"
        return write_error(what, path, error, state, then)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not self._is_local(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    @staticmethod
    def _is_local(path: str) -> bool:
        return "://" not in path

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        if resume and self.save_dir and self._is_local(self.save_dir):
            # temporary files of a save that was killed half-way; the checkpoints are intact
            for f in glob.glob(os.path.join(self.save_dir, ".*.tmp")):
                self.logger.info(f"Removing {f}, left by an interrupted save")
                os.unlink(f)
        return super().resume_or_load(path, resume=resume)

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        self._loading = path
        # the average of the weights (train.ema) replaces the training weights unless it is
        # being restored itself (--resume of a run that keeps one)
        self._use_ema = not (
            EMA_KEY in self.checkpointables
            and (checkpointables is None or EMA_KEY in checkpointables)
        )
        return super().load(path, checkpointables=checkpointables)

    def _backbone_prefix(self) -> Optional[str]:
        for name, module in self.model.named_modules():
            if isinstance(module, PVTv2Backbone):
                return f"{name}.model." if name else "model."
        return None

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if filename.endswith(".pkl"):  # Detectron / detectron2 model-zoo pickles
            check_pickle_is_safe(filename)  # numpy arrays only, or an explicit opt-in
            return super()._load_file(filename)
        obj = read_checkpoint(filename)
        sd = extract_state_dict(obj)
        try:
            fmt = detect_format(sd)
        except ValueError:
            fmt = None  # another architecture: reported by _load_model
        prefix = self._backbone_prefix()
        if fmt in ("official", "timm", "hf") and prefix is not None:
            logger.info(f"{filename}: PVT-v2 ImageNet weights ({fmt} format)")
            return {
                "model": to_detectron2_state_dict(sd, prefix=prefix),
                "matching_heuristics": False,
            }
        if isinstance(obj, dict) and "model" in obj:
            return obj
        return {"model": sd}

    def _load_model(self, checkpoint: Dict[str, Any]):
        if getattr(self, "_use_ema", False) and isinstance(checkpoint.get(EMA_KEY), dict):
            averaged = {
                k[len("module.") :]: v
                for k, v in checkpoint[EMA_KEY].items()
                if k.startswith("module.")
            }
            if averaged:
                logger.info(
                    f"{getattr(self, '_loading', 'checkpoint')}: the averaged weights (its "
                    f"'{EMA_KEY}' entry, train.ema)"
                )
                checkpoint["model"] = averaged
        own = self.model.state_dict()
        ckpt = checkpoint["model"]
        _move_backbone(ckpt, self._backbone_prefix())
        skipped = [
            k
            for k, v in ckpt.items()
            if k in own and _shape(v) != tuple(own[k].shape) and _CLASS_SPECIFIC.search(k)
        ]
        for k in skipped:
            ckpt.pop(k)
        if skipped:
            logger.info(
                f"Fine-tuning: skipped {len(skipped)} class-specific parameters whose shapes "
                f"differ from this model (another number of classes): {', '.join(skipped)}"
            )
        incompatible = super()._load_model(checkpoint)

        prefix = self._backbone_prefix()
        if prefix is None:
            return incompatible
        backbone = [k for k in own if k.startswith(prefix)]
        missing = [k for k in backbone if k in set(incompatible.missing_keys)]
        wrong = [k for k, *_ in incompatible.incorrect_shapes if k.startswith(prefix)]
        unexpected = [k for k in incompatible.unexpected_keys if k.startswith(prefix)]
        summary = (
            f"PVT-v2 backbone from {getattr(self, '_loading', 'checkpoint')}: "
            f"{len(backbone) - len(missing)} matched, {len(missing) - len(wrong)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} shape mismatches"
        )
        logger.info(summary)
        if missing:
            name = next(m.name for m in self.model.modules() if isinstance(m, PVTv2Backbone))
            raise ValueError(
                f"{summary}. Every backbone parameter must be loaded, e.g. {missing[0]} is "
                f"{'of another shape' if wrong else 'missing'}. The checkpoint was made for "
                f"another architecture or variant than this model ({name}): point the config at "
                "a checkpoint of the same backbone, or at PVT-v2 ImageNet weights."
            )
        return incompatible
