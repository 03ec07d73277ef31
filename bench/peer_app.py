"""The peer-style baseline: how many reference projects serve a model, for a side-by-side comparison.

A minimal FastAPI app whose endpoint calls a Hugging Face `pipeline` once per request (text), or the
EfficientNet-Lite model once per request (photos, which have no `pipeline` for this backbone): no dynamic
batching, torch's default thread count, no model server. It loads the same fine-tuned weights from an
unpacked archive (`PEER_MODEL_DIR`); for text that is the encoder alone (a `pipeline` has no linear member).
Run by `python -m bench` under uvicorn: `uvicorn bench.peer_app:app`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

MODEL_DIR = Path(os.environ.get("PEER_MODEL_DIR", "."))
CONFIG = json.loads((MODEL_DIR / "task.json").read_text(encoding="utf-8")) if "PEER_MODEL_DIR" in os.environ else {}

app = FastAPI(title="peer-style baseline")


def _text_classifier() -> Any:
    from transformers import pipeline

    return pipeline("text-classification", model=str(MODEL_DIR), tokenizer=str(MODEL_DIR), device="cpu")


def _image_classifier() -> Any:
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from safetensors.torch import load_file

    from handlers.image_decode import decode
    from handlers.image_ops import to_model_input

    model = EfficientNet.from_name(CONFIG["architecture"], num_classes=len(CONFIG["labels"]))
    model.load_state_dict(load_file(MODEL_DIR / "model.safetensors"))
    model.eval()

    def classify(data: bytes) -> dict[str, Any]:
        x = to_model_input(decode(data), int(CONFIG["image_size"]), int(CONFIG["resize_to"]))
        with torch.inference_mode():
            probabilities = model(x.unsqueeze(0)).softmax(-1)[0]
        best = int(probabilities.argmax())
        return {"label": CONFIG["labels"][best], "score": float(probabilities[best])}

    return classify


CLASSIFY: Any = (_image_classifier() if CONFIG.get("kind") == "image" else _text_classifier()) if CONFIG else None


@app.post("/predict")
def predict_text(body: dict[str, str]) -> dict[str, Any]:
    # a plain `def`: FastAPI runs it in its thread pool, one request per call, as such projects do
    return CLASSIFY(body["text"], truncation=True, max_length=int(CONFIG["max_length"]))[0]


@app.post("/predict-image")
async def predict_image(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(CLASSIFY, await request.body())
