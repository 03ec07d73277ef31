"""Gateway image intake and the shared preprocessing, on images generated with Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gateway.errors import APIError
from gateway.images import ImageLimits, prepare_image
from handlers.image_decode import decode
from handlers.image_ops import to_model_input
from tests import imagegen

PILLOW_DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # Pillow's own: a 1 GiB RGB image

LIMITS = ImageLimits(max_bytes=5_000_000, max_pixels=40_000_000, forward_shorter_side=512)


def forwarded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(prepare_image(data, "image", LIMITS)))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_every_accepted_format_becomes_rgb(fmt: str) -> None:
    image = imagegen.photo()
    if fmt == "GIF":
        image = image.convert("P")
    assert decode(prepare_image(imagegen.encode(image, fmt), "image", LIMITS)).mode == "RGB"


def test_small_upright_rgb_jpeg_is_forwarded_untouched() -> None:
    data = imagegen.encode(imagegen.photo(), "JPEG", quality=90)
    assert prepare_image(data, "image", LIMITS) == data


def test_exif_orientation_is_applied() -> None:
    upright = imagegen.photo(320, 240)
    out = forwarded(imagegen.exif_rotated_jpeg(upright))
    assert out.size == (320, 240)
    # left third of the upright picture is saturated red: it must be on the left after intake
    left = np.asarray(out)[:, :40, 0].mean()
    right = np.asarray(out)[:, -40:, 0].mean()
    assert left > 200
    assert left - right > 50


def test_cmyk_16bit_and_alpha_are_converted() -> None:
    assert forwarded(imagegen.cmyk_jpeg()).mode == "RGB"
    sixteen = np.asarray(forwarded(imagegen.png_16bit()))
    assert sixteen.shape == (48, 64, 3)
    assert sixteen.min() == 0
    assert sixteen.max() == 255  # full 16-bit range maps onto full 8-bit range, not clipped to white
    flattened = np.asarray(forwarded(imagegen.rgba_png()))
    assert flattened.shape[-1] == 3


def test_gif_uses_the_first_frame() -> None:
    first = decode(imagegen.encode(imagegen.photo(seed=0).convert("P"), "GIF"))
    assert np.array_equal(
        np.asarray(decode(prepare_image(imagegen.animated_gif(), "image", LIMITS))), np.asarray(first)
    )


def test_large_images_are_downscaled_before_forwarding() -> None:
    big = imagegen.encode(imagegen.photo(3000, 2000), "JPEG", quality=80)
    assert min(forwarded(big).size) == 512


@pytest.mark.parametrize(
    ("data", "status", "code", "fragment"),
    [
        (b"", 422, "empty_image", "empty"),
        (imagegen.corrupt_png(), 422, "corrupt_image", "truncated or corrupt"),
        (b"just some text, named photo.jpg", 415, "unsupported_media_type", "JPEG, PNG, WebP, BMP or GIF"),
        (imagegen.encode(imagegen.photo(), "TIFF"), 415, "unsupported_media_type", "TIFF images are not accepted"),
        (imagegen.truncated_jpeg(), 422, "corrupt_image", "truncated"),
        (b"\xff" * 5_000_001, 413, "image_too_large", "the limit is 5000000 bytes"),
    ],
)
def test_bad_uploads_get_clear_errors(data: bytes, status: int, code: str, fragment: str) -> None:
    with pytest.raises(APIError) as info:
        prepare_image(data, "images[2]", LIMITS)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.message.startswith("images[2]: ")
    assert fragment in info.value.message


def test_pixel_bomb_is_refused_from_its_header() -> None:
    with pytest.raises(APIError) as info:
        prepare_image(imagegen.png_bomb(), "image", LIMITS)
    assert info.value.status == 413
    assert "400000000 pixels; the limit is 40000000" in info.value.message


def test_model_input_is_a_normalised_center_crop() -> None:
    tensor = to_model_input(imagegen.photo(1, 1), 224, 256)
    assert tuple(tensor.shape) == (3, 224, 224)
    white = to_model_input(Image.new("RGB", (300, 200), (255, 255, 255)), 224, 256)
    assert float(white.max()) == pytest.approx((255 - 127) / 128)


def test_pillows_own_bomb_guard_stays_on_in_every_process_that_decodes() -> None:
    """Importing the decoder (the gateway, the handler and training all do) leaves Pillow's limit as Pillow set it,
    so any other image opened in the process is guarded too; a header past it is refused in the decoder's words."""
    assert Image.MAX_IMAGE_PIXELS == PILLOW_DEFAULT_MAX_PIXELS
    with pytest.raises(ValueError, match=r"^400000000 pixels; the limit is 40000000 pixels$"):
        decode(imagegen.png_bomb(), max_pixels=40_000_000)
    with pytest.raises(ValueError, match=r"12000x12000 = 144000000 pixels; the limit is 40000000 pixels"):
        decode(imagegen.png_bomb(12000), max_pixels=40_000_000)


def test_serving_decoder_refuses_huge_images_from_the_header() -> None:
    with pytest.raises(ValueError, match="400000000 pixels; the limit is 40000000 pixels"):
        decode(imagegen.png_bomb(), max_pixels=40_000_000)
