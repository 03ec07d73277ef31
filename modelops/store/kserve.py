"""A KServe-ready view of the published defaults, kept beside the versioned store.

The predictor of deploy/k8s (KServe copies `<storageUri>` to /mnt/models) reads `config/config.properties`
and loads archives from the top level of `model-store/`; TorchServe 0.12 cannot register an archive from a
subfolder (it answers `Model not found at: <model>/<version>/<model>.mar`). So after every manifest change
the default version of each model is server-side copied to `kserve/model-store/<model>.mar` and
`kserve/config/config.properties` is rewritten; point an InferenceService's `storageUri` at
`s3://<bucket>/<prefix>/kserve`.
"""

from __future__ import annotations

import json
import logging

from contract.catalog import TaskSpec, parse_task_document
from contract.logs import log_event
from contract.manifest import Manifest
from modelops.package.archive import torchserve_model_config
from modelops.store.s3 import ModelStore, archive_path

logger = logging.getLogger(__name__)

VIEW = "kserve"


# The predictor pod's TorchServe (deploy/k8s/servingruntime.yaml runs it). KServe routes the pod's traffic to
# port 8080, where TorchServe answers KServe's v1 `/v1/models/<m>:predict` itself (and `/predictions/<m>`).
KSERVE_PROPERTIES = """\
# Written by `python -m modelops publish/rollback`; the TorchServe in each KServe predictor pod reads it.
inference_address=http://0.0.0.0:8080
# Management stays inside the pod: nothing outside it can scale, register or unregister models.
management_address=http://127.0.0.1:8081
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
enable_metrics_api=true
metrics_mode=prometheus
# Security (deliberate): TorchServe mints its keys at start, in each pod, where no caller can read them, so
# token authorization is off in the predictor and replaced by: the management API on the pod's loopback, no
# model registration API, no URL fetching, and deploy/k8s/networkpolicy.yaml admitting only gateway pods to
# port 8080 (and Prometheus to 8082). The gateway's API keys stay the public face.
disable_token_authorization=true
enable_model_api=false
allowed_urls=^$
# TS_* variables are ignored on purpose: KServe sets TS_SERVICE_ENVELOPE=kserve for the pytorch format, and
# that envelope parses only the first request of each batch. The handler reads {"instances": [...]} itself.
enable_envvars_config=false
install_py_dep_per_model=false
default_response_timeout=120
job_queue_size=200
vmargs=-Xmx512m -XX:+UseSerialGC
model_store=/mnt/models/model-store
"""


def serving_specs(store: ModelStore, manifest: Manifest, catalog: dict[str, TaskSpec]) -> dict[str, TaskSpec]:
    """The spec each published default is served with: the catalog's entry for a catalog task, else the spec
    published beside its archive (a task added with `modelops task add`)."""
    specs = {spec.model_name: spec for spec in catalog.values()}
    for name, entry in manifest.models.items():
        if name not in specs and (document := store.task_spec(name, entry.default)) is not None:
            specs[name] = parse_task_document(document)
    return specs


def kserve_properties(manifest: Manifest, specs: dict[str, TaskSpec]) -> str:
    """config.properties for KServe's runtime: its standard ports, and a snapshot naming each default (`specs`:
    by model name, what `serving_specs` gives)."""
    models = {
        name: {
            entry.default: {
                "defaultVersion": True,
                "marName": f"{name}.mar",
                **torchserve_model_config(specs[name]),
            }
        }
        for name, entry in sorted(manifest.models.items())
        if name in specs
    }
    snapshot = {"name": "startup.cfg", "modelCount": len(models), "models": models}
    return f"{KSERVE_PROPERTIES}model_snapshot={json.dumps(snapshot, sort_keys=True)}\n"


def refresh_kserve_view_if_stale(store: ModelStore, catalog: dict[str, TaskSpec]) -> bool:
    """Refresh the view unless its config is what this code would write for the current manifest (so the
    same defaults, with this version's settings); True when it was refreshed."""
    stored = store.get(f"{VIEW}/config/config.properties")
    manifest = store.read_manifest()
    if stored is not None and stored[0].decode() == kserve_properties(
        manifest, serving_specs(store, manifest, catalog)
    ):
        return False
    refresh_kserve_view(store, catalog)
    return True


def view_defaults(properties: str | None) -> dict[str, str]:
    """The default version of each model a view's config names (its snapshot), {} for none or another format."""
    for line in (properties or "").splitlines():
        if line.startswith("model_snapshot="):
            try:
                models = json.loads(line.removeprefix("model_snapshot="))["models"]
                return {name: next(iter(versions)) for name, versions in models.items()}
            except (ValueError, KeyError, TypeError, StopIteration):
                return {}
    return {}


def refresh_kserve_view(store: ModelStore, catalog: dict[str, TaskSpec]) -> None:
    """Copy each default archive the view does not hold yet (server-side, no download) and rewrite the config
    for the current manifest. Only changed defaults are copied: with the built-ins' 24-100 MB archives, copying
    every default on every publish made each `task add` slower as tasks accumulated."""
    manifest = store.read_manifest()
    bucket = store.location.bucket
    stored = store.get(f"{VIEW}/config/config.properties")
    held = view_defaults(stored[0].decode() if stored else None)
    for name, entry in manifest.models.items():
        if held.get(name) == entry.default:
            continue
        store.call(
            f"copying {name} {entry.default} into the KServe view",
            store.s3.copy_object,
            Bucket=bucket,
            Key=store.location.key(f"{VIEW}/model-store/{name}.mar"),
            CopySource={"Bucket": bucket, "Key": store.location.key(archive_path(name, entry.default))},
        )
    specs = serving_specs(store, manifest, catalog)
    store.put(f"{VIEW}/config/config.properties", kserve_properties(manifest, specs).encode(), "text/plain")
    log_event(
        logger,
        "kserve.view_refreshed",
        uri=store.location.uri(VIEW),
        defaults={name: entry.default for name, entry in manifest.models.items()},
    )
