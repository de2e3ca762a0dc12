"""
The one image reader of training, evaluation and prediction: EXIF orientation applied,
grayscale / palette / RGBA / CMYK converted, 16-bit scaled to 8 bits, unreadable files named;
and the reader of semantic label maps, which keeps the stored class indices.
"""

import numpy as np
from PIL import Image, ImageOps

__all__ = ["BadImageError", "IMAGE_EXTENSIONS", "read_image", "read_label_map", "image_size"]

# the image files the folder datasets and the predictor look for
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class BadImageError(OSError):
    """An image file cannot be read, or does not match its annotation."""


def _to_uint8(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer / float images scaled to 8 bits (PIL would clip them)."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float32) / 257.0  # 65535 -> 255
    elif img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        arr = arr / 257.0 if arr.max() > 255 else arr
    else:
        return img
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), mode="L")


def _open(file_name: str, decode: bool) -> Image.Image:
    """The opened image; the caller closes it (``with _open(...) as img``)."""
    try:
        img = Image.open(file_name)
    except FileNotFoundError:
        raise BadImageError(
            f"{file_name}: file not found. Fix file_name or add the image."
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for unreadable data
        raise BadImageError(
            f"{file_name}: cannot read the image ({e}). Re-export it or remove it from the json."
        ) from None
    if decode:
        try:
            img.load()  # raises on truncated or corrupt data
        except (OSError, SyntaxError, ValueError) as e:
            img.close()
            raise BadImageError(
                f"{file_name}: cannot read the image ({e}). Re-export it or remove it from the "
                "json."
            ) from None
    return img


def read_image(file_name: str, format: str = "RGB") -> np.ndarray:
    """
    Read an image robustly: EXIF orientation applied, grayscale / palette / RGBA / CMYK
    converted, 16-bit scaled to 8 bits; corrupt or truncated files raise :class:`BadImageError`.

    Returns:
        (H, W, 3) uint8 array in ``format`` ("RGB" or "BGR"), or (H, W, 1) for "L".
    """
    with _open(file_name, decode=True) as opened:
        img = _to_uint8(ImageOps.exif_transpose(opened))
        if format == "L":
            return np.asarray(img.convert("L"))[:, :, None]
        arr = np.asarray(img.convert("RGB"))
    return arr[:, :, ::-1] if format == "BGR" else arr


# one value per pixel: grey (8, 16 or 32 bits), palette indices, black and white
_LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "1")


def read_label_map(file_name: str) -> np.ndarray:
    """
    Read a semantic segmentation label map as the class indices it stores, as detectron2's
    ``SemSegEvaluator`` reads it: palette PNGs give their palette indices (not the luminance of
    their colours), 16-bit PNGs their values (not scaled to 8 bits). EXIF orientation is applied
    as :func:`read_image` does for the image.

    Returns:
        (H, W) array: uint8 for 8-bit and palette files, the stored integer type otherwise.

    Raises:
        BadImageError: the file cannot be read, or holds colours (RGB) instead of indices.
    """
    with _open(file_name, decode=True) as opened:
        img = ImageOps.exif_transpose(opened)
        if img.mode not in _LABEL_MODES:
            raise BadImageError(
                f"{file_name}: a label map holds one class index per pixel (a grey or palette "
                f"PNG), not {img.mode} colours. Convert each colour to its class index."
            )
        arr = np.array(img)  # a copy: writable, as the transforms need
    return arr.astype(np.uint8) if arr.dtype == bool else arr


def image_size(file_name: str, decode: bool = False) -> tuple:
    """(height, width) as the model sees it (after EXIF orientation); reads only the header
    unless ``decode``."""
    with _open(file_name, decode) as img:
        w, h = img.size
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:  # malformed EXIF: PIL reads the pixels anyway, without rotation
            orientation = 1
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
