"""Bytes -> upright 8-bit RGB image, shared by the gateway's intake, the pose handler and training.

Pillow + numpy only, so the gateway can use it without importing torch.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image, ImageOps

# Pillow's own decompression-bomb guard stays on for the whole process (whatever else in it opens images). Every
# reader here (the gateway's intake, the handler, training, a user's data checks) also gives `decode` a
# `max_pixels`, checked from the header before any pixel is decoded; a header past Pillow's hard limit (twice
# `Image.MAX_IMAGE_PIXELS`) is refused by Pillow first, and reported here in the same words.
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: honours EXIF orientation, flattens alpha onto white, rescales 16/32-bit and float
    images, converts CMYK, palette and grayscale."""
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            array = array / 257.0  # 0..65535 -> 0..255
        else:
            low, high = float(array.min()), float(array.max())
            array = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")
        mode = "L"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if mode != "RGB" else image


class TooManyPixels(ValueError):
    """The header declares more pixels than the reader's limit (the message names both)."""


def open_header(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """The image with only its header read. Raises `TooManyPixels` above `max_pixels` (or Pillow's own limit),
    and PIL/OSError errors for data that is no image Pillow reads."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        found = _BOMB_PIXELS.search(str(exc))
        size = f"{found.group(1)} pixels" if found else f"over {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels"
        limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
        raise TooManyPixels(f"{size}; the limit is {limit} pixels") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise TooManyPixels(f"{width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels")
    return image


def decode(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Bytes -> upright RGB image. Raises ValueError above `max_pixels` (checked from the header, before any
    pixel is decoded), and PIL/OSError errors for corrupt or unsupported data."""
    with open_header(data, max_pixels) as image:
        image.seek(0)  # animated GIF/WebP: first frame
        image.load()
        return to_rgb(image)
