"""The training mapper the configs build (pvt_fpn_d2.data.DatasetMapper) moves the boxes and
masks with the pixels: flips, the 1x configs' resize and the 3x config's crop, each checked
against the same geometry computed by hand with numpy on the original image and coordinates
(#35)."""

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import BitMasks, BoxMode, PolygonMasks

from pvt_fpn_d2.data import DatasetMapper

from .conftest import REPO

H, W = 128, 96  # the image, HxW
# x0, y0, x1, y1 polygons with integer corners; the class is the index
TRIANGLE = [0.0, 0.0, 10.0, 0.0, 0.0, 10.0]  # box [0, 0, 10, 10] in the top-left corner
L_SHAPE = [30.0, 40.0, 70.0, 40.0, 70.0, 55.0, 45.0, 55.0, 45.0, 100.0, 30.0, 100.0]
BOX_ONLY = [60.0, 105.0, 25.0, 15.0]  # XYWH, a rectangle drawn without a mask
COLOURS = {0: (250, 20, 200), 1: (20, 250, 20)}  # the painted objects
CONFIG_1X = "configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py"
CONFIG_3X = "configs/COCO/cascade_mask_rcnn_pvt_v2_b2_fpn_3x.py"


def _raster(polygon, h=H, w=W):
    """pycocotools' raster of one polygon, bool (h, w)."""
    rle = mask_util.frPyObjects([list(map(float, polygon))], h, w)
    return mask_util.decode(mask_util.merge(rle)).astype(bool)


def _erode(mask, r=1):
    for _ in range(r):
        p = np.pad(mask, 1)
        mask = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask


def _dilate(mask, r=1):
    return ~_erode(~mask, r)


