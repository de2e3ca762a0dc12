"""
Models and inputs, built inside the child processes: configs with random weights, detectron2's
ResNet with calibrated frozen batch norms, synthetic training and inference batches.
"""

import math
from typing import Any, Dict, List, Sequence


from .settings import ModelSpec, R50_FPN


def load_model_config(spec: ModelSpec, task: str):
    """The LazyConfig of ``spec`` with the benchmark's settings and the spec's overrides."""
    from detectron2.config import LazyConfig
    from detectron2.model_zoo import get_config

    from pvt_fpn_d2.config import apply_overrides
    from pvt_fpn_d2.model_zoo import resolve_config_file

    if spec.config == R50_FPN:
        cfg = get_config("common/models/mask_rcnn_fpn.py")
    else:
        try:
            path = resolve_config_file(spec.config)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{e} (or use {R50_FPN!r} for detectron2's Mask R-CNN R50-FPN)"
            ) from None
        cfg = LazyConfig.load(path)
    if "model" not in cfg:
        raise ValueError(f"{spec.config} has no `model` to benchmark.")
    bottom_up = _select(cfg, "model.backbone.bottom_up")
    if _is_pvt_config(bottom_up) and bottom_up.get("weights", ""):
        bottom_up.weights = ""  # random weights: never download or read checkpoints
    if task == "inference":
        # Random weights score every class at ~1/num_classes, under the 0.05 threshold: no
        # detection would reach the mask head. Keep them all (up to the per-image limit), as a
        # trained model does on a busy image.
        for key in ("model.roi_heads.box_predictor.test_score_thresh", "model.test_score_thresh"):
            if _select(cfg, key) is not None:
                cfg = apply_overrides(cfg, [f"{key}=0.0"])
    if spec.act_checkpoint and _is_pvt_config(bottom_up):  # other backbones: as they are
        bottom_up.use_act_checkpoint = True
    return apply_overrides(cfg, list(spec.opts))


def _select(cfg, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=None)


def _target_name(node) -> str:
    target = node.get("_target_") if node is not None else None
    return getattr(target, "__name__", str(target))


def _is_pvt_config(node) -> bool:
    from pvt_fpn_d2.modeling.backbone import PVTv2Backbone

    if node is None:
        return False
    target = node.get("_target_")
    if isinstance(target, str):
        return target.rsplit(".", 1)[-1] == PVTv2Backbone.__name__
    return target is PVTv2Backbone


def build_model(spec: ModelSpec, task: str, device: str, seed: int):
    """The module a task measures: the bottom-up network (``backbone``) or the whole model."""
    import torch

    from detectron2.config import instantiate

    cfg = load_model_config(spec, task)
    torch.manual_seed(seed)
    if task == "backbone":
        node = _select(cfg, "model.backbone.bottom_up")
        if node is None:
            raise ValueError(f"{spec.label}: the backbone task needs model.backbone.bottom_up.")
        model = instantiate(node)
    else:
        model = instantiate(cfg.model)
    # the statistics see what the measured module sees: a N(0, 1) tensor for the bottom-up
    # network alone, a normalised random uint8 image inside the model
    g = torch.Generator().manual_seed(seed)
    if task == "backbone":
        calibrate_frozen_batchnorm(model, torch.randn(1, 3, 256, 256, generator=g))
    elif hasattr(model, "backbone") and hasattr(model, "pixel_mean"):
        image = torch.randint(0, 256, (1, 3, 256, 256), generator=g).float()
        x = (image - model.pixel_mean.cpu()) / model.pixel_std.cpu()
        calibrate_frozen_batchnorm(getattr(model.backbone, "bottom_up", model.backbone), x)
    model = model.to(device)
    model.train(task == "train")
    return model


