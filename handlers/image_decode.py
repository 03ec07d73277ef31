"""Bytes -> upright 8-bit RGB image, shared by the gateway's intake, the pose handler and training.

Pillow + numpy only, so the gateway can use it without importing torch.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

# Pillow's own bomb guard would refuse huge headers before ours can name the dimensions and the configured
# limit: every reader (the gateway's intake, the handler, training, a user's data checks) gives `decode` a
# `max_pixels`, checked from the header before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None


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


def decode(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Bytes -> upright RGB image. Raises ValueError above `max_pixels` (checked from the header, before any
    pixel is decoded), and PIL/OSError errors for corrupt or unsupported data."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ValueError(f"{width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels")
        image.seek(0)  # animated GIF/WebP: first frame
        image.load()
        return to_rgb(image)
