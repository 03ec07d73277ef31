"""Real requests and answers for the OpenAPI document (Swagger UI's "Try it out" starts from them): a text task's
come from its catalog `examples`; answers are shaped by the response models (`gateway.schemas.responses`)."""

from __future__ import annotations

import re
from typing import Any

from contract.catalog import ImageTask, TextTask

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
