"""Image decoding and preprocessing shared by the pose handler, the gateway's intake and training.

Pillow + numpy + torch only (torchvision does not work beside this torch build). Training and serving call the
same `to_model_input`, so the model sees at serve time exactly the pixels it was trained on.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps

# EfficientNet-Lite's own input statistics: (x - 127) / 128 on 0-255 RGB.
MEAN = 127.0
STD = 128.0


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


def decode(data: bytes) -> Image.Image:
    """Bytes -> upright RGB image (raises PIL/OSError errors for corrupt or unsupported data)."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)  # animated GIF/WebP: first frame
        image.load()
        return to_rgb(image)


def resize_and_crop(image: Image.Image, size: int, resize_to: int) -> Image.Image:
    """Scale the shorter side to `resize_to`, then cut the central `size` x `size` square."""
    width, height = image.size
    scale = resize_to / min(width, height)
    resized = image.resize(
        (max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BICUBIC
    )
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def normalize(image: Image.Image) -> torch.Tensor:
    """RGB image -> float tensor (3, H, W) with the backbone's normalisation."""
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy((array - MEAN) / STD).permute(2, 0, 1).contiguous()


def to_model_input(image: Image.Image, size: int = 224, resize_to: int = 256) -> torch.Tensor:
    return normalize(resize_and_crop(image, size, resize_to))
