"""Classification and explanation routes, two per catalog task (`/v1/<task>`, `/v1/<task>/explain`),
generated from the catalog.

The texts of a request go to TorchServe in a few KServe v1 `{"instances": [...]}` requests, each answered by
the handler as one batch slot holding all its texts: a few HTTP round trips, frontend hand-offs and worker
messages per body instead of one each per text (`_predict_texts` says how many, and why). Several images fan
out into one TorchServe request per image, sent concurrently (an image's forward pass outweighs the hand-off,
and a body of several photos could pass TorchServe's request size limit); dynamic batching groups them with
other clients' requests. Explanations take the same bodies and limits; they go to TorchServe's explanations
API one item at a time, inside one of the model's explanation slots (`gateway.explain_slots`).
"""

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from contract.catalog import ImageTask, TaskSpec, TextTask
from contract.wire import IMAGE_FORMATS_TEXT, OVERLAY_HEADER, explain_path
from gateway.bodies import JSON, json_body_schema, read_json
from gateway.dependencies import Client, Coalesce, Share, Slots
from gateway.errors import APIError
from gateway.explain_slots import ExplainSlots
from gateway.fairshare import BULK, PRIORITY_HEADER, FairShare
from gateway.images import ImageLimits, prepare_image
from gateway.responses import OrjsonResponse
from gateway.routers import operation_id
from gateway.schemas.error_docs import EXPLAIN_ERRORS, PREDICT_ERRORS
from gateway.schemas.examples import image_examples, text_examples
from gateway.schemas.requests import TextRequestBase, image_request_model, text_request_model
from gateway.schemas.responses import (
    BatchPrediction,
    ExplainedBatch,
    ExplainedImageBatch,
    ExplainedImagePrediction,
    ExplainedPrediction,
    ImageBatchPrediction,
    ImagePrediction,
    Prediction,
)
from gateway.settings import Settings
from gateway.torchserve.client import EXPLANATIONS
from gateway.torchserve.pool import Answer
from gateway.uploads import read_uploads
from gateway.upstream import TorchServeClient, predict_texts

# No `from __future__ import annotations` here: FastAPI must see the image routes' `top_k` annotation, built
# per route from local values, as a real object.


def _result(answer: dict[str, Any], latency_ms: float, **replace: Any) -> dict[str, Any]:
    """One item's answer as TorchServe's handler wrote it, plus the round trip the gateway saw.

    The handler's JSON is passed through (no model objects built per request): its shape is the archive's
    contract, checked by the integration tests against the response models the OpenAPI schema publishes.
    """
    return {**answer, **replace, "latency_ms": round(latency_ms, 1)}


def _answer(results: list[dict[str, Any]], single: bool) -> OrjsonResponse:
    return OrjsonResponse(results[0] if single else {"results": results})


@dataclass(frozen=True)
class Routing:
    """How a prediction request asks to be served: a pinned model `version` (`X-Model-Version`; a bulk job pins
    the version it started with) and whether it is `bulk` work (`X-Priority: bulk`), which yields to
    interactive requests (`gateway.fairshare`)."""

    version: str | None = None
    bulk: bool = False


VERSION_HEADER = "x-model-version"
_VERSION = re.compile(r"^[0-9A-Za-z._-]{1,64}$")


def routing(request: Request) -> Routing:
    version = request.headers.get(VERSION_HEADER)
    priority = request.headers.get(PRIORITY_HEADER, "interactive")
    if version is not None and not _VERSION.fullmatch(version):
        raise APIError(422, "validation_error", "header X-Model-Version: 1 to 64 letters, digits and ._- (a version)")
    if priority not in ("interactive", BULK):
        raise APIError(422, "validation_error", "header X-Priority: `interactive` (the default) or `bulk`")
    return Routing(version, priority == BULK)


