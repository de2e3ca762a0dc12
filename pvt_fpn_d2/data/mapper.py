"""A DatasetMapper that survives the images and annotations of real datasets."""

import copy
import logging
from typing import Dict, List, Optional

import numpy as np
import torch

from detectron2.data import DatasetMapper as D2DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from .exports import box_polygon
from .images import BadImageError, read_image, read_label_map

__all__ = ["DatasetMapper"]

logger = logging.getLogger(__name__)


class DatasetMapper(D2DatasetMapper):
    """
    detectron2's ``DatasetMapper`` (same arguments) for instance and semantic segmentation,
    hardened for real data:

    * images are read with :func:`pvt_fpn_d2.data.images.read_image`: EXIF orientation,
      grayscale / RGBA / palette / 16-bit converted; semantic labels with
      :func:`~pvt_fpn_d2.data.images.read_label_map`: the stored class indices (palette
      indices, 16-bit values), as detectron2's ``SemSegEvaluator`` reads them;
    * an image that cannot be read or does not match its json size is skipped in training
      with a warning naming the file (detectron2 then loads another image); in evaluation it
      is an error naming the file;
    * annotations whose RLE mask does not match the image are dropped with a warning; images
      with (non-crowd) RLE masks use bitmasks, the others ``instance_mask_format``;
    * in a mask model, an annotation with a box and no mask is kept: ``gt_has_mask`` is False
      for it (its ``gt_masks`` entry is a box-shaped placeholder), so it trains the box and RPN
      heads and :class:`pvt_fpn_d2.modeling.mask_head.PartialMaskRCNNConvUpsampleHead` gives it no mask loss;
    * images without annotations give empty ``instances`` (the heads handle them).

    Keypoints and precomputed proposals are not supported (use detectron2's mapper).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.use_keypoint or self.proposal_topk is not None:
            raise ValueError(
                "pvt_fpn_d2.data.DatasetMapper supports boxes, masks and semantic labels; use "
                "detectron2.data.DatasetMapper for keypoints or precomputed proposals."
            )
        self._warned = set()

    def _warn_once(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    def __call__(self, dataset_dict: Dict) -> Optional[Dict]:
        try:
            return self._map(copy.deepcopy(dataset_dict))
        except BadImageError as e:
            if not self.is_train:
                raise
            self._warn_once(dataset_dict["file_name"], f"Skipping an image in training: {e}")
            return None  # detectron2's MapDataset then maps another image

    def _map(self, dataset_dict: Dict) -> Dict:
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        h, w = image.shape[:2]
        expected = (dataset_dict.get("height", h), dataset_dict.get("width", w))
        if (h, w) != expected:
            raise BadImageError(
                f"{dataset_dict['file_name']}: the annotation says {expected[0]}x{expected[1]} "
                f"(HxW) but the image is {h}x{w}; fix the json (python -m "
                "pvt_fpn_d2.check_dataset lists all such images)"
            )
        # what detectron2's check_image_size fills in: the aspect-ratio grouping needs it
        dataset_dict.setdefault("height", h)
        dataset_dict.setdefault("width", w)
        sem_seg = None
        if "sem_seg_file_name" in dataset_dict:
            sem_seg = read_label_map(dataset_dict.pop("sem_seg_file_name"))
            if sem_seg.dtype != np.uint8:
                # detectron2's resize takes uint8 or float segmentations (exact below 2**24)
                sem_seg = sem_seg.astype(np.float32)

        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        image, sem_seg = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg.astype("long"))

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            annos = self._valid_annotations(dataset_dict.pop("annotations"), h, w, dataset_dict)
            self._to_instances(dataset_dict, annos, transforms, image_shape)
        return dataset_dict

    def _valid_annotations(self, annos: List[Dict], h: int, w: int, dataset_dict) -> List[Dict]:
        keep = []
        for obj in annos:
            if obj.get("iscrowd", 0):
                continue
            if not self.use_instance_mask:
                obj.pop("segmentation", None)
            segm = obj.get("segmentation")
            if self.use_instance_mask:
                # a box without a mask trains the box and RPN heads; the mask head skips it
                # (pvt_fpn_d2.modeling.mask_head), so its placeholder mask is never learned
                obj["has_mask"] = bool(segm)
                if not segm:
                    xywh = BoxMode.convert(obj["bbox"], obj["bbox_mode"], BoxMode.XYWH_ABS)
                    obj["segmentation"] = box_polygon(xywh)
            if isinstance(segm, dict) and list(segm.get("size", [])) != [h, w]:
                self._warn_once(
                    (dataset_dict["file_name"], obj.get("id"), str(segm.get("size"))),
                    f"{dataset_dict['file_name']}: dropping an annotation whose RLE mask has "
                    f"size {segm.get('size')}, not the image's {[h, w]}",
                )
                continue
            obj.pop("keypoints", None)
            keep.append(obj)
        return keep

    def _to_instances(self, dataset_dict, annos, transforms, image_shape) -> None:
        has_mask = [obj.pop("has_mask", True) for obj in annos]
        annos = [
            utils.transform_instance_annotations(obj, transforms, image_shape) for obj in annos
        ]
        mask_format = self.instance_mask_format
        # transformed RLE masks are arrays, which only the bitmask format takes
        if any(isinstance(a.get("segmentation"), np.ndarray) for a in annos):
            mask_format = "bitmask"
        instances = utils.annotations_to_instances(annos, image_shape, mask_format=mask_format)
        if self.use_instance_mask:
            instances.gt_has_mask = torch.tensor(has_mask, dtype=torch.bool)
        if self.recompute_boxes and instances.has("gt_masks"):
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
