"""Request and response models. Text request models are built per task from the catalog, so each route's
OpenAPI schema shows that task's real limits (characters per text, texts per request)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    model_validator,
)

from modelops.catalog import TaskSpec


class ModelRef(BaseModel):
    name: str
    version: str


class Prediction(BaseModel):
    task: str
    label: str
    score: float = Field(description="probability of `label`")
    scores: dict[str, float] = Field(description="probability of every label")
    model: ModelRef
    latency_ms: float = Field(description="model server round trip for this item, as seen by the gateway")


class BatchPrediction(BaseModel):
    results: list[Prediction] = Field(description="one result per input text, in input order")


class OneOrManyRequest(BaseModel):
    """A request carrying one item or a list of items: exactly one of the two fields must be sent."""

    model_config = ConfigDict(extra="forbid")
    one_field: ClassVar[str]
    many_field: ClassVar[str]
    one_of_message: ClassVar[str]

    @classmethod
    def one_of_schema(cls) -> list[dict[str, Any]]:
        """The exactly-one rule in JSON Schema terms: one alternative per field, non-null and required."""
        return [
            {"required": [cls.one_field], "properties": {cls.one_field: {"type": "string"}}},
            {"required": [cls.many_field], "properties": {cls.many_field: {"type": "array"}}},
        ]

    @model_validator(mode="after")
    def _exactly_one(self) -> OneOrManyRequest:
        given = [name for name in (self.one_field, self.many_field) if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(self.one_of_message)
        return self


class TextRequestBase(OneOrManyRequest):
    one_field: ClassVar[str] = "text"
    many_field: ClassVar[str] = "texts"
    one_of_message: ClassVar[str] = "send exactly one of 'text' (a string) or 'texts' (a list of strings)"

    def items(self) -> list[str]:
        texts: list[str] | None = self.texts
        return texts if texts is not None else [self.text]


# C0 control characters other than tab, newline and carriage return (NUL among them): never part of a real
# review or tweet, and a classic way to smuggle text past filters or break logs downstream.
_CONTROL_CLASS = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f"
_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")
# The same two rules as a JSON Schema pattern, so the published schema says what is accepted (schema-driven
# clients and fuzzers generate valid texts from it); `_plain_text` still does the checking, with clearer messages.
PLAIN_TEXT_PATTERN = f"^[^{_CONTROL_CLASS}]*[^\\s{_CONTROL_CLASS}][^{_CONTROL_CLASS}]*$"


def _plain_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain non-whitespace characters")
    control = _CONTROL.search(value)
    if control:
        raise ValueError(
            f"contains the control character U+{ord(control.group()):04X} at position {control.start()}; "
            "only tab, newline and carriage return are allowed"
        )
    return value


def text_request_model(spec: TaskSpec, max_batch: int) -> type[TextRequestBase]:
    """A request model for one text task: `{"text": str}` or `{"texts": [str, ...]}` with its limits."""
    text_type = Annotated[
        str,
        StringConstraints(min_length=1, max_length=spec.max_chars),
        AfterValidator(_plain_text),
        Field(json_schema_extra={"pattern": PLAIN_TEXT_PATTERN}),
    ]
    fields: dict[str, Any] = {
        "text": (text_type | None, Field(default=None, description=f"one text, at most {spec.max_chars} chars")),
        "texts": (
            list[text_type] | None,
            Field(default=None, min_length=1, max_length=max_batch, description=f"up to {max_batch} texts"),
        ),
    }
    model = create_model(f"{spec.task.title()}Request", __base__=TextRequestBase, **fields)
    model.model_config["json_schema_extra"] = {
        "examples": [{"text": "example input"}, {"texts": ["one", "two"]}],
        "oneOf": TextRequestBase.one_of_schema(),
    }
    return model


class LabelScore(BaseModel):
    label: str
    score: float


class ImagePrediction(BaseModel):
    task: str
    label: str
    score: float = Field(description="probability of `label`")
    top_k: list[LabelScore] = Field(description="the most probable labels, best first")
    model: ModelRef
    latency_ms: float = Field(description="model server round trip for this image, as seen by the gateway")


class ImageBatchPrediction(BaseModel):
    results: list[ImagePrediction] = Field(description="one result per image, in request order")


class ImageRequestBase(OneOrManyRequest):
    """JSON form of an image request, for clients that cannot send multipart."""

    one_field: ClassVar[str] = "image_base64"
    many_field: ClassVar[str] = "images_base64"
    one_of_message: ClassVar[str] = "send exactly one of 'image_base64' (a string) or 'images_base64' (a list)"


def image_request_model(max_images: int) -> type[ImageRequestBase]:
    fields: dict[str, Any] = {
        "image_base64": (str | None, Field(default=None, min_length=1, description="one base64-encoded image")),
        "images_base64": (
            list[Annotated[str, StringConstraints(min_length=1)]] | None,
            Field(default=None, min_length=1, max_length=max_images, description=f"up to {max_images} images"),
        ),
    }
    model = create_model("ImageJsonRequest", __base__=ImageRequestBase, **fields)
    model.model_config["json_schema_extra"] = {"oneOf": ImageRequestBase.one_of_schema()}
    return model


class UpstreamReadiness(BaseModel):
    ready: bool = Field(description="every catalog model has a READY worker on this TorchServe")
    reason: str | None = Field(default=None, description="why this TorchServe could not be asked")


class Readiness(BaseModel):
    status: str = Field(description="`ready` or `not_ready`")
    models: dict[str, bool] = Field(description="per model: has a READY worker on at least one upstream")
    upstreams: dict[str, UpstreamReadiness] = Field(description="per configured TorchServe, by name")
    reason: str | None = Field(default=None, description="why not ready")


class ErrorDetail(BaseModel):
    field: str = Field(description="dotted path of the offending field (`body` for the document itself)")
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable reason, e.g. `validation_error`, `model_not_ready`")
    message: str = Field(description="for people: names the field and the limit where there is one")
    details: list[ErrorDetail] | None = Field(default=None, description="one entry per validation problem")
    limit_bytes: int | None = Field(default=None, description="the body limit, on 413 `payload_too_large`")


class ErrorResponse(BaseModel):
    error: ErrorBody


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ErrorResponse}


# Answers any route may give before it runs (the guard and the request limits), documented on every route.
GUARD_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("API keys are configured and the request has none, or an invalid one"),
    403: _error("the API key is not granted this task"),
    429: _error("the API key's rate limit is exceeded (Retry-After set)"),
    431: _error("too many request headers, or too large"),
}
PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    **GUARD_ERRORS,
    413: _error("request body or image too large"),
    415: _error("wrong Content-Type, or not a supported image format"),
    422: _error("invalid input; the message names the field and the limit"),
    502: _error("TorchServe answered something unexpected"),
    503: _error("TorchServe down or the model not ready (Retry-After set)"),
    504: _error("TorchServe did not answer in time"),
}
