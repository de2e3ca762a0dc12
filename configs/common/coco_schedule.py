from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

# detectron2's convention: 1x = 90k iterations x 16 images ~ 12 COCO epochs,
# so one epoch = 7500 iterations at 16 images per batch.
ITERS_PER_EPOCH_16 = 90000 // 12


def epoch_schedule(epochs, decay_epochs, batch_size=16, warmup_iters=500, warmup_factor=0.001):
    """
    The official PVT-v2 (mmdetection) schedule in iterations: step decay by 10x at the given
    epochs and a linear warmup of ``warmup_iters`` iterations from ``warmup_factor``.

    Returns:
        (max_iter, lr_multiplier config)
    """
    iters_per_epoch = ITERS_PER_EPOCH_16 * 16 // batch_size
    max_iter = epochs * iters_per_epoch
    lr_multiplier = L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0] + [0.1 ** (i + 1) for i in range(len(decay_epochs))],
            milestones=[e * iters_per_epoch for e in decay_epochs],
            num_updates=max_iter,
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )
    return max_iter, lr_multiplier


# 1x: 12 epochs, decay at epochs 8 and 11 (mmdetection step=[8, 11])
max_iter_1x, lr_multiplier_1x = epoch_schedule(12, [8, 11])
# 3x: 36 epochs, decay at epochs 27 and 33
max_iter_3x, lr_multiplier_3x = epoch_schedule(36, [27, 33])
