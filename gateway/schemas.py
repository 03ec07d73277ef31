"""Request and response models. Text request models are built per task from the catalog, so each route's
OpenAPI schema shows that task's real limits (characters per text, texts per request).

The OpenAPI document describes each one-or-many request as a `oneOf` of two complete object schemas, one per
form (`OneOrManyRequest.openapi_forms`), published as components: client generators turn them into one class
each. Validation still goes through the one model per route, so its rule and messages are the gateway's.
"""

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

from contract.catalog import CONTROL_CHARACTER, CONTROL_CHARACTERS, ImageTask, TextTask
from contract.jobs import JobState


class ModelRef(BaseModel):
    name: str
    version: str
    recipe: str | None = Field(
        default=None,
        description="the recipe that built this version: `quick` (served first, minutes after a fresh start, until "
        "a better one replaces it), `fast`, `full`, or `gpu`",
    )


class Prediction(BaseModel):
    task: str
    label: str
    score: float = Field(description="probability of `label`")
    scores: dict[str, float] = Field(description="probability of every label")
    model: ModelRef
    latency_ms: float = Field(
        description="model server round trip as seen by the gateway: this text's, or its batch body's (the texts "
        "of one body travel to the model server together)"
    )


class BatchPrediction(BaseModel):
    results: list[Prediction] = Field(description="one result per input text, in input order")


class MemberScores(BaseModel):
    blend_weight: float = Field(description="this member's weight in the blend of probabilities")
    label: str = Field(description="the label this member alone would give")
    score: float
    scores: dict[str, float]


class WordWeight(BaseModel):
    start: int = Field(description="offset of the word's first character in the request text")
    end: int = Field(description="offset just past the word's last character")
    word: str
    weight: float = Field(
        description="drop of the predicted label's blended probability (before the temperature) when the word "
        "is removed: positive words support the label, negative ones argue against it"
    )
    members: dict[str, float] | None = Field(
        default=None, description="each blended member's share of `weight` (they add up to it)"
    )


class TextExplanation(BaseModel):
    method: str = Field(description="`occlusion`: each word removed in turn, the text classified again")
    target: str = Field(description="the label explained (the predicted one)")
    words: list[WordWeight] = Field(description="every word of the text, in order")
    members: dict[str, MemberScores] = Field(description="what each member of the blend answered on its own")
    encoder_words_per_pass: int = Field(
        description="neighbouring words occluded together in one encoder pass (1: word by word); they share the "
        "encoder's part of the weight equally"
    )


class ExplainedPrediction(Prediction):
    explanation: TextExplanation


class ExplainedBatch(BaseModel):
    results: list[ExplainedPrediction] = Field(description="one result per input text, in input order")


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


class ImageExplanation(BaseModel):
    method: str = Field(description="`occlusion`: each grid cell greyed out in turn, the photo classified again")
    target: str = Field(description="the label explained (the predicted one)")
    grid: list[list[float]] = Field(
        description="rows of cells over the classified centre crop, top to bottom, left to right: how much the "
        "predicted label's probability (before the temperature) drops without the cell"
    )
    input_size: int = Field(description="side in pixels of the square crop the model classified")
    overlay_png_base64: str | None = Field(
        default=None, description="with `?overlay=true`: the crop with the grid painted over it (red supports)"
    )


class ExplainedImagePrediction(ImagePrediction):
    explanation: ImageExplanation


class ExplainedImageBatch(BaseModel):
    results: list[ExplainedImagePrediction] = Field(description="one result per image, in request order")


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
    model.one_form, model.many_form = "ImageBase64", "ImagesBase64"
    return model


# Real requests and answers for the OpenAPI document (Swagger UI's "Try it out" starts from them): a text task's
# come from its catalog `examples`; answers are shaped by the response models above.
# A tiny but real PNG (8x8 pixels): any photo of a person is sent the same way.
EXAMPLE_IMAGE_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8URHAgA0wMeAAg1MCADzvAaAsB0NhAAAAAElFTkSuQmCC"
)
EXAMPLE_MODEL_VERSION = "20260314.101502"  # a published version: UTC build time (modelops.package.archive)
_EXAMPLE_SCORES = (0.962, 0.871)  # the probability of the example's label, first and second example


