"""Target images: 8- or 16-bit RGB in display orientation, as a viewer shows them.

16-bit PNG and TIFF keep their 16 bits: OpenCV and tifffile read them, because PIL would drop a
48-bit PNG to 8 bits. Those two readers ignore the EXIF Orientation, so it is read separately
and applied with the engine's own `exif_orient_hwc`. Everything else goes through PIL, whose
`exif_transpose` does both at once.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.pipeline.orientation import exif_orient_hwc

RGB_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})
_ORIENTATION_TAG = 274


def load_rgb(path: Path) -> tuple[np.ndarray, int]:
    """An RGB target in display orientation → (H, W, 3) float32 in [0, 1] and its bit depth."""
    suffix = path.suffix.lower()
    image: np.ndarray | None = None
    orientation = 1
    if suffix in (".tif", ".tiff"):
        image, orientation = _read_tiff(path)
    elif suffix == ".png":
        image, orientation = _read_png(path)
    if image is None:  # not a PNG OpenCV could read, nor a TIFF
        return _read_with_pil(path)
    if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
        raise Raw2RgbError(f"{path.name} holds {image.dtype} samples of shape {image.shape}",
                           "save the target as 8- or 16-bit sRGB")
    image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]
    bits = 16 if image.dtype == np.uint16 else 8
    return exif_orient_hwc(image, orientation).astype(np.float32) / (65535.0 if bits == 16 else 255.0), bits


def _read_tiff(path: Path) -> tuple[np.ndarray, int]:
    """The first page's samples (channels last) and its Orientation tag, from one open file."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            image = tif.asarray(key=0)
            orientation = _tiff_orientation(tif)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise Raw2RgbError(f"cannot read {path.name} ({exc})", "save the target as an 8- or 16-bit RGB TIFF") from None
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[-1] not in (3, 4):
        image = np.moveaxis(image, 0, -1)  # planar configuration
    return image, orientation


def _tiff_orientation(tif) -> int:
    try:
        tag = tif.pages[0].tags.get(_ORIENTATION_TAG)
        return int(tag.value) if tag is not None else 1
    except Exception:  # a damaged tag = no orientation; the pixels were readable
        return 1


def _read_png(path: Path) -> tuple[np.ndarray | None, int]:
    """OpenCV's samples (RGB order, alpha dropped) and the EXIF Orientation; None if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None, 1
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    return image, _png_orientation(path)


def _png_orientation(path: Path) -> int:
    """The Orientation in a PNG's eXIf chunk, read by PIL from the headers."""
    from PIL import PngImagePlugin

    try:
        data = path.read_bytes()
        # Without an eXIf chunk PIL would decode every pixel looking for one after the image
        # data; no such bytes anywhere means no chunk. A chance match inside the compressed
        # pixels only costs that decode.
        if b"eXIf" not in data:
            return 1
        # The plugin class, not Image.open: its decompression-bomb check would warn about, or
        # refuse, a large target whose pixels OpenCV has already read.
        with PngImagePlugin.PngImageFile(io.BytesIO(data)) as image:
            return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a damaged header = no orientation; the pixels were readable
        return 1


def _read_with_pil(path: Path) -> tuple[np.ndarray, int]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise Raw2RgbError(f"cannot read {path.name} ({exc})", "use PNG, JPEG or TIFF") from None
    return image.astype(np.float32) / 255.0, 8
