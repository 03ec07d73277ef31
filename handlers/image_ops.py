"""Image preprocessing shared by the pose handler and training: resize, center crop, normalise, and the
random views training adds as augmentation.

Pillow + numpy + torch only (torchvision does not work beside this torch build). Training and serving call the
same `to_model_input`, so the model sees at serve time exactly the pixels it was trained on.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image, ImageEnhance

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


def random_crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """A box covering 30-100% of the image at an aspect ratio between 3:4 and 4:3 (the whole image if ten
    draws do not fit)."""
    for _ in range(10):
        area = width * height * rng.uniform(0.3, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        crop_w, crop_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
            return left, top, left + crop_w, top + crop_h
    return 0, 0, width, height


def random_view(image: Image.Image, size: int, rng: random.Random) -> torch.Tensor:
    """One augmented training view: random crop, maybe mirrored, brightness/contrast/saturation within 20%."""
    view = image.crop(random_crop_box(*image.size, rng)).resize((size, size), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhancer(view).enhance(rng.uniform(0.8, 1.2))
    return normalize(view)
