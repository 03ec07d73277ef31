"""What the gateway, the UI and the handlers agree on beyond the request bodies. Standard library only: the
handlers reach it inside their archive (the packager ships `contract/` next to `handlers/`).

A batch of texts travels as one KServe v1 `{"instances": [...]}` request. Explanation options travel as
request headers (TorchServe hands a request's HTTP headers to the handler, and the body stays exactly what
the prediction route takes). The model card travels in TorchServe's customized describe as JSON text:
TorchServe re-serialises an object answer and drops its null fields on the way.
"""

# `true`: the image explanation adds a PNG of the classified crop with its heat map painted over it
OVERLAY_HEADER = "x-explain-overlay"
# the field of a describe answer holding the loaded `model_card.json`, as JSON text
CARD_FIELD = "model_card_json"
# the task's spec (its catalog entry: name, kind, labels, limits, serving settings), packaged into every archive
# as this file and answered in a describe's SPEC_FIELD: the gateway learns the tasks it routes from it
TASK_SPEC_FILE = "task_spec.json"
SPEC_FIELD = "task_spec_json"
# Most inputs one KServe v1 `instances` request may carry, so one caller cannot make a model batch arbitrarily
# large; the gateway sends a batch body's texts as one such request, so its batch limit stays within it.
MAX_INSTANCES = 64
# Most pixels (width x height) an image may have, checked from its header before decoding: a 20000x20000 PNG of a
# few kilobytes would otherwise take gigabytes to decode. The gateway's default, the handler's and training's.
MAX_PIXELS = 40_000_000
# The image formats every image route takes (Pillow's names), as users read them, and the file name suffixes
# a file picker offers for them.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
IMAGE_FORMATS_TEXT = "JPEG, PNG, WebP, BMP or GIF"
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp", "gif")


def explain_path(route: str) -> str:
    """A task's explanation route, next to its prediction route."""
    return f"{route}/explain"


def wants_overlay(headers: dict[str, str]) -> bool:
    """Whether the (lower-cased) request headers ask for the overlay picture."""
    return headers.get(OVERLAY_HEADER, "").lower() in ("1", "true", "yes")
