"""/v1/pose over real HTTP: gateway intake -> TorchServe -> image handler, with every input case of the issue."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image, ImageOps

from tests import imagegen
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def upload(client: httpx.Client, data: bytes, name: str = "photo.jpg", **params: object) -> httpx.Response:
    return client.post("/v1/pose", files={"image": (name, data, "application/octet-stream")}, params=params)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return error["message"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_each_format_is_classified(client: httpx.Client, live_stack: Stack, fmt: str) -> None:
    image = imagegen.photo()
    data = imagegen.encode(image.convert("P") if fmt == "GIF" else image, fmt)
    response = upload(client, data, f"photo.{fmt.lower()}")
    assert response.status_code == 200, response.text
    body = response.json()
    spec = live_stack.catalog["pose"]
    assert body["task"] == "pose"
    assert body["label"] in spec.labels
    assert len(body["top_k"]) == 3
    scores = [item["score"] for item in body["top_k"]]
    assert scores == sorted(scores, reverse=True)
    assert body["top_k"][0] == {"label": body["label"], "score": body["score"]}
    assert body["model"] == {"name": "pose", "version": live_stack.published["pose"]["version"], "recipe": "full"}


def test_top_k_parameter(client: httpx.Client) -> None:
    data = imagegen.encode(imagegen.photo(), "PNG")
    assert len(upload(client, data, top_k=15).json()["top_k"]) == 15
    assert len(upload(client, data, top_k=1).json()["top_k"]) == 1
    assert "top_k" in _error(upload(client, data, top_k=16), 422, "validation_error")
    _error(upload(client, data, top_k=0), 422, "validation_error")


def test_json_base64_matches_multipart(client: httpx.Client) -> None:
    data = imagegen.encode(imagegen.photo(seed=3), "PNG")
    via_form = upload(client, data).json()
    via_json = client.post("/v1/pose", json={"image_base64": base64.b64encode(data).decode()}).json()
    assert via_json["top_k"] == via_form["top_k"]


def test_several_images_answer_in_order(client: httpx.Client) -> None:
    images = [imagegen.encode(imagegen.photo(seed=s), "PNG") for s in (1, 2, 3)]
    files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    results = client.post("/v1/pose", files=files).json()["results"]
    singles = [upload(client, data).json() for data in images]
    assert [r["top_k"] for r in results] == [s["top_k"] for s in singles]
    encoded = [base64.b64encode(data).decode() for data in images]
    as_json = client.post("/v1/pose", json={"images_base64": encoded}).json()["results"]
    assert [r["top_k"] for r in as_json] == [s["top_k"] for s in singles]


def test_exif_orientation_is_honoured(client: httpx.Client) -> None:
    rotated = imagegen.exif_rotated_jpeg(imagegen.photo(320, 240, seed=5))
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(rotated)))
    reference = upload(client, imagegen.encode(upright, "PNG")).json()
    assert upload(client, rotated).json()["top_k"] == reference["top_k"]


@pytest.mark.parametrize(
    "data",
    [
        imagegen.cmyk_jpeg(),
        imagegen.png_16bit(),
        imagegen.rgba_png(),
        imagegen.encode(imagegen.photo().convert("L"), "JPEG"),
        imagegen.encode(imagegen.photo(1, 1), "PNG"),
    ],
    ids=["cmyk", "16-bit", "alpha", "grayscale", "1x1"],
)
def test_awkward_images_are_converted_and_classified(client: httpx.Client, data: bytes) -> None:
    assert upload(client, data).status_code == 200


@pytest.mark.parametrize(
    ("data", "status", "code", "fragment"),
    [
        (imagegen.png_bomb(), 413, "image_too_large", "400000000 pixels; the limit is"),
        (imagegen.truncated_jpeg(), 422, "corrupt_image", "truncated"),
        (b"Dear diary, this is not a photo.", 415, "unsupported_media_type", "JPEG, PNG, WebP, BMP or GIF"),
        (b"", 422, "empty_image", "empty"),
        (b"\xff\xd8" + b"\x00" * 10_500_000, 413, "image_too_large", "the limit is 10485760 bytes"),
    ],
    ids=["pixel-bomb", "truncated-jpeg", "text-named-jpg", "empty", "over-10-MiB"],
)
def test_bad_uploads_get_clear_errors(client: httpx.Client, data: bytes, status: int, code: str, fragment: str) -> None:
    message = _error(upload(client, data, "photo.jpg"), status, code)
    assert message.startswith("image: ")
    assert fragment in message


def test_one_bad_image_among_good_ones_names_it(client: httpx.Client) -> None:
    good = imagegen.encode(imagegen.photo(), "JPEG")
    files = [
        ("images", ("a.jpg", good, "image/jpeg")),
        ("images", ("b.jpg", b"not an image at all", "image/jpeg")),
        ("images", ("c.jpg", good, "image/jpeg")),
    ]
    message = _error(client.post("/v1/pose", files=files), 415, "unsupported_media_type")
    assert message.startswith("images[1]: ")


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"files": {"picture": ("a.jpg", b"x", "image/jpeg")}}, 422, "unknown form field(s) picture"),
        ({"files": {"image": (None, "a string, not a file")}}, 422, "must be a file upload"),
        ({"content": b"raw bytes", "headers": {"content-type": "text/plain"}}, 415, "multipart/form-data"),
        ({"json": {"image_base64": "%%%not base64%%%"}}, 422, "not valid base64"),
        ({"json": {}}, 422, "exactly one of"),
        ({"json": {"images_base64": ["aGk="] * 9}}, 422, "at most 8 items"),
    ],
    ids=["unknown-field", "text-field", "wrong-content-type", "bad-base64", "no-image", "too-many"],
)
def test_malformed_requests(client: httpx.Client, kwargs: dict, status: int, fragment: str) -> None:
    response = client.post("/v1/pose", **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]
