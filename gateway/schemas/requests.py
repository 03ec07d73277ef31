"""Request models. Text request models are built per task from the catalog, so each route's OpenAPI schema
shows that task's real limits (characters per text, texts per request).

The OpenAPI document describes each one-or-many request as a `oneOf` of two complete object schemas, one per
form (`OneOrManyRequest.openapi_forms`), published as components: client generators turn them into one class
each. Validation still goes through the one model per route, so its rule and messages are the gateway's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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

from contract.catalog import CONTROL_CHARACTER, CONTROL_CHARACTERS, TextTask


class OneOrManyRequest(BaseModel):
    """A request carrying one item or a list of items: exactly one of the two fields must be sent."""

    model_config = ConfigDict(extra="forbid")
    one_field: ClassVar[str]
    many_field: ClassVar[str]
    one_of_message: ClassVar[str]
    # names of the two forms in the OpenAPI document's components (set per built model)
    one_form: ClassVar[str]
    many_form: ClassVar[str]

    @classmethod
    def openapi_forms(cls) -> dict[str, dict[str, Any]]:
        """The two accepted forms as complete JSON Schemas, by component name. In each, its own field is
        required (with the model's limits and description) and the other may only be left out or null, so
        exactly one form matches any body the model accepts, and none matches a body it refuses for the rule."""
        properties = cls.model_json_schema()["properties"]

        def form(name: str, field: str, other: str) -> dict[str, Any]:
            return {
                "title": name,
                "type": "object",
                "properties": {
                    field: _without_null(properties[field]),
                    other: {"type": "null", "description": f"leave out (or null) when sending `{field}`"},
                },
                "required": [field],
                "additionalProperties": False,
            }

        return {
            cls.one_form: form(cls.one_form, cls.one_field, cls.many_field),
            cls.many_form: form(cls.many_form, cls.many_field, cls.one_field),
        }

    @classmethod
    def openapi_schema(cls) -> dict[str, Any]:
        """The request body's schema: one of the two forms, by reference, with the rule in words."""
        return {
            "title": cls.__name__,
            "description": f"{cls.one_of_message[0].upper()}{cls.one_of_message[1:]}; both or neither is a 422.",
            "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in (cls.one_form, cls.many_form)],
        }

    @model_validator(mode="after")
    def _exactly_one(self) -> OneOrManyRequest:
        given = [name for name in (self.one_field, self.many_field) if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(self.one_of_message)
        return self


def _without_null(field_schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's JSON Schema (`anyOf: [X, null]`, default null) as the required, non-null X."""
    options = [option for option in field_schema["anyOf"] if option != {"type": "null"}]
    (present,) = options
    extra = {key: field_schema[key] for key in ("title", "description") if key in field_schema}
    return {**present, **extra}


class TextRequestBase(OneOrManyRequest):
    one_field: ClassVar[str] = "text"
    many_field: ClassVar[str] = "texts"
    one_of_message: ClassVar[str] = "send exactly one of 'text' (a string) or 'texts' (a list of strings)"
    # each task's model redeclares both with its limits (`text_request_model`)
    text: str | None = None
    texts: list[str] | None = None

    def items(self) -> list[str]:
        if self.texts is not None:
            return self.texts
        return [self.text] if self.text is not None else []


# Control characters (contract.catalog.CONTROL_CHARACTERS): never part of a real review or tweet, and a classic
# way to smuggle text past filters or break logs downstream. With "not only whitespace", as a JSON Schema pattern,
# so the published schema says what is accepted (schema-driven clients and fuzzers generate valid texts from it);
# `_plain_text` still does the checking, with clearer messages.
PLAIN_TEXT_PATTERN = f"^[^{CONTROL_CHARACTERS}]*[^\\s{CONTROL_CHARACTERS}][^{CONTROL_CHARACTERS}]*$"


def _plain_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain non-whitespace characters")
    control = CONTROL_CHARACTER.search(value)
    if control:
        raise ValueError(
            f"contains the control character U+{ord(control.group()):04X} at position {control.start()}; "
            "only tab, newline and carriage return are allowed"
        )
    return value


def text_request_model(spec: TextTask, max_batch: int) -> type[TextRequestBase]:
    """A request model for one text task: `{"text": str}` or `{"texts": [str, ...]}` with its limits."""
    text_type = Annotated[
        str,
        StringConstraints(min_length=1, max_length=spec.text.max_chars),
        AfterValidator(_plain_text),
        Field(json_schema_extra={"pattern": PLAIN_TEXT_PATTERN}),
    ]
    fields: dict[str, Any] = {
        "text": (text_type | None, Field(default=None, description=f"one text, at most {spec.text.max_chars} chars")),
        "texts": (
            list[text_type] | None,
            Field(default=None, min_length=1, max_length=max_batch, description=f"up to {max_batch} texts"),
        ),
    }
    prefix = _pascal(spec.task)
    model = create_model(f"{prefix}Request", __base__=TextRequestBase, **fields)
    model.one_form, model.many_form = f"{prefix}Text", f"{prefix}Texts"
    return model


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name))


class ImageRequestBase(OneOrManyRequest):
    """JSON form of an image request, for clients that cannot send multipart."""

    one_field: ClassVar[str] = "image_base64"
    many_field: ClassVar[str] = "images_base64"
    one_of_message: ClassVar[str] = "send exactly one of 'image_base64' (a string) or 'images_base64' (a list)"


# Standard base64 with its padding (RFC 4648 section 4), as the gateway decodes it (`gateway.uploads`, whose 422
# names the item): the schema says so, so a client generated from it cannot send what is refused.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
Base64Text = Annotated[str, StringConstraints(min_length=4), Field(json_schema_extra={"pattern": BASE64_PATTERN})]


def image_request_model(max_images: int) -> type[ImageRequestBase]:
    fields: dict[str, Any] = {
        "image_base64": (Base64Text | None, Field(default=None, description="one base64-encoded image")),
        "images_base64": (
            list[Base64Text] | None,
            Field(default=None, min_length=1, max_length=max_images, description=f"up to {max_images} images"),
        ),
    }
    model = create_model("ImageJsonRequest", __base__=ImageRequestBase, **fields)
    model.one_form, model.many_form = "ImageBase64", "ImagesBase64"
    return model


class JobSubmission(BaseModel):
    """What `POST /v1/jobs` takes besides the file: multipart form fields, or a JSON body naming the file."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="the task to classify the rows with, e.g. `sentiment`")
    input_column: str | None = Field(
        default=None,
        description="the column (CSV) or key (JSON Lines) holding each input: the text, or for a photo task the "
        "photo's s3:// URI; default `text`, or `image` for a photo task",
    )
    id_column: str | None = Field(default=None, description="a column whose value names each row in the results")
    input_uri: str | None = Field(
        default=None, description="JSON bodies only: the file's s3:// URI, inside the gateway's jobs input prefix"
    )

    @classmethod
    def openapi_request_body(cls, tasks: Sequence[str], input_prefix: str | None) -> dict[str, Any]:
        """The body as this gateway accepts it now: `task` one of the tasks it serves, and a JSON body only where
        a jobs input prefix lets one name its file (an `s3://` URI under that prefix, without `..`)."""
        schema = cls.model_json_schema()
        task = {**schema["properties"]["task"], **({"enum": list(tasks)} if tasks else {})}
        fields = {**schema["properties"], "task": task}
        form = {
            "type": "object",
            "required": ["task", "file"],
            "properties": {
                **{k: v for k, v in fields.items() if k != "input_uri"},
                "file": {"type": "string", "format": "binary", "description": "a CSV, TSV or JSON Lines file"},
            },
        }
        content: dict[str, Any] = {"multipart/form-data": {"schema": form}}
        if input_prefix:
            uri = {
                "type": "string",
                "pattern": "^" + re.escape(input_prefix) + r"(?:[^.]|\.[^.])+\.?$",
                "description": f"JSON bodies only: the file's s3:// URI, under {input_prefix}",
            }
            json_form = {**schema, "properties": {**fields, "input_uri": uri}, "required": ["task", "input_uri"]}
            content["application/json"] = {"schema": json_form}
        return {"required": True, "content": content}
