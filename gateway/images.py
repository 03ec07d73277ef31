"""Safe intake of uploaded images, before anything reaches TorchServe.

Every check reads as little as it can: the byte size first, then the format and dimensions from the header
(Pillow opens lazily), and only then the pixels. So a 20000x20000 "PNG bomb" is refused from its header, a
text file named `.jpg` from its bytes (never from its name or Content-Type), and a truncated file from its
decoder, each with a status code and a message naming the field. Accepted images are normalised (EXIF
orientation applied, converted to 8-bit RGB) and downscaled so TorchServe's request limit is never the error
a user sees; small images are forwarded losslessly so the served pixels equal those seen in training.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from contract.wire import IMAGE_FORMATS, IMAGE_FORMATS_TEXT
from gateway.errors import APIError
from handlers.image_decode import TooManyPixels, open_header, to_rgb

_ORIENTATION = 0x0112  # EXIF tag
# TorchServe refuses requests over 6.5 MB (max_request_size); stay well under it.
FORWARD_MAX_BYTES = 6_000_000


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    forward_shorter_side: int


def _open(data: bytes, field: str, limits: ImageLimits) -> Image.Image:
    if not data:
        raise APIError(422, "empty_image", f"{field}: the upload is empty")
    if len(data) > limits.max_bytes:
        raise APIError(413, "image_too_large", f"{field}: {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    try:
        image = open_header(data, limits.max_pixels)
    except TooManyPixels as exc:
        raise APIError(413, "image_too_large", f"{field}: {exc}") from None
    except (UnidentifiedImageError, OSError):
        raise APIError(
            415, "unsupported_media_type", f"{field}: not a supported image; send {IMAGE_FORMATS_TEXT}"
        ) from None
    if image.format not in IMAGE_FORMATS:
        raise APIError(
            415, "unsupported_media_type", f"{field}: {image.format} images are not accepted; send {IMAGE_FORMATS_TEXT}"
        )
    return image


def prepare_image(data: bytes, field: str, limits: ImageLimits) -> bytes:
    """Validate one upload and return the bytes to forward (the original, or a normalised PNG)."""
    image = _open(data, field, limits)
    try:
        image.seek(0)  # animated GIF/WebP: first frame
        image.load()
        rgb = to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise APIError(422, "corrupt_image", f"{field}: the image data is truncated or corrupt ({exc})") from None
    shorter = min(rgb.size)
    upright = image.getexif().get(_ORIENTATION, 1) == 1
    if shorter <= limits.forward_shorter_side and upright and image.mode == "RGB" and image.format in ("JPEG", "PNG"):
        return data  # already upright 8-bit RGB and small: forward untouched
    if shorter > limits.forward_shorter_side:
        scale = limits.forward_shorter_side / shorter
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    rgb.save(out, format="PNG", compress_level=1)
    if out.tell() > FORWARD_MAX_BYTES:  # only extreme aspect ratios get here: lossy is better than refusing
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=90)
    if out.tell() > FORWARD_MAX_BYTES:
        raise APIError(413, "image_too_large", f"{field}: {rgb.width}x{rgb.height} is too elongated to classify")
    return out.getvalue()
