"""The Python services in front of TorchServe: the gateway, the UI and the bulk job worker, as service
descriptions; and a second gateway beside a stack, for the tests and benches that compare settings."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from contract.catalog import REPO_ROOT
from modelops.local.config import StackConfig, free_port
from modelops.local.s3 import default_s3_env
from modelops.local.services import Service, answers, start, stop


def upstream_entry(cfg: StackConfig) -> dict[str, str]:
    """This stack's TorchServe as one entry of the gateway's GATEWAY_UPSTREAMS list."""
    return {
        "name": "local",
        "inference_url": cfg.inference_url,
        "management_url": cfg.management_url,
        "metrics_url": cfg.metrics_url,
        "key_file": str(cfg.key_file),
    }


def gateway_env(cfg: StackConfig) -> dict[str, str]:
    """The gateway's upstream, and S3 for its bulk jobs."""
    return {"GATEWAY_UPSTREAMS": json.dumps([upstream_entry(cfg)]), **default_s3_env(cfg)}


def gateway(cfg: StackConfig, extra_env: dict[str, str] | None = None, uvicorn_args: Sequence[str] = ()) -> Service:
    """uvicorn serving the gateway; `extra_env` adds GATEWAY_* settings, `uvicorn_args` uvicorn flags (tests and
    benches use them)."""
    return Service(
        name="gateway",
        title="gateway",
        command=[
            sys.executable,
            "-m",
            "uvicorn",
            "gateway.main:create_app",
            "--factory",
            "--host",
            cfg.host,
            "--port",
            str(cfg.gateway_port),
            "--no-access-log",
            *uvicorn_args,
        ],
        # its models' descriptions outlive it: started again, it routes the tasks scaled to zero without waking them
        env={**gateway_env(cfg), "GATEWAY_DESCRIPTIONS_DIR": str(cfg.state_dir / "descriptions"), **(extra_env or {})},
        ready=answers(f"{cfg.gateway_url}/healthz"),
        url=cfg.gateway_url,
        ports=[("STACK_GATEWAY_PORT", cfg.gateway_port)],
    )


def ui(cfg: StackConfig) -> Service:
    """Streamlit, talking only to this stack's gateway."""
    return Service(
        name="ui",
        title="ui",
        command=[
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO_ROOT / "ui" / "app.py"),
            "--server.address",
            cfg.host,
            "--server.port",
            str(cfg.ui_port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        env={"UI_GATEWAY_URL": cfg.gateway_url, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT / "ui",
        ready=answers(f"{cfg.ui_url}/_stcore/health"),
        url=cfg.ui_url,
        ports=[("STACK_UI_PORT", cfg.ui_port)],
    )


def jobs_worker(cfg: StackConfig, extra_env: dict[str, str] | None = None) -> Service:
    """The bulk job worker (`modelops jobs worker`), calling this stack's gateway. It listens on nothing and is
    up as soon as it runs: it only polls S3 for work."""
    return Service(
        name="jobs",
        title="bulk job worker",
        command=[sys.executable, "-m", "modelops", "jobs", "worker"],
        env={**default_s3_env(cfg), "JOB_GATEWAY_URL": cfg.gateway_url, **(extra_env or {})},
    )


@contextlib.contextmanager
def second_gateway(
    cfg: StackConfig,
    extra_env: dict[str, str] | None = None,
    uvicorn_args: Sequence[str] = (),
    state_dir: Path | None = None,
) -> Iterator[StackConfig]:
    """Another gateway process on a free port in front of this stack's TorchServe, with its own GATEWAY_*
    settings or uvicorn flags: what tests of settings the stack's gateway does not have, and benches comparing
    two gateways side by side, run against. Its pid file and log go to `state_dir` (a temporary folder when
    None); it is stopped on exit. It follows the scaling policy of the stack's own gateway (starts cold tasks,
    scales nothing down) unless `extra_env` makes it the owner: one owner per stack, or two would undo each
    other's moves."""
    with contextlib.ExitStack() as cleanup:
        if state_dir is None:
            state_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="gateway-")))
        second = StackConfig(
            state_dir=state_dir,
            model_store=cfg.model_store,
            gateway_port=free_port(),
            inference_port=cfg.inference_port,
            management_port=cfg.management_port,
            metrics_port=cfg.metrics_port,
        )
        second.torchserve_dir.mkdir(parents=True, exist_ok=True)
        cleanup.callback(stop, second, "gateway")
        env = {**gateway_env(cfg), "GATEWAY_SCALING": "follow", **(extra_env or {})}
        start(second, gateway(second, extra_env=env, uvicorn_args=uvicorn_args))
        yield second
