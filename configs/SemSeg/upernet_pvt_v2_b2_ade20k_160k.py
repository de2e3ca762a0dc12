# UPerNet with PVT-v2-b2 on ADE20K (150 classes), with the UPerNet recipe of the Swin and
# ConvNeXt ADE20K results (PVT-v2 publishes none for UPerNet). Source of each number:
# mmsegmentation v0.x configs/swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k_*.py and
# configs/_base_/schedules/schedule_160k.py: AdamW lr 6e-5, betas (0.9, 0.999), weight decay
# 0.01 with none on norm layers; 1500 iterations of linear warmup from 1e-6 x lr, then poly
# decay with power 1.0 to 0; 160k iterations of 16 images (8 GPUs x 2); 512x512 crops; the data
# pipeline of pvt_v2_b2_fpn_concat_ade20k_40k.py (mmsegmentation's ADE20K pipeline).
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import PolynomialDecayParamScheduler

from ..common.models.upernet_pvt_v2 import model
from .pvt_v2_b2_fpn_concat_ade20k_40k import dataloader, optimizer, train

model.backbone.name = "pvt_v2_b2"
# ImageNet weights of the variant (the ADE20K base names model.backbone.bottom_up)
train.init_checkpoint = "timm://${model.backbone.name}"

dataloader.train.total_batch_size = 16
train.max_iter = 160000
optimizer.lr = 6e-5
optimizer.weight_decay = 0.01
optimizer.params.weight_decay_norm = 0.0
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(PolynomialDecayParamScheduler)(base_value=1.0, power=1.0),
    warmup_length=1500 / 160000,
    warmup_method="linear",
    warmup_factor=1e-6,
)
# evaluate and checkpoint every 16000 iterations (mmsegmentation: 16000)
train.eval_period = 16000
train.checkpointer.period = 16000
train.output_dir = "output/upernet_pvt_v2_b2_ade20k"
