"""Reading the images of one request: multipart form fields or base64 JSON, each tagged with its field name
so every error can say which image it is about."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from gateway.bodies import is_json, parse_json
from gateway.errors import APIError
from gateway.schemas.requests import ImageRequestBase

FORM_FIELDS = ("image", "images")


@dataclass(frozen=True)
class Upload:
    field: str
    data: bytes


async def _from_form(request: Request, max_images: int) -> tuple[list[Upload], bool]:
    try:
        form = await request.form(max_files=max_images + 1, max_fields=max_images + 8)
    except HTTPException as exc:
        raise APIError(422, "invalid_multipart", f"the multipart body could not be read: {exc.detail}") from None
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise APIError(422, "validation_error", f"unknown form field(s) {', '.join(unknown)}; send 'image' or 'images'")
    single, many = form.getlist("image"), form.getlist("images")
    if not single and not many:
        raise APIError(422, "validation_error", "image: send one 'image' file field (or several 'images' fields)")
    if single and many:  # as the OpenAPI schema says (`gateway.routers.predict`): one form or the other
        raise APIError(422, "validation_error", "image, images: send one 'image' field or 'images' fields, not both")
    if len(single) + len(many) > max_images:
        raise APIError(422, "validation_error", f"images: {len(single) + len(many)} images; the limit is {max_images}")
    uploads = []
    for key, items in (("image", single), ("images", many)):
        for index, item in enumerate(items):
            name = key if key == "image" and len(items) == 1 else f"{key}[{index}]"
            if not isinstance(item, UploadFile):
                raise APIError(422, "validation_error", f"{name}: must be a file upload, not a text field")
            uploads.append(Upload(name, await item.read()))
    return uploads, len(single) == 1 and not many


async def _from_json(request: Request, model: type[ImageRequestBase]) -> tuple[list[Upload], bool]:
    body = await parse_json(request, model)
    if body.image_base64 is not None:  # type: ignore[attr-defined]
        encoded = [("image_base64", body.image_base64)]  # type: ignore[attr-defined]
    else:
        encoded = [(f"images_base64[{i}]", v) for i, v in enumerate(body.images_base64)]  # type: ignore[attr-defined]
    uploads = []
    for name, value in encoded:
        try:
            uploads.append(Upload(name, base64.b64decode(value, validate=True)))
        except (binascii.Error, ValueError):
            raise APIError(422, "validation_error", f"{name}: not valid base64") from None
    return uploads, len(encoded) == 1 and body.image_base64 is not None  # type: ignore[attr-defined]


async def read_uploads(
    request: Request, json_model: type[ImageRequestBase], max_images: int
) -> tuple[list[Upload], bool]:
    """The request's images and whether it asked for a single one (answered without `results`)."""
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return await _from_form(request, max_images)
    if is_json(request):
        return await _from_json(request, json_model)
    raise APIError(
        415,
        "unsupported_media_type",
        "send multipart/form-data with an 'image' file field, or application/json with 'image_base64'",
    )
