"""Which part of a photo carried its label: occlusion of a grid of cells, through the served model.

Each cell of a `cells` x `cells` grid over the model's input (the centre crop it classifies) is painted the
normalisation's mean grey in turn, and the photo is classified again with everything serving does (the
mirror-image average included). A cell's weight is how much the predicted label's probability drops without
it: positive cells support the label, negative ones argue against it. Cost, measured on 2 cores with the ONNX
EfficientNet-Lite0: about 11 ms per forward pass, so a 7 x 7 grid with the mirror image is ~100 passes, about
1.1 s; a 14 x 14 grid would be four times that, which is why the grid is coarse.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from handlers.image_ops import MEAN, STD

CELLS = 7
# occluded photos per forward pass (with the mirror images, twice as many rows)
CHUNK = 8


def occluded(pixels: torch.Tensor, cells: int) -> torch.Tensor:
    """`cells**2` copies of one normalised image (3, H, W), each with one cell set to 0 (the mean grey),
    row-major."""
    _, height, width = pixels.shape
    copies = pixels.repeat(cells * cells, 1, 1, 1)
    for index in range(cells * cells):
        row, col = divmod(index, cells)
        top, bottom = row * height // cells, (row + 1) * height // cells
        left, right = col * width // cells, (col + 1) * width // cells
        copies[index, :, top:bottom, left:right] = 0.0
    return copies


def overlay_png(pixels: torch.Tensor, grid: torch.Tensor) -> str:
    """The classified crop with the grid painted over it, base64 PNG: red where a cell supports the label,
    blue where it argues against, opacity by weight relative to the largest."""
    image = (pixels.permute(1, 2, 0).numpy() * STD + MEAN).clip(0, 255)
    scale = float(grid.abs().max()) or 1.0
    heat = torch.nn.functional.interpolate(grid[None, None] / scale, size=image.shape[:2], mode="nearest")[0, 0]
    strength = heat.numpy()[..., None]
    red = np.array([230.0, 40.0, 40.0])
    blue = np.array([40.0, 90.0, 230.0])
    alpha = np.abs(strength) * 0.6
    colour = np.where(strength >= 0, red, blue)
    painted = (image * (1 - alpha) + colour * alpha).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(painted).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")
