"""Image preprocessing shared by the pose handler and training: resize, center crop, normalise.

Pillow + numpy + torch only (torchvision does not work beside this torch build). Training and serving call the
same `to_model_input`, so the model sees at serve time exactly the pixels it was trained on.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# EfficientNet-Lite's own input statistics: (x - 127) / 128 on 0-255 RGB.
MEAN = 127.0
STD = 128.0


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
