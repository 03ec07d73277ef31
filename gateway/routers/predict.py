"""Classification routes, one per catalog task, generated from the catalog.

A `texts` request fans out into one TorchServe request per text, sent concurrently: TorchServe's dynamic
batching then groups them (with other clients' requests) into model batches.
"""

import asyncio
from typing import Any

from fastapi import APIRouter

from gateway.dependencies import Client
from gateway.schemas import BatchPrediction, Prediction, TextRequestBase, text_request_model
from modelops.catalog import TaskSpec

# No `from __future__ import annotations` here: FastAPI must see the per-task request classes, which are
# local variables, as real annotation objects.


def _prediction(answer: dict[str, Any], latency_ms: float) -> Prediction:
    return Prediction(**answer, latency_ms=round(latency_ms, 1))


def _text_endpoint(spec: TaskSpec, request_model: type[TextRequestBase]) -> Any:
    async def classify(
        body: request_model,  # type: ignore[valid-type]
        client: Client,
    ) -> Prediction | BatchPrediction:
        texts = body.items()
        answers = await asyncio.gather(*(client.predict(spec.model_name, {"text": t}) for t in texts))
        results = [_prediction(answer, ms) for answer, ms in answers]
        return results[0] if body.text is not None else BatchPrediction(results=results)

    classify.__name__ = f"classify_{spec.task}"
    classify.__doc__ = f"{spec.description}. Labels: {', '.join(spec.labels)}."
    return classify


def build_router(catalog: dict[str, TaskSpec], max_batch: int) -> APIRouter:
    router = APIRouter(tags=["classify"])
    for spec in catalog.values():
        router.add_api_route(
            spec.route,
            _text_endpoint(spec, text_request_model(spec, max_batch)),
            methods=["POST"],
            response_model=Prediction | BatchPrediction,
            summary=spec.description,
            name=spec.task,
            responses={
                413: {"description": "request body too large"},
                422: {"description": "invalid input; the message names the field and the limit"},
                503: {"description": "TorchServe down or the model not ready (Retry-After set)"},
                504: {"description": "TorchServe did not answer in time"},
            },
        )
    return router
