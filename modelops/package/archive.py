"""Package a trained model into a TorchServe archive (.mar) with its handler, catalog entry and model card.

The archive is self-describing: `task.json` (what the handler needs), `model_card.json` (how it was built and
how well it does) and `model-config.yaml` (TorchServe batching/workers, so any TorchServe, KServe's included,
serves it with the catalog's settings).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from contract.catalog import MAX_ACCURACY_DROP, REPO_ROOT, TaskSpec, task_document
from contract.logs import log_event
from contract.model_card import MODEL_CARD
from contract.serving import SERVING_FILE, with_changes
from contract.wire import TASK_SPEC_FILE
from modelops.package.onnx import choose_runtime
from modelops.tools import bin_path
from modelops.train.blend import BLEND_ROWS_FILE, read_scored_rows

logger = logging.getLogger(__name__)

HANDLERS_DIR = REPO_ROOT / "handlers"
CONTRACT_DIR = REPO_ROOT / "contract"


def new_version() -> str:
    """A sortable, unique-enough version: UTC build time to the second."""
    return time.strftime("%Y%m%d.%H%M%S", time.gmtime())


def torchserve_model_config(spec: TaskSpec) -> dict[str, Any]:
    return {
        "minWorkers": spec.workers,
        "maxWorkers": spec.workers,
        "batchSize": spec.batch_size,
        "maxBatchDelay": spec.max_batch_delay_ms,
        "responseTimeout": spec.response_timeout_s,
    }


# What training leaves beside the model for packaging, not for serving: its record (which becomes the model card)
# and the scored blend rows (which judge an optimised runtime).
TRAINING_ONLY = {"training.json", BLEND_ROWS_FILE}


def build_model_card(spec: TaskSpec, version: str, training: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": spec.task,
        "model_name": spec.model_name,
        "version": version,
        "labels": list(spec.labels),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "handler": spec.handler,
        **{k: v for k, v in training.items() if k != "task"},
    }


def package(
    spec: TaskSpec,
    trained_dir: Path,
    export_dir: Path,
    data_root: Path,
    version: str | None = None,
    variant_max_drop: float = MAX_ACCURACY_DROP,
) -> Path:
    """Build `<export_dir>/<model_name>.mar` from a folder written by `train`; returns its path.

    With an optimised runtime in the catalog, the variant is exported and scored on `data_root`'s validation
    split first (`export_onnx.choose_runtime`); the archive serves it only if it loses at most
    `variant_max_drop` of the fp32 accuracy.
    """
    training = json.loads((trained_dir / "training.json").read_text(encoding="utf-8"))
    version = version or new_version()
    recipe_name = training["recipe"]["name"]
    export_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"package-{spec.task}-") as staging_name:
        staging = Path(staging_name)
        for item in trained_dir.iterdir():
            if item.is_file() and item.name not in TRAINING_ONLY:
                shutil.copy2(item, staging / item.name)
        # the handlers and the contract they stand on package whole, as `handlers/` and `contract/` at the
        # archive root: the entry file imports from both
        package_root = staging / "package-root"
        for folder in (HANDLERS_DIR, CONTRACT_DIR):
            shutil.copytree(folder, package_root / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
        # the catalog's settings, then those training chose on the dev slice (blend weight, temperature)
        serving = with_changes(spec.serving_config(recipe_name), training.get("serving", {}))
        (staging / SERVING_FILE).write_text(serving.to_json(), encoding="utf-8")
        scored = read_scored_rows(trained_dir)
        runtime = choose_runtime(spec, staging, training, data_root, variant_max_drop, scored)
        serving = with_changes(serving, {"runtime": runtime["served"]})
        (staging / SERVING_FILE).write_text(serving.to_json(), encoding="utf-8")
        card = {**build_model_card(spec, version, training), "runtime": runtime}
        (staging / MODEL_CARD).write_text(json.dumps(card, indent=2), encoding="utf-8")
        # the task itself travels with its model: the gateway learns routes, limits and labels from it
        (staging / TASK_SPEC_FILE).write_text(json.dumps(task_document(spec), indent=2), encoding="utf-8")
        config_file = staging / "model-config.yaml"
        config_file.write_text(yaml.safe_dump(torchserve_model_config(spec)), encoding="utf-8")
        # a folder's contents land at the archive root, so `package-root` contributes `handlers/`
        extra = ",".join(str(p) for p in sorted(staging.iterdir()) if p != config_file)
        cmd = [
            bin_path("torch-model-archiver"),
            "--model-name",
            spec.model_name,
            "--version",
            version,
            "--handler",
            str(HANDLERS_DIR / spec.handler),
            "--extra-files",
            extra,
            "--config-file",
            str(config_file),
            "--export-path",
            str(export_dir),
            "--force",
        ]
        log_event(logger, "package.start", task=spec.task, version=version, export_dir=str(export_dir))
        subprocess.run(cmd, check=True)
    archive = export_dir / f"{spec.model_name}.mar"
    log_event(
        logger,
        "package.done",
        task=spec.task,
        version=version,
        archive=str(archive),
        bytes=archive.stat().st_size,
        seconds=round(time.perf_counter() - started, 1),
    )
    return archive
