"""The whole local stack (`make run`, `make stop`): which services it runs, and in which order.

S3 first (the model store), TorchServe (serving what is synced from S3), the gateway (in front of TorchServe),
then the UI and the bulk job worker, which both call the gateway.
"""

from __future__ import annotations

from modelops.local import s3, torchserve, web
from modelops.local.config import StackConfig
from modelops.local.services import Services, stop


def services(cfg: StackConfig, gateway_env: dict[str, str] | None = None) -> Services:
    """The stack's services in start order; `gateway_env` adds GATEWAY_* settings (`make run`'s training status)."""
    return Services(
        cfg,
        [s3.service(cfg), torchserve.service(cfg), web.gateway(cfg, gateway_env), web.ui(cfg), web.jobs_worker(cfg)],
    )


def stop_all(cfg: StackConfig) -> list[str]:
    """Stop a supervisor running elsewhere (it stops its services), then anything left, the last started first."""
    stopped = ["supervisor"] if stop(cfg, "supervisor", timeout_s=60, group=False) else []
    return stopped + services(cfg).stop()
