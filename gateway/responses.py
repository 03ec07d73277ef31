"""JSON responses rendered with orjson: several times faster than the standard library on the answers the
gateway sends, and it encodes what the routes hand it as is (no second validation pass)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
