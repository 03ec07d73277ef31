"""Test images made with Pillow: every accepted format, and the awkward cases intake must handle."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

ORIENTATION = 0x0112


def photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A noisy RGB picture with a left/right asymmetry, so rotations and flips change its pixels."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    array[:, : width // 3, 0] = 255
    return Image.fromarray(array, "RGB")


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def exif_rotated_jpeg(upright: Image.Image) -> bytes:
    """JPEG whose stored pixels are rotated, with EXIF orientation 6 saying how to turn them upright."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 = rotate 270 (90 clockwise) to view
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def png_16bit() -> bytes:
    array = (np.linspace(0, 65535, 64 * 48, dtype=np.uint16)).reshape(48, 64)
    return encode(Image.fromarray(array), "PNG")  # uint16 -> mode I;16


def cmyk_jpeg() -> bytes:
    return encode(photo().convert("CMYK"), "JPEG", quality=95)


def rgba_png() -> bytes:
    image = photo().convert("RGBA")
    image.putalpha(128)
    return encode(image, "PNG")


def animated_gif() -> bytes:
    frames = [photo(seed=i).convert("P") for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


def png_bomb(side: int = 20000) -> bytes:
    """A tiny file that declares side x side pixels (one colour compresses to almost nothing)."""
    return encode(Image.new("L", (side, side), 0), "PNG", optimize=False)


def truncated_jpeg() -> bytes:
    data = encode(photo(640, 480), "JPEG", quality=95)
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    """A PNG whose header is intact but whose compressed pixel data is overwritten."""
    data = encode(photo(), "PNG")
    return data[:120] + b"\x00" * 400 + data[520:]