def _scores(labels: tuple[str, ...], label: str, score: float) -> dict[str, float]:
    rest = round((1 - score) / (len(labels) - 1), 4)
    return {name: score if name == label else rest for name in labels}


def _example_words(text: str, label_score: float) -> list[dict[str, Any]]:
    """Illustrative word weights for an example answer: the shape of a real explanation, longer words heavier."""
    words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    return [
        {"start": start, "end": end, "word": word, "weight": round(label_score * len(word) / 400, 5)}
        for start, end, word in words
    ]


def _text_explanation(spec: TextTask, text: str, label: str, score: float) -> dict[str, Any]:
    return {
        "method": "occlusion",
        "target": label,
        "words": _example_words(text, score),
        "members": {
            "encoder": {
                "blend_weight": 1.0,
                "label": label,
                "score": score,
                "scores": _scores(spec.labels, label, score),
            }
        },
        "encoder_words_per_pass": 1,
    }


def text_examples(spec: TextTask, explain: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAPI `examples` for one text route: (request bodies, 200 answers), one text and a batch."""
    pairs = [(example.text, example.label) for example in spec.text.examples][: len(_EXAMPLE_SCORES)]
    if not pairs:
        return {}, {}
    model = {"name": spec.model_name, "version": EXAMPLE_MODEL_VERSION}
    answers = [
        {
            "task": spec.task,
            "label": label,
            "score": score,
            "scores": _scores(spec.labels, label, score),
            "model": model,
            "latency_ms": latency,
            **({"explanation": _text_explanation(spec, text, label, score)} if explain else {}),
        }
        for (text, label), score, latency in zip(pairs, _EXAMPLE_SCORES, (14.2, 16.8), strict=False)
    ]
    texts = [text for text, _ in pairs]
    requests = {
        "one": {"summary": f"one text ({pairs[0][1]})", "value": {"text": texts[0]}},
        "many": {"summary": f"{len(texts)} texts, answered in order", "value": {"texts": texts}},
    }
    responses = {
        "one": {"summary": "the answer to one text", "value": answers[0]},
        "many": {"summary": "the answer to a batch: `results`, in input order", "value": {"results": answers}},
    }
    return requests, responses


def image_examples(spec: ImageTask, top_k: int = 3, explain: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAPI `examples` for one image route's JSON form: (request bodies, 200 answers)."""
    ranked = spec.labels[:top_k]
    scores = (0.734, 0.118, 0.052, 0.031, 0.019)
    answer = {
        "task": spec.task,
        "label": ranked[0],
        "score": scores[0],
        "top_k": [{"label": label, "score": score} for label, score in zip(ranked, scores, strict=False)],
        "model": {"name": spec.model_name, "version": EXAMPLE_MODEL_VERSION},
        "latency_ms": 41.5,
    }
    if explain:
        # a 7 x 7 grid in which the centre of the photo carries the label
        grid = [[round(0.2 / (1 + abs(row - 3) + abs(col - 3)), 5) for col in range(7)] for row in range(7)]
        answer["explanation"] = {"method": "occlusion", "target": ranked[0], "grid": grid, "input_size": 224}
    requests = {
        "one": {"summary": "one image, base64", "value": {"image_base64": EXAMPLE_IMAGE_BASE64}},
        "many": {
            "summary": "two images, answered in order",
            "value": {"images_base64": [EXAMPLE_IMAGE_BASE64, EXAMPLE_IMAGE_BASE64]},
        },
    }
    responses = {
        "one": {"summary": "the answer to one image", "value": answer},
        "many": {
            "summary": "the answer to several images: `results`, in request order",
            "value": {"results": [answer, answer]},
        },
    }
    return requests, responses


class UpstreamReadiness(BaseModel):
    ready: bool = Field(description="every catalog model has a READY worker on this TorchServe")
    reason: str | None = Field(default=None, description="why this TorchServe could not be asked")


class LoadedVersion(BaseModel):
    """What the first TorchServe that has a model ready (else loaded at all) says of its default version; a
    ping-only upstream (a KServe predictor) says only `ready`."""

    ready: bool
    version: str | None
    ready_workers: int | None
    workers: int | None
    batch_size: int | None
    max_batch_delay_ms: int | None


class TaskEntry(BaseModel):
    task: str
    kind: str = Field(description="`text` or `image`: which body the route takes")
    route: str
    model_name: str
    description: str
    labels: list[str]
    max_chars: int | None = Field(description="a text task's limit per text")
    loaded: LoadedVersion | None = Field(description="None while no TorchServe has the model")
    training: dict[str, Any] | None = Field(
        description="a better version being built for the task (`make run`'s background training): its recipe, "
        "stage and progress (`contract/progress.py`)"
    )


class UpstreamState(BaseModel):
    name: str
    reachable: bool
    reason: str | None = Field(description="why this TorchServe could not be asked")


class ModelList(BaseModel):
    models: list[TaskEntry]
    torchserve: str = Field(description="`reachable`, or every upstream's problem")
    upstreams: list[UpstreamState]


class Readiness(BaseModel):
    status: str = Field(description="`ready` or `not_ready`")
    models: dict[str, bool] = Field(description="per model: has a READY worker on at least one upstream")
    upstreams: dict[str, UpstreamReadiness] = Field(description="per configured TorchServe, by name")
    reason: str | None = Field(default=None, description="why not ready")


class ModelCardAnswer(BaseModel):
    task: str
    model_name: str
    version: str | None = Field(description="the version TorchServe serves by default")
    card: dict[str, Any] = Field(
        description="`model_card.json` of the loaded archive: recipe, base checkpoint, data (hashes, split sizes), "
        "validation accuracy with its 95% interval, macro-F1, calibration error, per-class figures, confusion "
        "matrix, runtime variant, build time"
    )


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
EXPLAIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **PREDICT_ERRORS,
    429: _error(
        "the API key's rate limit is exceeded, or (`explain_busy`) the model's explanation slots are all taken "
        "(Retry-After set either way)"
    ),
    501: _error("`explain_unsupported`: the serving version's archive was built before explanations"),
}


