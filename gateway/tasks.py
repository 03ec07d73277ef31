"""The tasks this gateway routes: its catalog's, and every task its TorchServes serve with a spec.

A task added with `modelops task add` is published to S3 with its spec; each host's sync registers it with
TorchServe, and its archive carries the spec, which the handler answers in a customized describe. This set
watches the upstreams' model lists: a model that appears is described once per archive, its spec checked, and
its routes, OpenAPI schemas, limits and key grants exist from then on; a model no upstream serves any more
loses them. No restart, no rebuilt image: the catalog file only seeds the set, so the catalog's tasks have
routes (answering 503 until served) even while no TorchServe is up.

Nothing here runs per request: routes are rebuilt only when the set changes, and the middlewares read the live
mappings (`paths`, `body_limits`) that the set keeps current.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson

from contract.catalog import CatalogError, TaskSpec, routing_spec
from contract.logs import log_event
from gateway.errors import APIError
from gateway.upstream import TorchServeClient

logger = logging.getLogger(__name__)


class TaskSet:
    """The catalog's tasks plus the discovered ones; `on_change` callbacks run after the set changed."""

    def __init__(
        self,
        catalog: dict[str, TaskSpec],
        body_limit: Callable[[TaskSpec], int | None],
        static_limits: dict[str, int] | None = None,
    ) -> None:
        self.catalog = dict(catalog)
        self.discovered: dict[str, TaskSpec] = {}
        # why a served model is not routed (an invalid spec, a name another task has), by model
        self.refused: dict[str, str] = {}
        self.tasks: dict[str, TaskSpec] = dict(catalog)
        # the same specs by model name, as the scaler looks them up
        self.models: dict[str, TaskSpec] = {}
        # live mappings the middlewares read: a task route's path -> its task, and -> its own body limit
        self.paths: dict[str, str] = {}
        self.body_limits: dict[str, int] = {}
        self.on_change: list[Callable[[], None]] = []
        self._body_limit = body_limit
        self._static_limits = static_limits or {}
        # the archive each discovered (or refused) model was described from: described again only when it changes
        self._archives: dict[str, str] = {}
        self._publish()

    def _publish(self) -> None:
        taken = {spec.model_name for spec in self.catalog.values()}
        self.tasks = dict(self.catalog) | {
            name: spec for name, spec in self.discovered.items() if spec.model_name not in taken
        }
        self.models = {spec.model_name: spec for spec in self.tasks.values()}
        self.paths.clear()
        self.body_limits.clear()
        self.body_limits.update(self._static_limits)
        for spec in self.tasks.values():
            for path in (spec.route, f"{spec.route}/explain"):
                self.paths[path] = spec.task
                limit = self._body_limit(spec)
                if limit is not None:
                    self.body_limits[path] = limit
        for callback in self.on_change:
            callback()

    def _accept(self, model: str, document: str) -> TaskSpec | str:
        """The spec a served model describes, or why it cannot be routed."""
        if not document:
            return "its archive carries no task spec (built before archives did); republish it to route it"
        try:
            spec = routing_spec(orjson.loads(document))
        except (CatalogError, orjson.JSONDecodeError, AttributeError) as exc:
            return f"its task spec is invalid: {exc}"
        if spec.model_name != model:
            return f"its task spec is for model {spec.model_name!r}"
        owner = self.catalog.get(spec.task) or next(
            (s for name, s in self.discovered.items() if name == spec.task and s.model_name != model), None
        )
        if owner is not None and owner.model_name != model:
            return f"task {spec.task!r} is already routed to model {owner.model_name!r}"
        return spec

    async def refresh(self, client: TorchServeClient) -> bool:
        """Bring the set in line with what the upstreams serve; returns whether it changed."""
        served, complete = await client.served()
        catalog_models = {spec.model_name for spec in self.catalog.values()}
        changed = False
        for model, archive in sorted(served.items()):
            if model in catalog_models or self._archives.get(model) == archive:
                continue
            try:
                described = await client.described(model)
            except APIError:
                continue  # no worker has described it yet (still loading): asked again on the next refresh
            verdict = self._accept(model, described.spec)
            self._archives[model] = archive
            if isinstance(verdict, str):
                # a task routed before keeps its routes: the model answers them still, by its older spec
                if self.refused.get(model) != verdict:
                    log_event(logger, "tasks.refused", logging.WARNING, model=model, reason=verdict)
                self.refused[model] = verdict
                continue
            for name in [name for name, spec in self.discovered.items() if spec.model_name == model]:
                del self.discovered[name]
            self.refused.pop(model, None)
            self.discovered[verdict.task] = verdict
            log_event(logger, "tasks.routed", task=verdict.task, model=model, version=described.version)
            changed = True
        if complete:
            gone = [name for name, spec in self.discovered.items() if spec.model_name not in served]
            for name in gone:
                log_event(logger, "tasks.removed", task=name, model=self.discovered[name].model_name)
                self._archives.pop(self.discovered.pop(name).model_name, None)
            for model in [m for m in self.refused if m not in served]:
                self.refused.pop(model)
                self._archives.pop(model, None)
            changed = changed or bool(gone)
        if changed:
            self._publish()
        return changed

    async def watch(self, client: TorchServeClient, interval_s: float) -> None:
        """Refresh every `interval_s` seconds for the app's lifetime."""
        while True:
            try:
                await self.refresh(client)
            except Exception as exc:  # a bug here must not silently end discovery for the app's lifetime
                log_event(logger, "tasks.refresh_failed", logging.ERROR, error=repr(exc))
            await asyncio.sleep(interval_s)
