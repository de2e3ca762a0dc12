# COCO 2017 instance segmentation as in the official PVT-v2 1x recipe: RGB input, resize to
# 1333x800 keeping the ratio, horizontal flip 0.5 (detectron2 pads to 32 in the model).
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from pvt_fpn_d2.data import DatasetMapper
from pvt_fpn_d2.evaluation import COCOEvaluator
from pvt_fpn_d2.utils import default_num_workers

dataloader = get_config("common/data/coco.py").dataloader

dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.image_format = "RGB"  # the test mapper follows by interpolation
# detectron2's DatasetMapper, hardened for real data (unreadable images are skipped in
# training with a warning, 16-bit / grayscale / RGBA images converted, bad RLE masks dropped)
dataloader.train.mapper._target_ = DatasetMapper
dataloader.test.mapper._target_ = DatasetMapper
# detectron2's 4 worker processes, or as many as the CPUs this process may use (fewer on a
# small machine, where PyTorch warns about more workers than CPUs); a plain number once loaded
dataloader.train.num_workers = default_num_workers()
dataloader.test.num_workers = default_num_workers()

# detectron2's COCOEvaluator computing the metrics with faster-coco-eval (same AP as
# pycocotools, no compiled detectron2 needed)
dataloader.evaluator._target_ = COCOEvaluator