async def _forward(
    client: TorchServeClient,
    slots: ExplainSlots | None,
    model: str,
    payloads: Sequence[bytes],
    content_type: str,
    headers: dict[str, str] | None = None,
    route: Routing = Routing(),
    share: FairShare | None = None,
    model_slots: int = 1,
) -> list[tuple[dict[str, Any], float]]:
    """Predictions: every item at once (bulk ones each in a bulk slot of `share`). Explanations (`slots`
    given): one item after another, in one slot."""
    if slots is None:

        async def one(data: bytes) -> tuple[dict[str, Any], float]:
            if share is None:
                return await client.predict(model, data, content_type, version=route.version)
            async with share.bulk_call(model, model_slots):
                return await client.predict(model, data, content_type, version=route.version)

        return list(await asyncio.gather(*(one(data) for data in payloads)))
    async with slots.hold(model):
        answers = [await client.predict(model, data, content_type, EXPLANATIONS, headers) for data in payloads]
    if any("explanation" not in answer for answer, _ in answers):
        # an archive built before explanations existed answers TorchServe's explanations API like a prediction
        version = answers[0][0].get("model", {}).get("version", "unknown")
        raise APIError(
            501,
            "explain_unsupported",
            f"model '{model}' version {version} was built before explanations; publish a newer build to explain",
        )
    return answers


def _upstream_slots(spec: TaskSpec, client: TorchServeClient) -> int:
    """How many requests of a model its TorchServes take in one round of batches: workers x batch size each."""
    return spec.workers * spec.batch_size * len(client.upstreams)


