# detectron2's training defaults (common/train.py) plus what train_net.py adds.
from detectron2.model_zoo import get_config

train = get_config("common/train.py").train

# ImageNet weights of the backbone variant, fetched by timm from the Hugging Face hub.
# Offline: download the file elsewhere and pass train.init_checkpoint=/path/to/it (official
# .pth, timm .safetensors/.pth or HF PvtV2 files all work).
train.init_checkpoint = "timm://${model.backbone.bottom_up.name}"
