"""How many inference requests TorchServe has taken per model, from its metrics API (Prometheus text): the
owner of the scaling policy reads it to see the calls other gateways forwarded."""

from __future__ import annotations

import re

import httpx

from gateway.torchserve.client import Upstream
from gateway.torchserve.errors import Unreachable, UpstreamTimeout

_METRIC = "ts_inference_requests_total"
_LINE = re.compile(r"^ts_inference_requests_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+-]+)$", re.MULTILINE)
_MODEL = re.compile(r'model_name="(?P<model>[^"]+)"')


def parse_counts(text: str) -> dict[str, float]:
    """Requests per model, summed over versions and hosts, from a Prometheus text page."""
    counts: dict[str, float] = {}
    for match in _LINE.finditer(text):
        model = _MODEL.search(match["labels"])
        if model:
            counts[model["model"]] = counts.get(model["model"], 0.0) + float(match["value"])
    return counts


async def request_counts(upstream: Upstream, wait: httpx.Timeout) -> dict[str, float]:
    """The counts, or {} when the metrics API does not answer (idleness then rests on this gateway's calls)."""
    try:
        response = await upstream.send(
            "GET", f"{upstream.config.metrics_url}/metrics", "inference", wait, params={"name[]": _METRIC}
        )
    except (Unreachable, UpstreamTimeout):
        return {}
    return parse_counts(response.text) if response.status_code == 200 else {}