def _dataset(tmp_path):
    """One image (R = 2x, G = y, B = 100 under two painted objects) and two dataset dicts of
    it: the triangle and the L as polygons beside a box-only object, and the same with the L
    as a compressed RLE (the mapper then uses bitmasks)."""
    yy, xx = np.mgrid[:H, :W]
    image = np.stack([2 * xx, yy, np.full_like(xx, 100)], axis=-1).astype(np.uint8)
    masks = {0: _raster(TRIANGLE), 1: _raster(L_SHAPE)}
    for c, m in masks.items():
        image[m] = COLOURS[c]
    path = tmp_path / "image.png"  # lossless
    Image.fromarray(image).save(path)

    rle = mask_util.encode(np.asfortranarray(masks[1].astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()  # as json gives it
    dicts = {}
    for kind, l_segm in (("polygons", [L_SHAPE]), ("rle", rle)):
        annos = [
            dict(bbox=[0.0, 0.0, 10.0, 10.0], bbox_mode=BoxMode.XYXY_ABS, segmentation=[TRIANGLE]),
            dict(bbox=[30.0, 40.0, 40.0, 60.0], bbox_mode=BoxMode.XYWH_ABS, segmentation=l_segm),
            dict(bbox=BOX_ONLY, bbox_mode=BoxMode.XYWH_ABS, segmentation=[]),
        ]
        for c, a in enumerate(annos):
            a.update(category_id=c, iscrowd=0)
        dicts[kind] = dict(file_name=str(path), height=H, width=W, image_id=0, annotations=annos)
    return image, masks, dicts


def _mapper(config, augmentations):
    """The config's training mapper with these augmentations (the config's, some of their
    parameters changed)."""
    mapper_cfg = LazyConfig.load(str(REPO / config)).dataloader.train.mapper
    mapper_cfg.augmentations = augmentations
    mapper = instantiate(mapper_cfg)
    assert type(mapper) is DatasetMapper and mapper.is_train and mapper.use_instance_mask
    return mapper


def _augmentations(config):
    return LazyConfig.load(str(REPO / config)).dataloader.train.mapper.augmentations


def _by_class(instances):
    classes = instances.gt_classes.tolist()
    assert len(set(classes)) == len(classes)
    return {c: i for i, c in enumerate(classes)}


# (name, the 1x config's augmentations changed to, point map (x, y) -> (x', y'), pixel map)
_FLIP_H = (lambda x, y: (W - x, y), lambda a: a[:, ::-1])
_FLIP_V = (lambda x, y: (x, H - y), lambda a: a[::-1])
# short edge 96 -> 192: exactly 2x (256x192), then the horizontal flip
_RESIZE_FLIP = (
    lambda x, y: (2 * W - 2 * x, 2 * y),
    lambda a: np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)[:, ::-1],
)


def _flip_augs(horizontal):
    flip = _augmentations(CONFIG_1X)[-1]
    flip.update(prob=1.0, horizontal=horizontal, vertical=not horizontal)
    return [flip]


def _resize_flip_augs():
    resize, flip = _augmentations(CONFIG_1X)
    resize.update(short_edge_length=192, max_size=1333)
    flip.prob = 1.0
    return [resize, flip]


CASES = {
    "hflip": (lambda: _flip_augs(True), *_FLIP_H),
    "vflip": (lambda: _flip_augs(False), *_FLIP_V),
    "resize_flip": (_resize_flip_augs, *_RESIZE_FLIP),
}


def _mapped_polygon(polygon, points):
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    return np.stack(points(xy[:, 0], xy[:, 1]), axis=1).reshape(-1)


def _box_of(polygon):
    xy = np.asarray(polygon).reshape(-1, 2)
    return np.concatenate([xy.min(0), xy.max(0)])


@pytest.mark.parametrize("kind", ["polygons", "rle"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_flips_and_resize_move_boxes_masks_and_pixels_together(tmp_path, case, kind):
    make_augs, points, pixels = CASES[case]
    image, masks, dicts = _dataset(tmp_path)
    mapper = _mapper(CONFIG_1X, make_augs())
    np.random.seed(0)
    out = mapper(dicts[kind])
    got = out["image"].permute(1, 2, 0).numpy()
    expected_image = pixels(image)
    oh, ow = expected_image.shape[:2]
    assert got.shape == expected_image.shape
    inst = out["instances"]
    assert inst.image_size == (oh, ow)
    idx = _by_class(inst)
    assert sorted(idx) == [0, 1, 2]  # nothing dropped
    assert [bool(inst.gt_has_mask[idx[c]]) for c in (0, 1, 2)] == [True, True, False]

    # the pixels: exact for flips; resized (bilinear) only close to the nearest-neighbour 2x
    objects = {c: pixels(m) for c, m in masks.items()}
    if case == "resize_flip":
        near_an_edge = np.zeros((oh, ow), bool)
        for m in objects.values():
            near_an_edge |= ~_erode(~m, 2) & ~_erode(m, 2)
        diff = np.abs(got.astype(int) - expected_image.astype(int)).max(-1)
        assert diff[~near_an_edge].max() <= 2, diff[~near_an_edge].max()
        for c, m in objects.items():
            assert (got[_erode(m, 2)] == COLOURS[c]).all()
    else:
        np.testing.assert_array_equal(got, expected_image)

    # the boxes: each corner mapped (a flip swaps x0 and x1, or y0 and y1)
    boxes = {0: [0, 0, 10, 10], 1: [30, 40, 70, 100], 2: [60, 105, 85, 120]}
    for c, (x0, y0, x1, y1) in boxes.items():
        xs, ys = points(np.array([x0, x1], float), np.array([y0, y1], float))
        expected = [min(xs), min(ys), max(xs), max(ys)]
        np.testing.assert_allclose(inst.gt_boxes.tensor[idx[c]].numpy(), expected, atol=1e-4)
    if case == "hflip":  # the example, in words
        np.testing.assert_allclose(inst.gt_boxes.tensor[idx[0]].numpy(), [86, 0, 96, 10])

    # the masks
    x, y, bw, bh = BOX_ONLY
    placeholder = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
    polygons = {0: TRIANGLE, 1: L_SHAPE, 2: placeholder}
    if kind == "polygons":
        assert isinstance(inst.gt_masks, PolygonMasks)
        for c, polygon in polygons.items():
            (p,) = inst.gt_masks.polygons[idx[c]]
            np.testing.assert_allclose(p, _mapped_polygon(polygon, points), atol=1e-4)
        # the raster of the moved polygon covers the object's moved pixels (in the resized
        # image, 3 px from its edges: the original raster's steps doubled, and blended)
        for c in (0, 1):
            (p,) = inst.gt_masks.polygons[idx[c]]
            inside = _erode(_raster(p, oh, ow), 3 if case == "resize_flip" else 1)
            assert inside.sum() > 10 and (got[inside] == COLOURS[c]).all()
    else:
        assert isinstance(inst.gt_masks, BitMasks)
        bitmasks = inst.gt_masks.tensor.numpy()
        # the RLE object: the same pixels moved (nearest-neighbour resize of a mask)
        np.testing.assert_array_equal(bitmasks[idx[1]], objects[1])
        if case != "resize_flip":
            assert (got[bitmasks[idx[1]]] == COLOURS[1]).all()
        for c in (0, 2):  # rasterised by detectron2 after the move: the moved raster, +- edges
            expected = _raster(_mapped_polygon(polygons[c], points), oh, ow)
            inter = (bitmasks[idx[c]] & expected).sum()
            assert inter / (bitmasks[idx[c]] | expected).sum() > 0.8


def _clip(polygon, x0, y0, x1, y1):
    """Sutherland-Hodgman: ``polygon`` (flat x, y list) clipped to a rectangle, (N, 2)."""
    pts = [tuple(p) for p in np.asarray(polygon, float).reshape(-1, 2)]
    for axis, bound, low in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        inside = (lambda p: p[axis] >= bound) if low else (lambda p: p[axis] <= bound)

        def cut(p, q):
            t = (bound - p[axis]) / (q[axis] - p[axis])
            return tuple(a + t * (b - a) for a, b in zip(p, q))

        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cut(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cut(prev, cur))
        pts = out
        if not pts:
            break
    return np.array(pts, float).reshape(-1, 2)


def _area(xy):
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_the_3x_configs_crop_moves_boxes_masks_and_pixels_together(tmp_path):
    """The 3x config's RandomCrop (absolute_range) then its flip, with its recompute_boxes (the
    boxes of the cropped masks): where the crop fell is read from the pixels (the image is a
    ramp, each window unique); the polygons clipped by hand to it, shifted and mirrored."""
    image, masks, dicts = _dataset(tmp_path)
    augs = _augmentations(CONFIG_3X)
    crop, flip = augs[0].tfm_or_aug.augs[1], augs[-1]
    assert crop.crop_type == "absolute_range"
    crop.crop_size = (60, 90)
    flip.prob = 1.0
    mapper = _mapper(CONFIG_3X, [crop, flip])
    assert mapper.recompute_boxes
    x, y, bw, bh = BOX_ONLY
    polygons = {0: TRIANGLE, 1: L_SHAPE, 2: [x, y, x + bw, y, x + bw, y + bh, x, y + bh]}
    kept_triangle = []
    for seed in range(6):
        np.random.seed(seed)
        out = mapper(dicts["polygons"])
        got = out["image"].permute(1, 2, 0).numpy()
        ch, cw = got.shape[:2]
        unflipped = got[:, ::-1]
        windows = [(y0, x0) for y0 in range(H - ch + 1) for x0 in range(W - cw + 1)
                   if (image[y0 : y0 + ch, x0 : x0 + cw] == unflipped).all()]  # fmt: skip
        assert len(windows) == 1, (seed, windows)
        (y0, x0), inst = windows[0], out["instances"]
        idx = _by_class(inst)
        for c, polygon in polygons.items():
            clipped = _clip(polygon, x0, y0, x0 + cw, y0 + ch)
            if len(clipped) < 3 or _area(clipped) == 0:
                assert c not in idx, (seed, c)  # cropped away
                continue
            if c == 0:
                kept_triangle.append(seed)
            moved = np.stack([cw - (clipped[:, 0] - x0), clipped[:, 1] - y0], axis=1)
            box = np.concatenate([moved.min(0), moved.max(0)])
            assert c in idx, (seed, c)
            np.testing.assert_allclose(inst.gt_boxes.tensor[idx[c]].numpy(), box, atol=1e-4)
            ps = inst.gt_masks.polygons[idx[c]]
            assert sum(_area(p.reshape(-1, 2)) for p in ps) == pytest.approx(_area(moved))
            got_box = _box_of(np.concatenate(ps))
            np.testing.assert_allclose(got_box, box, atol=1e-4)
            if c < 2:
                raster = np.zeros((ch, cw), bool)
                for p in ps:
                    raster |= _raster(p, ch, cw)
                assert (got[_erode(raster)] == COLOURS[c]).all()
                # the object's pixels left in the window lie in the raster of the moved mask
                left = masks[c][y0 : y0 + ch, x0 : x0 + cw][:, ::-1]
                assert left.any() and not (left & ~_dilate(raster)).any()
    assert kept_triangle and len(kept_triangle) < 6  # both cases ran
