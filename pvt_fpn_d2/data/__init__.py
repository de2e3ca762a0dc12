"""
The data path: COCO-format registration of any annotation tool's export (read once, checked),
semantic-segmentation folders, the one image reader and the label-map reader, the hardened
``DatasetMapper`` of training, evaluation and prediction, and the synthetic dataset.
"""

from .coco_json import coco_json_class_names, coco_json_num_classes, register_coco_json
from .exports import PreparedCoco, prepare_coco
from .synthetic import (
    SYNTHETIC_CLASSES,
    generate_synthetic_classification,
    generate_synthetic_coco,
    generate_synthetic_depth,
)
from .classification import load_image_folder, register_image_folder
from .depth import DepthDatasetMapper, read_depth, register_depth_folder
from .mapper import DatasetMapper
from .images import BadImageError, read_image, read_label_map
from .validation import DatasetError, check_coco_dataset
from .sem_seg import register_sem_seg_folder

__all__ = [
    "coco_json_class_names",
    "coco_json_num_classes",
    "register_coco_json",
    "PreparedCoco",
    "prepare_coco",
    "SYNTHETIC_CLASSES",
    "generate_synthetic_coco",
    "generate_synthetic_classification",
    "generate_synthetic_depth",
    "load_image_folder",
    "register_image_folder",
    "DepthDatasetMapper",
    "read_depth",
    "register_depth_folder",
    "DatasetMapper",
    "BadImageError",
    "read_image",
    "read_label_map",
    "DatasetError",
    "check_coco_dataset",
    "register_sem_seg_folder",
]
