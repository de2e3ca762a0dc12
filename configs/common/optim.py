import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

# Official PVT-v2 1x detection: AdamW, lr 2e-4 (Mask R-CNN; 1e-4 for RetinaNet), weight
# decay 1e-4 applied to norm layers too.
AdamW = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(
        # params.model is set to the model object before instantiating the optimizer
        weight_decay_norm="${..weight_decay}",
    ),
    lr=2e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
)
