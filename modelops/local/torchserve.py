"""TorchServe on this machine: its config at the stack's addresses, what a start needs before the process, its
service description, and the clients that talk to it (management, S3 -> TorchServe sync)."""

from __future__ import annotations

from pathlib import Path

import httpx

from contract.catalog import REPO_ROOT, TaskSpec
from contract.torchserve import bearer, read_keys
from modelops.local.config import StackConfig
from modelops.local.services import Service
from modelops.serve.sync import Syncer
from modelops.serve.torchserve import ManagementClient
from modelops.store.s3 import ModelStore
from modelops.tools import bin_path

CONFIG_TEMPLATE = REPO_ROOT / "config.properties"


def write_config(cfg: StackConfig, template: Path = CONFIG_TEMPLATE) -> Path:
    """The project's config.properties with this stack's addresses and model store filled in."""
    overrides = {
        "inference_address": cfg.inference_url,
        "management_address": cfg.management_url,
        "metrics_address": cfg.url(cfg.metrics_port),
        "model_store": str(cfg.model_store),
        "grpc_inference_port": str(cfg.grpc_inference_port),
        "grpc_management_port": str(cfg.grpc_management_port),
    }
    lines = []
    for line in template.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key}={overrides.pop(key)}" if key in overrides and "=" in line else line)
    lines.extend(f"{k}={v}" for k, v in overrides.items())
    cfg.torchserve_dir.mkdir(parents=True, exist_ok=True)
    cfg.torchserve_config.write_text("\n".join(lines) + "\n")
    return cfg.torchserve_config


def prepare(cfg: StackConfig, template: Path = CONFIG_TEMPLATE) -> None:
    """Everything a TorchServe start needs before the process: its config at this stack's addresses, the model
    store, no stale key file. What `make run` does before it spawns `command` and `modelops torchserve` (a
    container's entry point) before it becomes it."""
    write_config(cfg, template)
    cfg.model_store.mkdir(parents=True, exist_ok=True)
    cfg.key_file.unlink(missing_ok=True)  # a stale key file from a killed run would hold dead keys


def command(cfg: StackConfig) -> list[str]:
    """TorchServe in the foreground on the prepared config; run in `cfg.torchserve_dir`, where it writes its
    key file."""
    return [
        bin_path("torchserve"),
        "--foreground",
        "--ts-config",
        str(cfg.torchserve_config),
        "--model-store",
        str(cfg.model_store),
        "--no-config-snapshots",
    ]


# The environment TorchServe and its workers run with, here and in the images and the EC2 unit (a unit test
# holds those to it).
WORKER_ENV = {
    # One intra-op thread per worker (the handler sets torch's too): ~3x faster under load on 2 cores.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    # The JVM's native memory and the workers (who inherit it): glibc keeps an arena per thread otherwise.
    "MALLOC_ARENA_MAX": "2",
    # A fixed threshold: a batch's activations (over 128 KiB) are mapped and unmapped, not kept in the heap.
    # glibc's own threshold climbs to the largest block freed, so a worker kept its peak batch's memory (the
    # pose workers held 40 MiB PSS less each after `bench.soak`, at the same throughput).
    "MALLOC_MMAP_THRESHOLD_": "131072",
}


def service(cfg: StackConfig, template: Path = CONFIG_TEMPLATE) -> Service:
    """TorchServe with `template` (this project's config.properties, or another such as the KServe view's) at
    this stack's addresses; ready once its management API answers."""
    tmp = cfg.torchserve_dir / "tmp"

    def prepare_here() -> None:
        prepare(cfg, template)
        tmp.mkdir(parents=True, exist_ok=True)

    def management_answers() -> bool:
        # A TorchServe with token authorization off writes no key file and needs no key.
        headers = bearer(read_keys(cfg.key_file).management) if cfg.key_file.exists() else {}
        return httpx.get(f"{cfg.management_url}/models", headers=headers, timeout=2).status_code == 200

    return Service(
        name="torchserve",
        title="TorchServe",
        command=command(cfg),
        env={
            # TorchServe keeps its pid file in the temp dir: one temp dir per stack lets stacks coexist.
            "TMPDIR": str(tmp),
            "TEMP": str(tmp),
            "LOG_LOCATION": str(cfg.log_dir / "torchserve"),
            "METRICS_LOCATION": str(cfg.log_dir / "torchserve"),
            **WORKER_ENV,
        },
        cwd=cfg.torchserve_dir,
        prepare=prepare_here,
        ready=management_answers,
        ready_timeout_s=120,
        url=cfg.inference_url,
        ports=[
            ("STACK_INFERENCE_PORT", cfg.inference_port),
            ("STACK_MANAGEMENT_PORT", cfg.management_port),
            ("STACK_METRICS_PORT", cfg.metrics_port),
            ("STACK_GRPC_INFERENCE_PORT", cfg.grpc_inference_port),
            ("STACK_GRPC_MANAGEMENT_PORT", cfg.grpc_management_port),
        ],
    )


def management_client(cfg: StackConfig) -> ManagementClient:
    return ManagementClient(cfg.management_url, cfg.key_file)


def syncer(cfg: StackConfig, catalog: dict[str, TaskSpec], store: ModelStore) -> Syncer:
    """The S3 -> TorchServe sync for this stack; its status goes to `var/run/sync-status.json`."""
    return Syncer(
        catalog,
        store,
        cfg.model_store,
        management_client(cfg),
        inference_url=cfg.inference_url,
        status_file=cfg.run_dir / "sync-status.json",
    )