def calibrate_frozen_batchnorm(module, x) -> int:
    """
    Set the statistics of every ``FrozenBatchNorm2d`` in ``module`` from one forward pass on
    ``x`` (a random input), each layer normalising its input (a data-dependent init).

    detectron2's ResNet freezes its batch norms: with random weights and the default statistics
    (mean 0, variance 1) activations grow stage after stage, the RPN's box deltas explode and a
    randomly initialised R50-FPN keeps ~4 proposals and no detection, which would make its heads
    look free. Pretrained statistics normalise; this gives random weights the same property.

    Returns:
        the number of calibrated layers.
    """
    import torch

    from detectron2.layers import FrozenBatchNorm2d

    layers = [m for m in module.modules() if isinstance(m, FrozenBatchNorm2d)]
    if not layers:
        return 0

    def hook(m, args):
        x = args[0].detach().float()
        m.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        m.running_var.copy_((x.var(dim=(0, 2, 3)) - m.eps).clamp_min(0.0))
        m.weight.fill_(1.0)
        m.bias.zero_()

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(x)  # still on the CPU: build_model moves it afterwards
    finally:
        for h in handles:
            h.remove()
        module.train(training)
    return len(layers)


def attention_modules(module) -> List[Any]:
    """timm's PVT-v2 ``Attention`` modules inside ``module``."""
    from timm.models.pvt_v2 import Attention

    return [m for m in module.modules() if isinstance(m, Attention)]


class SavedActivations:
    """
    Bytes of the activations autograd keeps for the backward pass inside one module's forward
    (``torch.autograd.graph.saved_tensors_hooks`` entered and left by forward hooks): distinct
    storages, the module's own parameters excluded. Activation checkpointing shows here as what
    it is, tensors not kept, whatever the process's peak memory does.
    """

    def __init__(self, module):
        import torch

        self.bytes = 0
        self._seen = set()
        self._params = {p.untyped_storage().data_ptr() for p in module.parameters()}
        self._context = None
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._handles = [
            module.register_forward_pre_hook(self._enter),
            module.register_forward_hook(self._exit),
        ]

    def _pack(self, t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._seen and ptr not in self._params:
            self._seen.add(ptr)
            self.bytes += storage.nbytes()
        return t

    def _enter(self, module, args):
        self._hooks.__enter__()

    def _exit(self, module, args, output):
        self._hooks.__exit__(None, None, None)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _num_classes(model) -> int:
    for path in ("roi_heads.num_classes", "num_classes", "sem_seg_head.num_classes"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, int):
            return obj
    return 80


def make_train_batch(
    model, image_size: Sequence[int], batch_size: int, instances: int, seed: int
) -> List[Dict[str, Any]]:
    """
    Training inputs: random uint8 images with ``instances`` random boxes per image, each with a
    random class and a polygon mask (an octagon inscribed in its box); a random ``sem_seg`` map for
    semantic segmentation models.
    """
    import torch

    from detectron2.structures import Boxes, Instances, PolygonMasks

    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    num_classes = _num_classes(model)
    batch = []
    for _ in range(batch_size):
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        sizes = torch.rand(instances, 2, generator=g) * 0.4 + 0.1  # 10%..50% of each side
        bw, bh = sizes[:, 0] * w, sizes[:, 1] * h
        x0 = torch.rand(instances, generator=g) * (w - bw)
        y0 = torch.rand(instances, generator=g) * (h - bh)
        boxes = torch.stack([x0, y0, x0 + bw, y0 + bh], dim=1)
        angles = torch.arange(8) * (2 * math.pi / 8) + math.pi / 8
        polygons = []
        for x_0, y_0, x_1, y_1 in boxes.tolist():
            cx, cy, rx, ry = (x_0 + x_1) / 2, (y_0 + y_1) / 2, (x_1 - x_0) / 2, (y_1 - y_0) / 2
            pts = torch.stack([cx + rx * angles.cos(), cy + ry * angles.sin()], dim=1)
            polygons.append([pts.flatten().tolist()])
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (instances,), generator=g)
        inst.gt_masks = PolygonMasks(polygons)
        item = {"image": image, "instances": inst, "height": h, "width": w}
        if hasattr(model, "sem_seg_head"):
            item["sem_seg"] = torch.randint(0, num_classes, (h, w), generator=g)
        batch.append(item)
    return batch


def make_inference_batch(image_size: Sequence[int], batch_size: int, seed: int):
    """Inference inputs: random uint8 images (the model pads them itself)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    return [
        {
            "image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
            "height": h,
            "width": w,
        }
        for _ in range(batch_size)
    ]
