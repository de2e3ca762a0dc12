"""Datasets: COCO-format registration and the synthetic dataset."""

from .coco_json import coco_json_class_names, coco_json_num_classes, register_coco_json
from .exports import PreparedCoco, prepare_coco
from .synthetic import SYNTHETIC_CLASSES, generate_synthetic_coco
from .mapper import DatasetMapper
from .images import BadImageError, read_image
from .validation import DatasetError, check_coco_dataset
from .sem_seg import register_sem_seg_folder
