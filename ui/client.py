"""The UI's only way to the models: the gateway's HTTP API. Errors become `GatewayError`s whose text tells a
person what to change."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from contract.status import ModelList, Readiness, TaskEntry
from contract.wire import IMAGE_FORMATS_TEXT, explain_path

DEFAULT_GATEWAY = "http://127.0.0.1:8000"

# What a person should do about each kind of failure, by HTTP status.
_ADVICE = {
    401: "The API needs a key. Set UI_API_KEY to a key the gateway accepts and restart the UI.",
    403: "The UI's API key is not allowed to use this model. Ask for a key granted this task.",
    413: "The input is too large. Use a shorter text or a smaller image.",
    415: f"That file is not a supported image. Use a {IMAGE_FORMATS_TEXT} photo.",
    422: "The input was not accepted. Check it and try again.",
    429: "Too many requests right now. Wait a moment and try again.",
    503: "The model service is not ready. Wait a few seconds and try again.",
    504: "The model took too long to answer. Try again, or with a smaller input.",
}


@dataclass
class GatewayError(Exception):
    status: int | None
    code: str
    message: str

    def __str__(self) -> str:
        if self.status is None:
            advice = "The service cannot be reached right now. Try again in a moment."
        else:
            advice = _ADVICE.get(self.status, "Something went wrong on the server. Try again later.")
        return f"{advice} ({self.message})" if self.message else advice


@dataclass
class Timed:
    body: Any
    seconds: float


class GatewayClient:
    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = (base_url or os.environ.get("UI_GATEWAY_URL") or DEFAULT_GATEWAY).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("UI_API_KEY")
        headers = {"X-API-Key": key} if key else {}
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def _call(self, method: str, path: str, accept: tuple[int, ...] = (), **kwargs: Any) -> Timed:
        """Send one request; 4xx/5xx become GatewayError unless listed in `accept`."""
        started = time.perf_counter()
        response = self._send(method, path, accept, **kwargs)
        return Timed(_json(response), time.perf_counter() - started)

    def _send(self, method: str, path: str, accept: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise GatewayError(504, "timeout", f"no answer from {self.base_url} in time") from None
        except httpx.TransportError:
            raise GatewayError(None, "unreachable", f"the gateway at {self.base_url} is not reachable") from None
        if response.status_code >= 400 and response.status_code not in accept:
            body = _json(response)
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise GatewayError(response.status_code, error.get("code", "http_error"), error.get("message", ""))
        return response

    def health(self) -> Timed:
        return self._call("GET", "/healthz")

    def readiness(self) -> Readiness:
        """`/readyz` answers 503 with a useful body (which models, why) when not ready: that is no error here."""
        return Readiness.model_validate(self._call("GET", "/readyz", accept=(503,)).body)

    def models(self) -> list[TaskEntry]:
        return ModelList.model_validate(self._call("GET", "/v1/models").body).models

    def classify_texts(self, route: str, texts: list[str]) -> list[dict[str, Any]]:
        return self._texts(route, texts)

    def explain_texts(self, route: str, texts: list[str]) -> list[dict[str, Any]]:
        """Like `classify_texts`, each answer with its `explanation` (a weight per word)."""
        return self._texts(explain_path(route), texts)

    def classify_image(self, route: str, data: bytes, filename: str, top_k: int) -> dict[str, Any]:
        return self._image(route, data, filename, {"top_k": top_k})

    def explain_image(self, route: str, data: bytes, filename: str, top_k: int) -> dict[str, Any]:
        """Like `classify_image`, with an `explanation` whose `overlay_png_base64` is the heat map to show."""
        return self._image(explain_path(route), data, filename, {"top_k": top_k, "overlay": "true"})

    def model_card(self, task: str) -> dict[str, Any]:
        """The card of the version serving `task` (`{"task", "model_name", "version", "card"}`)."""
        return self._call("GET", f"/v1/models/{task}").body

    def submit_job(
        self, task: str, filename: str, data: bytes, input_column: str, id_column: str | None
    ) -> dict[str, Any]:
        """A bulk job for a whole file (`POST /v1/jobs`); its view, with its id."""
        form = {"task": task, "input_column": input_column, **({"id_column": id_column} if id_column else {})}
        files = {"file": (filename, data, "application/octet-stream")}
        body: dict[str, Any] = self._call("POST", "/v1/jobs", data=form, files=files).body
        return body

    def job(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}").body
        return body

    def jobs(self) -> list[dict[str, Any]]:
        """This UI's key's jobs (everybody's when the gateway has no keys), newest first."""
        found: list[dict[str, Any]] = self._call("GET", "/v1/jobs").body["jobs"]
        return found

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/cancel").body
        return body

    def delete_job(self, job_id: str) -> None:
        """Remove a job, its input and its results from the server (`DELETE /v1/jobs/{id}`, 204)."""
        self._send("DELETE", f"/v1/jobs/{job_id}")

    def job_results(self, job_id: str, as_csv: bool) -> bytes:
        """A finished job's results file, CSV or JSON Lines."""
        accept = "text/csv" if as_csv else "application/x-ndjson"
        return self._send("GET", f"/v1/jobs/{job_id}/results", headers={"Accept": accept}).content

    def _texts(self, path: str, texts: list[str]) -> list[dict[str, Any]]:
        if len(texts) == 1:
            return [self._call("POST", path, json={"text": texts[0]}).body]
        return self._call("POST", path, json={"texts": texts}).body["results"]

    def _image(self, path: str, data: bytes, filename: str, params: dict[str, Any]) -> dict[str, Any]:
        files = {"image": (filename, data, "application/octet-stream")}
        return self._call("POST", path, files=files, params=params).body


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
