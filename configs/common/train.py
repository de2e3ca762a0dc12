# detectron2's training defaults (common/train.py) plus what train_net.py adds.
import torch

from detectron2.model_zoo import get_config

train = get_config("common/train.py").train

# ImageNet weights of the backbone variant, fetched by timm from the Hugging Face hub.
# Offline: download the file elsewhere and pass train.init_checkpoint=/path/to/it (official
# .pth, timm .safetensors/.pth or HF PvtV2 files all work).
train.init_checkpoint = "timm://${model.backbone.bottom_up.name}"

# The one place that chooses the device: the GPU when there is one, else the CPU.
train.device = "cuda" if torch.cuda.is_available() else "cpu"
# Mixed precision: precision "fp16" (with loss scaling) or "bf16"
train.amp = dict(enabled=False, precision="fp16")
# Clip the global L2 norm of the gradients (unscaled first under AMP); off in the PVT recipes
train.clip_grad = dict(enabled=False, max_norm=1.0)
# An exponential moving average of the weights (pvt_fpn_d2/engine/ema.py): evaluated during
# training, saved in checkpoints (key "ema") and resumed, and the final model. decay: its value
# after the warm-up (warmup=True: 1 - (1 + n) ** -power after n updates, at most decay)
train.ema = dict(enabled=False, decay=0.999, warmup=True, power=0.75)
# Keep model_best.pth by this metric of the periodic evaluation ("" to disable)
train.best_checkpoint = dict(metric="segm/AP", mode="max")
# Random seed of this run (-1: a new one each run; the seed is logged)
train.seed = -1
train.cudnn_benchmark = False