async def _predict_texts(
    client: TorchServeClient,
    spec: TaskSpec,
    texts: list[str],
    route: Routing = Routing(),
    share: FairShare | None = None,
) -> list[Answer]:
    """A body's texts in as many upstream calls as the model's workers take in one round of batches (workers x
    batch size, per upstream), at most one per text. One call per text pays TorchServe's hand-off 32 times for 32
    texts; one call for all of them lands in one worker's batch while the others idle (measured: sentiment's
    texts/s halved). Answers come back in the texts' order. With `share` (bulk work), each call waits for a
    bulk slot."""
    slots = _upstream_slots(spec, client)
    calls = min(len(texts), slots)
    size = -(-len(texts) // calls)

    async def call(chunk: list[str]) -> list[Answer]:
        return await predict_texts(client, spec.model_name, chunk, version=route.version)

    if share is not None:
        return await share.bulk_items(spec.model_name, texts, call, slots, size)
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
    return [answer for chunk in await asyncio.gather(*(call(chunk) for chunk in chunks)) for answer in chunk]


def _text_endpoint(spec: TaskSpec, request_model: type[TextRequestBase], explain: bool) -> Any:
    async def classify(request: Request, client: Client, coalescer: Coalesce, share: Share) -> OrjsonResponse:
        route = routing(request)
        body = await read_json(request, request_model)
        texts = body.items()
        if route.bulk:
            answers = await _predict_texts(client, spec, texts, route, share)
        else:  # interactive, pinned to a version or not: bulk work yields to it
            async with share.interactive_call(spec.model_name):
                if coalescer is not None and len(texts) == 1 and route.version is None:
                    answers = [await coalescer.predict(spec.model_name, texts[0], _upstream_slots(spec, client))]
                else:
                    answers = await _predict_texts(client, spec, texts, route)
        return _answer([_result(answer, ms) for answer, ms in answers], single=body.text is not None)

    async def explain_text(request: Request, client: Client, slots: Slots) -> OrjsonResponse:
        body = await read_json(request, request_model)
        payloads = [orjson.dumps({"text": t}) for t in body.items()]
        answers = await _forward(client, slots, spec.model_name, payloads, JSON)
        return _answer([_result(answer, ms) for answer, ms in answers], single=body.text is not None)

    labels = f"Labels: {', '.join(spec.labels)}."
    if explain:
        explain_text.__name__ = f"explain_{spec.task}"
        explain_text.__doc__ = (
            f"{spec.description}: the answer and why. Same body as `POST {spec.route}`. `explanation.words` "
            "gives each word (character offsets into your text) a signed weight: how much the probability of "
            "the predicted label drops when the word is removed, with each blended member's share. "
            f"Explanations run a few at a time per model; over the limit: 429 with Retry-After. {labels}"
        )
        return explain_text
    classify.__name__ = f"classify_{spec.task}"
    classify.__doc__ = f"{spec.description}. {labels}"
    return classify


def _image_endpoint(spec: TaskSpec, settings: Settings, explain: bool) -> Any:
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, settings.image_forward_shorter_side)
    json_model = image_request_model(settings.max_images)
    top_k_query = Query(ge=1, le=len(spec.labels), description="how many ranked labels to return")
    overlay_query = Query(description="add `explanation.overlay_png_base64`: the classified crop with the heat map")

    async def answer(
        request: Request,
        client: Client,
        slots: ExplainSlots | None,
        top_k: int,
        headers: dict[str, str],
        share: FairShare | None = None,
    ) -> OrjsonResponse:
        route = routing(request)
        uploads, single = await read_uploads(request, json_model, settings.max_images)
        # Decoding is CPU work: keep it off the event loop. All images are checked before any is forwarded.
        prepared = [await run_in_threadpool(prepare_image, u.data, u.field, limits) for u in uploads]
        content_type, model_slots = "application/octet-stream", spec.workers * spec.batch_size
        if share is None or route.bulk:
            bulk = share if route.bulk else None
            args = (client, slots, spec.model_name, prepared, content_type, headers, route, bulk, model_slots)
            answers = await _forward(*args)
        else:
            async with share.interactive_call(spec.model_name):
                answers = await _forward(client, slots, spec.model_name, prepared, content_type, headers, route)
        return _answer([_result(answer, ms, top_k=answer["top_k"][:top_k]) for answer, ms in answers], single)

    async def classify(
        request: Request, client: Client, share: Share, top_k: Annotated[int, top_k_query] = 3
    ) -> OrjsonResponse:
        return await answer(request, client, None, top_k, {}, share)

    async def explain_image(
        request: Request,
        client: Client,
        slots: Slots,
        top_k: Annotated[int, top_k_query] = 3,
        overlay: Annotated[bool, overlay_query] = False,
    ) -> OrjsonResponse:
        return await answer(request, client, slots, top_k, {OVERLAY_HEADER: "true"} if overlay else {})

    body = (
        f"Send a photo as multipart field `image` (or several `images` fields, up to {settings.max_images}), or "
        f'JSON `{{"image_base64": ...}}` / `{{"images_base64": [...]}}`. Accepted: {IMAGE_FORMATS_TEXT}. '
        f"Labels: {', '.join(spec.labels)}."
    )
    if explain:
        explain_image.__name__ = f"explain_{spec.task}"
        explain_image.__doc__ = (
            f"{spec.description}: the answer and why. Same body as `POST {spec.route}`. `explanation.grid` "
            "covers the classified centre crop (`input_size` px square) row by row: each cell's weight is how "
            "much the probability of the predicted label drops when that cell is greyed out. Explanations run a "
            f"few at a time per model; over the limit: 429 with Retry-After. {body}"
        )
        return explain_image
    classify.__name__ = f"classify_{spec.task}"
    classify.__doc__ = f"{spec.description}. {body}"
    return classify


IMAGE_UPLOAD = "ImageUpload"


def _image_upload_schema(max_images: int) -> dict[str, Any]:
    """The multipart body as `gateway.uploads` reads it: a file is required, as `image` or as 1 to `max_images`
    `images` (not both), and no other field."""
    binary = {"type": "string", "format": "binary"}
    return {
        "title": IMAGE_UPLOAD,
        "type": "object",
        "description": f"one `image` file field, or 1 to {max_images} `images` file fields",
        "properties": {
            "image": {**binary, "description": "one photo"},
            "images": {
                "type": "array",
                "items": binary,
                "minItems": 1,
                "maxItems": max_images,
                "description": f"up to {max_images} photos",
            },
        },
        # exactly one of the two, said without `oneOf`, whose negation fuzzers get wrong (they "break" one
        # branch with a body that satisfies the other)
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
    }


