"""Shared fixtures. The integration fixtures start the real services: SeaweedFS (S3), TorchServe and the
gateway, on free loopback ports and in a temporary state folder, from the same service descriptions and through
the same supervisor (`modelops.local.services`) as `make run`.

Models for the tests are built by the real pipeline (train -> package -> publish -> sync) on a tiny slice of
the shared data: a couple of optimiser steps, so their predictions are not meaningful, only their shape.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from contract.catalog import TaskSpec, TextTask, load_catalog
from contract.logs import configure_logging
from modelops.build import build_archive
from modelops.local import s3, torchserve, web
from modelops.local.config import LOOPBACK, StackConfig
from modelops.local.services import Services, start, stop
from modelops.store.s3 import ModelStore, StoreLocation
from modelops.train.data import data_dir

TEST_BUCKET = "test-models"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(taken: set[int], with_grpc_offset: bool = False) -> int:
    """A free loopback port not handed out yet; SeaweedFS servers also need port + 10000 free for gRPC."""
    while True:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        grpc_clash = with_grpc_offset and (port + 10000 > 65535 or port + 10000 in taken or not _free(port + 10000))
        if port in taken or grpc_clash:
            continue
        taken.update({port, port + 10000} if with_grpc_offset else {port})
        return port


def make_stack_config(root: Path) -> StackConfig:
    taken: set[int] = set()
    return StackConfig(
        state_dir=root / "var",
        model_store=root / "model_store",
        gateway_port=free_port(taken),
        ui_port=free_port(taken),
        inference_port=free_port(taken),
        management_port=free_port(taken),
        metrics_port=free_port(taken),
        grpc_inference_port=free_port(taken),
        grpc_management_port=free_port(taken),
        s3_port=free_port(taken, with_grpc_offset=True),
        s3_internal_ports={name: free_port(taken, True) for name in ("master", "volume", "filer", "admin")},
    )


@dataclass
class Stack:
    cfg: StackConfig
    store: ModelStore
    catalog: dict[str, TaskSpec]
    archives: dict[str, Path]
    published: dict[str, dict[str, object]]

    @property
    def gateway(self) -> str:
        return self.cfg.gateway_url

    def sync(self) -> dict[str, str]:
        syncer = torchserve.syncer(self.cfg, self.catalog, self.store)
        try:
            return syncer.run_once()
        finally:
            syncer.mgmt.close()

    def ensure_torchserve(self) -> None:
        """Start TorchServe unless it runs, then sync: what a host does at boot or after a crash."""
        start(self.cfg, torchserve.service(self.cfg))
        failed = [o for o in self.sync().values() if o.startswith("failed")]
        assert not failed, (failed, self.torchserve_log_tail())

    def torchserve_log_tail(self, lines: int = 40) -> str:
        """The end of TorchServe's own log, where a worker that failed to start says why."""
        log = self.cfg.log_dir / "torchserve" / "ts_log.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@pytest.fixture(scope="session")
def catalog() -> dict[str, TaskSpec]:
    return load_catalog()


@pytest.fixture(scope="session")
def stack_root() -> Iterator[Path]:
    # Short path under /tmp: TorchServe's worker sockets live in it and Unix socket paths are capped at 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="mtc-", dir="/tmp"))
    yield root
    if not os.environ.get("KEEP_TEST_STATE"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_config(stack_root: Path) -> StackConfig:
    return make_stack_config(stack_root)


@pytest.fixture(scope="session")
def s3_store(stack_config: StackConfig) -> Iterator[ModelStore]:
    configure_logging("WARNING")
    cfg = stack_config
    names = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MODEL_BUCKET", "MODEL_PREFIX")
    saved = {k: os.environ.get(k) for k in names}
    try:
        start(cfg, s3.service(cfg))
        os.environ.update(s3.local_s3_env(cfg))
        # every process the tests start (gateway, job workers) finds the same store, jobs included
        os.environ.update({"MODEL_BUCKET": TEST_BUCKET, "MODEL_PREFIX": "ci"})
        store = ModelStore(StoreLocation(bucket=TEST_BUCKET, prefix="ci"))
        store.ensure_bucket()
        yield store
    finally:
        stop(cfg, "s3")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def archives(stack_root: Path, catalog: dict[str, TaskSpec]) -> dict[str, Path]:
    """One real archive per task, trained for two steps on 64 examples of the shared data.

    The recipes are mixed so that CI runs every training and serving path: sentiment `fast` (head+tail
    tokens, extra dataset, linear blend chosen on the dev slice and 40 rows its encoder never saw), disaster
    `full` (tweet normalisation, early stopping on the dev slice, blend chosen on the dev slice),
    pose `full` (augmented views, early stopping, flip test-time augmentation in the handler). Each archive
    serves the catalog's optimised runtime whatever it scores (`variant_max_drop=1.0`): on 16 validation
    examples one flipped answer is a 6-point drop, and which way it falls must not decide which serving path
    the tests exercise.
    """
    work = stack_root / "build"
    recipes = {"sentiment": "fast", "disaster": "full", "pose": "full"}
    return {
        name: build_archive(
            spec,
            recipes.get(name, "fast"),
            data_dir(),
            work,
            max_steps=2,
            train_examples=64,
            eval_examples=16,
            dev_examples=24,
            variant_max_drop=1.0,
            **({"blend_examples": 40} if isinstance(spec, TextTask) else {}),
        )
        for name, spec in catalog.items()
    }


@pytest.fixture(scope="session")
def live_stack(
    stack_config: StackConfig,
    s3_store: ModelStore,
    archives: dict[str, Path],
    catalog: dict[str, TaskSpec],
) -> Iterator[Stack]:
    """S3 + TorchServe + gateway, with every catalog model published to S3 and synced into TorchServe."""
    cfg = stack_config
    published = {name: s3_store.publish(path) for name, path in archives.items()}
    running = Stack(cfg, s3_store, catalog, archives, published)
    # The tests of scaling run gateways of their own that own the scaling policy (short idle periods, small
    # budgets): this one follows, so it never scales down what they start.
    services = Services(cfg, [torchserve.service(cfg), web.gateway(cfg, {"GATEWAY_SCALING": "follow"})])
    try:  # stop what was started even when start-up itself fails
        running.ensure_torchserve()
        services.start()  # TorchServe reused, then the gateway
        yield running
    finally:
        services.stop()


@pytest.fixture
def client(live_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_stack.gateway, timeout=60) as http:
        yield http
