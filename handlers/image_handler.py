"""TorchServe handler for the image classifier (15 human actions in a photo of a person).

Each request body is one encoded image (JPEG, PNG, WebP, BMP or GIF bytes). Decoding and preprocessing are
`image_decode` and `image_ops` functions, the same ones training uses. The archive holds this file, its
support modules, `model.safetensors` (the fine-tuned EfficientNet-Lite weights), `model.onnx` when it serves
the ONNX Runtime variant, `task.json` and `model_card.json`; the EfficientNet-Lite model code comes from the
`efficientnet-lite-pytorch` package. An explanation (TorchServe's explanations API) occludes a grid of cells
of the photo (`cell_occlusion.py`); the request header `X-Explain-Overlay: true` adds a picture of it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from contract.serving import ImageServing
from contract.wire import MAX_PIXELS, wants_overlay
from handlers.calibration import temper
from handlers.cell_occlusion import CELLS, CHUNK, occluded, overlay_png
from handlers.classifier_base import BatchClassifier, RequestError, request_body
from handlers.image_decode import decode
from handlers.image_ops import to_model_input
from handlers.ort_model import ONNX_FILE, OrtModel

# the model input's name, in the exported ONNX graph too
PIXELS = "pixels"


def image_bytes(row: dict[str, Any]) -> bytes:
    """The encoded image of one request: raw bytes, or JSON `{"image_base64": ...}`."""
    body = request_body(row)
    if isinstance(body, dict):
        encoded = body.get("image_base64")
        if not isinstance(encoded, str):
            raise RequestError("send the image as the request body, or JSON with 'image_base64'")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("field 'image_base64' is not valid base64") from None
    if isinstance(body, (bytes, bytearray)) and body:
        return bytes(body)
    raise RequestError("the request body is empty; send an encoded image")


def ranked(probabilities: Sequence[float], labels: Sequence[str]) -> dict[str, Any]:
    """`{label, score, top_k}` with every label ranked by probability (the gateway trims `top_k`)."""
    order = sorted(range(len(labels)), key=lambda i: probabilities[i], reverse=True)
    top = [{"label": labels[i], "score": round(float(probabilities[i]), 4)} for i in order]
    return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}


class ImageClassifier(BatchClassifier):
    config: ImageServing

    def load(self, model_dir: Path) -> None:
        if self.config.runtime != "torch":
            self.session = OrtModel(model_dir / ONNX_FILE, self.config.threads_per_worker)
            return
        from efficientnet_lite_pytorch import EfficientNet
        from safetensors.torch import load_file

        self.model = EfficientNet.from_name(self.config.architecture, num_classes=len(self.config.labels))
        self.model.load_state_dict(load_file(model_dir / "model.safetensors"))
        # channels_last: measured 1.4x faster for EfficientNet's depthwise convolutions on CPU
        self.model = self.model.to(memory_format=torch.channels_last).eval()

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        if self.config.runtime == "torch":
            return self.model(batch.to(memory_format=torch.channels_last))
        return self.session({PIXELS: batch})

    def parse(self, row: dict[str, Any]) -> torch.Tensor:
        data = image_bytes(row)
        try:
            image = decode(data, MAX_PIXELS)  # for callers that reach TorchServe directly
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise RequestError(f"the image could not be decoded: {exc}") from None
        return to_model_input(image, self.config.image_size, self.config.resize_to)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a batch of model inputs, before the temperature."""
        count = batch.shape[0]
        if self.config.tta_flip:
            # test-time augmentation: the photo and its mirror image in one forward pass, probabilities averaged
            batch = torch.cat([batch, batch.flip(-1)])
        with torch.inference_mode():
            probabilities = self.logits(batch).softmax(dim=-1)
        return probabilities.view(-1, count, probabilities.shape[-1]).mean(dim=0)

    def infer(self, inputs: list[torch.Tensor]) -> list[list[float]]:
        return temper(self.probabilities(torch.stack(inputs)), self.config.temperature).tolist()

    def describe(self, probabilities: Sequence[float]) -> dict[str, Any]:
        return ranked(probabilities, self.config.labels)

    def explain(self, item: torch.Tensor, headers: dict[str, str]) -> dict[str, Any]:
        """The answer for one photo, and a `CELLS` x `CELLS` grid: how much the predicted label's probability
        (before the temperature) drops when that cell is greyed out."""
        base = self.probabilities(item[None])[0]
        answer = self.describe(temper(base[None], self.config.temperature)[0].tolist())
        target = self.config.labels.index(answer["label"])
        copies = occluded(item, CELLS)
        masked = torch.cat([self.probabilities(chunk)[:, target] for chunk in copies.split(CHUNK)])
        grid = (base[target] - masked).view(CELLS, CELLS)
        explanation: dict[str, Any] = {
            "method": "occlusion",
            "target": answer["label"],
            "grid": [[round(float(v), 5) for v in row] for row in grid],
            "input_size": int(item.shape[-1]),
        }
        if wants_overlay(headers):
            explanation["overlay_png_base64"] = overlay_png(item, grid)
        return {**answer, "explanation": explanation}


handle = ImageClassifier().entry_point
