# COCO 2017 instance segmentation as in the official PVT-v2 1x recipe: RGB input, resize to
# 1333x800 keeping the ratio, horizontal flip 0.5 (detectron2 pads to 32 in the model).
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

dataloader = get_config("common/data/coco.py").dataloader

dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.image_format = "RGB"  # the test mapper follows by interpolation
