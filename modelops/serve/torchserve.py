"""TorchServe's management API, driven by sync and the local stack (the key file's format is in
`contract.torchserve`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx

from contract.catalog import TaskSpec
from contract.logs import log_event
from contract.torchserve import TorchServeError, bearer, read_keys, ready_workers

logger = logging.getLogger(__name__)


class ManagementClient:
    """Synchronous client for the management API, used by sync and the local stack."""

    def __init__(self, url: str, key_file: Path, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.key_file = key_file
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = bearer(key or read_keys(self.key_file).management)
        try:
            return self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise TorchServeError(f"TorchServe management API at {self.url} unreachable: {exc}") from exc

    def describe(self, model: str, version: str = "") -> list[dict[str, Any]] | None:
        """Status of the default version (or of `version`, or of `all` versions); None if not registered."""
        response = self._request("GET", f"/models/{model}/{version}".rstrip("/"))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TorchServeError(f"describe {model}: HTTP {response.status_code} {response.text.strip()}")
        return response.json()

    def models(self) -> list[str]:
        """The name of every registered model, page by page (TorchServe lists 100 at most per page)."""
        names: list[str] = []
        token = None
        while True:
            params = {"limit": 100, **({"next_page_token": token} if token else {})}
            response = self._request("GET", "/models", params=params)
            if response.status_code != 200:
                raise TorchServeError(f"list models: HTTP {response.status_code} {response.text.strip()}")
            page = response.json()
            names += [entry["modelName"] for entry in page.get("models", [])]
            token = page.get("nextPageToken")
            if not token:
                return names

    def register(self, spec: TaskSpec, archive_name: str, version: str, workers: int) -> None:
        """Register an archive (holding `version`) from the model store with the catalog's batching settings
        and `workers` workers (0: registered cold, its first request starts one through the gateway's scaler).

        A model's first registered version becomes its default; later ones wait for `set_default`.
        """
        params = {
            "url": archive_name,
            "model_name": spec.model_name,
            "batch_size": spec.batch_size,
            "max_batch_delay": spec.max_batch_delay_ms,
            "initial_workers": workers,
            "response_timeout": spec.response_timeout_s,
            "synchronous": "true",
        }
        response = self._request("POST", "/models", params=params)
        if response.status_code != 200:
            raise TorchServeError(f"register {archive_name}: HTTP {response.status_code} {response.text.strip()}")
        # The archive's model-config.yaml caps workers at the catalog's value when it was packaged; the
        # catalog read now is the operator's current choice, so the new version is scaled to it.
        self.scale(spec.model_name, version, workers)

    def scale(self, model: str, version: str, workers: int) -> None:
        params = {"min_worker": workers, "max_worker": workers, "synchronous": "true"}
        response = self._request("PUT", f"/models/{model}/{version}", params=params)
        if response.status_code != 200:
            raise TorchServeError(f"scale {model}/{version}: HTTP {response.status_code} {response.text.strip()}")

    def set_default(self, model: str, version: str) -> None:
        response = self._request("PUT", f"/models/{model}/{version}/set-default")
        if response.status_code != 200:
            raise TorchServeError(f"set-default {model}/{version}: HTTP {response.status_code} {response.text}")

    def unregister(self, model: str, version: str) -> None:
        response = self._request("DELETE", f"/models/{model}/{version}")
        if response.status_code not in (200, 404):
            raise TorchServeError(f"unregister {model}/{version}: HTTP {response.status_code} {response.text}")

    def wait_ready(self, model: str, version: str = "", timeout_s: float = 180.0, workers: int = 1) -> list[int]:
        """Wait until at least `workers` workers are READY; returns the pids of the version's workers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            description = self.describe(model, version)
            if description and ready_workers(description) >= workers:
                return [int(w["pid"]) for w in description[0]["workers"]]
            time.sleep(0.5)
        needed = "no READY worker" if workers == 1 else f"fewer than {workers} READY workers"
        raise TorchServeError(f"model {model} {version} has {needed} after {timeout_s:.0f}s".replace("  ", " "))

    def wait_drained(self, model: str, version: str, timeout_s: float = 30.0) -> None:
        """Wait until a version has no queued requests, so unregistering it fails none in flight."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            description = self.describe(model, version)
            if not description or description[0].get("jobQueueStatus", {}).get("pendingRequests", 0) == 0:
                return
            time.sleep(0.2)

    def rotate_keys(self) -> None:
        """Mint fresh inference and management keys before the old ones expire (TorchServe rewrites the file).

        Readers of the key file (gateway, sync) pick the new keys up on their next read.
        """
        api_key = read_keys(self.key_file).api
        for kind in ("inference", "management"):
            response = self._request("GET", "/token", key=api_key, params={"type": kind})
            if response.status_code != 200:
                raise TorchServeError(f"rotating the {kind} key: HTTP {response.status_code} {response.text}")
        log_event(logger, "torchserve.keys_rotated", key_file=str(self.key_file))