def _image_request_body(settings: Settings, examples: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI description of the two accepted body forms (the endpoint reads the body itself)."""
    json_model = image_request_model(settings.max_images)
    json_media: dict[str, Any] = {"schema": json_model.openapi_schema(), **({"examples": examples} if examples else {})}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{IMAGE_UPLOAD}"}},
                JSON: json_media,
            },
        }
    }


def _ok_examples(examples: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The 200 answer's examples, merged by FastAPI into the schema it makes from `response_model`."""
    return {200: {"content": {JSON: {"examples": examples}}}} if examples else {}


@dataclass(frozen=True)
class RouteParts:
    """What a kind contributes to one of a task's routes: the endpoint, its response model, the OpenAPI
    request body (with examples) and the 200 answer's examples."""

    endpoint: Any
    response_model: Any
    request_body: dict[str, Any]
    answers: dict[str, Any]


def _text_route(spec: TextTask, settings: Settings, explain: bool) -> RouteParts:
    request_model = text_request_model(spec, settings.max_batch_texts)
    requests, answers = text_examples(spec, explain=explain)
    return RouteParts(
        _text_endpoint(spec, request_model, explain),
        ExplainedPrediction | ExplainedBatch if explain else Prediction | BatchPrediction,
        json_body_schema(request_model.openapi_schema(), requests),
        answers,
    )


def _image_route(spec: ImageTask, settings: Settings, explain: bool) -> RouteParts:
    requests, answers = image_examples(spec, explain=explain)
    return RouteParts(
        _image_endpoint(spec, settings, explain),
        ExplainedImagePrediction | ExplainedImageBatch if explain else ImagePrediction | ImageBatchPrediction,
        _image_request_body(settings, requests),
        answers,
    )


def _text_components(spec: TextTask, settings: Settings) -> dict[str, Any]:
    return text_request_model(spec, settings.max_batch_texts).openapi_forms()


def _image_components(_spec: ImageTask, settings: Settings) -> dict[str, Any]:
    return {
        IMAGE_UPLOAD: _image_upload_schema(settings.max_images),
        **image_request_model(settings.max_images).openapi_forms(),
    }


# Per input kind (its functions take that kind's spec): how its routes are made, and the schemas their request
# bodies refer to.
ROUTES: dict[str, Callable[..., RouteParts]] = {"text": _text_route, "image": _image_route}
COMPONENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "text": _text_components,
    "image": _image_components,
}


def openapi_components(catalog: dict[str, TaskSpec], settings: Settings) -> dict[str, Any]:
    """The schemas the routes' request bodies refer to: each one-or-many request's two forms (a class each
    in generated clients) and the multipart image upload. `gateway.main` adds them to the document."""
    components: dict[str, Any] = {}
    for spec in catalog.values():
        components.update(COMPONENTS[spec.kind](spec, settings))
    return components


def build_router(catalog: dict[str, TaskSpec], settings: Settings) -> APIRouter:
    router = APIRouter(tags=["classify"], generate_unique_id_function=operation_id)
    for spec in catalog.values():
        for explain in (False, True):
            parts = ROUTES[spec.kind](spec, settings, explain)
            router.add_api_route(
                explain_path(spec.route) if explain else spec.route,
                parts.endpoint,
                methods=["POST"],
                response_model=parts.response_model,
                summary=f"{spec.description}: the answer and why" if explain else spec.description,
                name=parts.endpoint.__name__,
                responses={**(EXPLAIN_ERRORS if explain else PREDICT_ERRORS), **_ok_examples(parts.answers)},
                openapi_extra=parts.request_body,
            )
    return router