# --- bulk jobs -----------------------------------------------------------------------------------------------


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
    def openapi_request_body(cls) -> dict[str, Any]:
        schema = cls.model_json_schema()
        form = {
            "type": "object",
            "required": ["task", "file"],
            "properties": {
                **{k: v for k, v in schema["properties"].items() if k != "input_uri"},
                "file": {"type": "string", "format": "binary", "description": "a CSV, TSV or JSON Lines file"},
            },
        }
        json_form = {**schema, "required": ["task", "input_uri"]}
        return {
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": form}, "application/json": {"schema": json_form}},
            }
        }


class JobRows(BaseModel):
    total: int
    done: int = Field(description="rows answered so far, refused ones included")
    refused: int = Field(description="rows answered with their own error (an empty text, a text over the limit, ...)")


class PinnedModel(BaseModel):
    name: str
    version: str | None = Field(
        description="the version pinned for the whole job; null where the upstream cannot name versions (a KServe "
        "predictor), and then each result line names the version that answered it"
    )


class JobView(BaseModel):
    id: str
    task: str
    state: JobState
    rows: JobRows
    refused: dict[str, int] = Field(description="refused rows by error code")
    rows_per_s: float | None
    eta_s: float | None = Field(description="seconds to go at the rate so far, while running")
    model: PinnedModel
    input: str = Field(description="the input file's name")
    created: str = Field(description="UTC, ISO 8601, like the other two")
    started: str | None = Field(description="when a worker took the job's first shard")
    finished: str | None
    reason: str | None = Field(description="why the job failed")
    results: str | None = Field(description="where the results are, once the job has succeeded")


class JobList(BaseModel):
    jobs: list[JobView]


_JOB_ERRORS = {
    404: "no such job of yours",
    409: "the job has not succeeded (yet): no results",
    413: "the file is over the byte or row limit",
    415: "the file is not CSV or JSON Lines",
    422: "a malformed file (its line named), a missing column, an unknown task or form field",
    429: "too many of your jobs are unfinished (Retry-After set)",
    503: "the job store (S3) or the task's model is not available now (Retry-After set)",
}


def job_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: _error(_JOB_ERRORS[status]) for status in statuses}
