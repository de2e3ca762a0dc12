"""
The ``eval`` task: pycocotools' COCOeval against faster-coco-eval's on a synthetic set.
"""

import contextlib
import io
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .measure import time_alternating


def _random_polygon(rng: np.random.Generator, cx, cy, rx, ry, vertices: int = 12) -> List[float]:
    angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    radius = rng.uniform(0.6, 1.0, vertices)
    pts = np.stack([cx + rx * radius * np.cos(angles), cy + ry * radius * np.sin(angles)], axis=1)
    return [float(v) for v in pts.ravel()]


def synthetic_coco_eval_data(
    num_images: int = 500,
    instances: int = 20,
    image_size: Sequence[int] = (480, 640),
    num_classes: int = 10,
    false_positives: int = 5,
    seed: int = 0,
) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """
    A COCO ground truth (polygons) with ``instances`` objects per image and detectron2-style
    results: each object found with probability 0.9 with a jittered polygon (RLE mask, box from the
    mask), a score and usually the right class, plus ``false_positives`` random detections per
    image. Object sizes span COCO's small, medium and large ranges.

    Returns:
        (ground-truth dict, list of results with "bbox" and "segmentation").
    """
    import pycocotools.mask as mask_util

    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in image_size)
    images, anns, results = [], [], []

    def rle_of(poly):
        return mask_util.merge(mask_util.frPyObjects([poly], h, w))

    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": h, "width": w})
        for _ in range(instances):
            size = np.exp(rng.uniform(np.log(6), np.log(min(h, w) / 4)))
            rx, ry = np.minimum(size * rng.uniform(0.6, 1.4, 2), (w / 2 - 1, h / 2 - 1))
            cx, cy = rng.uniform(rx, w - rx), rng.uniform(ry, h - ry)
            poly = _random_polygon(rng, cx, cy, rx, ry)
            rle = rle_of(poly)
            area = float(mask_util.area(rle))
            if area < 1:
                continue
            category = int(rng.integers(1, num_classes + 1))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": [poly],
                    "area": area,
                    "bbox": [float(v) for v in mask_util.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
            if rng.random() < 0.9:
                jitter = (
                    rng.normal(0, 0.08 * size, len(poly))
                    + np.repeat(rng.normal(0, 0.1 * size, (1, 2)), len(poly) // 2, axis=0).ravel()
                )
                pred_cat = (
                    category if rng.random() < 0.85 else int(rng.integers(1, num_classes + 1))
                )
                results.append(
                    _result(image_id, pred_cat, rle_of(list(poly + jitter)), rng.uniform(0.3, 1.0))
                )
        for _ in range(false_positives):
            size = rng.uniform(8, min(h, w) / 4)
            cx, cy = rng.uniform(size, w - size), rng.uniform(size, h - size)
            rle = rle_of(_random_polygon(rng, cx, cy, size, size))
            results.append(
                _result(image_id, int(rng.integers(1, num_classes + 1)), rle, rng.uniform(0, 0.6))
            )
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, num_classes + 1)]
    gt = {"images": images, "annotations": anns, "categories": categories}
    return gt, results


def _result(image_id: int, category: int, rle, score: float) -> Dict[str, Any]:
    import pycocotools.mask as mask_util

    return {
        "image_id": image_id,
        "category_id": category,
        "bbox": [float(v) for v in mask_util.toBbox(rle)],
        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
        "score": float(score),
    }


def run_eval_benchmark(
    num_images: int = 500,
    instances: int = 20,
    iters: int = 1,
    warmup: int = 0,
    seed: int = 0,
) -> Dict[str, Any]:
    """
    Time pycocotools' COCOeval against faster-coco-eval's (as :class:`pvt_fpn_d2.evaluation.
    FasterCOCOeval`: built from the pycocotools ``COCO`` objects detectron2 makes) on a synthetic
    set, bbox and segm, each timing being construction + evaluate + accumulate + summarize
    (loading the results, common to both, is not timed). The two run alternately ``iters`` times.

    Returns:
        a dict with per-type times, the speed-up (pycocotools / faster) and the largest
        difference between their 12 summary stats.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from pvt_fpn_d2.evaluation import FasterCOCOeval

    t0 = time.perf_counter()
    gt_dict, results = synthetic_coco_eval_data(num_images, instances, seed=seed)
    generate_s = time.perf_counter() - t0
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        dts = {}
        for iou_type in ("bbox", "segm"):
            res = [dict(r) for r in results]
            if iou_type == "segm":  # as detectron2: the area of a mask result is the mask's
                for r in res:
                    r.pop("bbox")
            dts[iou_type] = coco_gt.loadRes(res)

    def evaluate(cls, iou_type):
        with contextlib.redirect_stdout(io.StringIO()):
            e = cls(coco_gt, dts[iou_type], iou_type)
            e.evaluate()
            e.accumulate()
            e.summarize()
        return [float(v) for v in e.stats[:12]]

    out: Dict[str, Any] = {
        "num_images": num_images,
        "instances_per_image": instances,
        "gt_instances": len(gt_dict["annotations"]),
        "detections": len(results),
        "generate_s": generate_s,
        "per_type": {},
    }
    total = {"pycocotools": [0.0] * iters, "faster_coco_eval": [0.0] * iters}
    for iou_type in ("bbox", "segm"):
        impls = {"pycocotools": COCOeval, "faster_coco_eval": FasterCOCOeval}
        stats: Dict[str, List[float]] = {}
        fns = []
        for name, cls in impls.items():

            def fn(name=name, cls=cls):
                stats[name] = evaluate(cls, iou_type)

            fns.append(fn)
        times = time_alternating(fns, iters, warmup, lambda: None)
        for name, t in zip(impls, times):
            for i, v in enumerate(t):
                total[name][i] += v
        diff = max(abs(a - b) for a, b in zip(stats["pycocotools"], stats["faster_coco_eval"]))
        py, fast = float(np.median(times[0])), float(np.median(times[1]))
        out["per_type"][iou_type] = {
            "pycocotools_s": py,
            "faster_coco_eval_s": fast,
            "speedup": py / fast,
            "max_abs_stat_diff": diff,
            "pycocotools_stats": stats["pycocotools"],
            "faster_coco_eval_stats": stats["faster_coco_eval"],
        }
    py, fast = float(np.median(total["pycocotools"])), float(np.median(total["faster_coco_eval"]))
    out.update(
        pycocotools_s=py,
        faster_coco_eval_s=fast,
        speedup=py / fast,
        max_abs_stat_diff=max(v["max_abs_stat_diff"] for v in out["per_type"].values()),
    )
    return out
