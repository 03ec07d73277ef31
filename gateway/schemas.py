"""Request and response models. Text request models are built per task from the catalog, so each route's
OpenAPI schema shows that task's real limits (characters per text, texts per request)."""

from __future__ import annotations

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


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain non-whitespace characters")
    return value


def text_request_model(spec: TaskSpec, max_batch: int) -> type[TextRequestBase]:
    """A request model for one text task: `{"text": str}` or `{"texts": [str, ...]}` with its limits."""
    text_type = Annotated[str, StringConstraints(min_length=1, max_length=spec.max_chars), AfterValidator(_not_blank)]
    fields: dict[str, Any] = {
        "text": (text_type | None, Field(default=None, description=f"one text, at most {spec.max_chars} chars")),
        "texts": (
            list[text_type] | None,
            Field(default=None, min_length=1, max_length=max_batch, description=f"up to {max_batch} texts"),
        ),
    }
    model = create_model(f"{spec.task.title()}Request", __base__=TextRequestBase, **fields)
    model.model_config["json_schema_extra"] = {"examples": [{"text": "example input"}, {"texts": ["one", "two"]}]}
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
    return create_model("ImageJsonRequest", __base__=ImageRequestBase, **fields)
