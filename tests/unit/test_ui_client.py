"""The UI turns gateway failures into sentences that say what to change."""

from __future__ import annotations

import pytest

from ui.client import GatewayError


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (413, "too large"),
        (415, "not a supported image"),
        (422, "not accepted"),
        (503, "not ready"),
        (504, "took too long"),
        (None, "cannot be reached"),
    ],
)
def test_each_failure_reads_as_advice(status: int | None, advice: str) -> None:
    text = str(GatewayError(status, "code", "images[0]: 20000x20000 pixels"))
    assert advice in text
    assert "Traceback" not in text
    if status is not None:
        assert "20000x20000" in text  # the gateway's own message, which names the field and limit, is kept
