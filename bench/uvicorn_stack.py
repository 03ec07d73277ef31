"""`python -m bench.uvicorn_stack`: the gateway under uvicorn's pure-Python HTTP stack (h11 + asyncio) against its
C one (httptools + uvloop), same code, same TorchServe, in one run.

uvicorn uses httptools and uvloop when they are installed and falls back to h11 and asyncio otherwise, so which
one a gateway runs is an install-time choice. This script starts one gateway of each kind in front of the
running stack's TorchServe (`make run`) and compares them side by side (`bench.side_by_side`).
"""

from __future__ import annotations

from contextlib import ExitStack

from bench.servers import second_gateway
from bench.side_by_side import alternate, parser
from contract.catalog import load_catalog
from modelops.local.config import StackConfig

STACKS = {
    "h11+asyncio": ["--http", "h11", "--loop", "asyncio"],
    "httptools+uvloop": ["--http", "httptools", "--loop", "uvloop"],
}


def main(argv: list[str] | None = None) -> None:
    args = parser("python -m bench.uvicorn_stack", __doc__.split("\n\n")[0]).parse_args(argv)
    cfg = StackConfig.from_env()
    with ExitStack() as running:
        gateways = {
            name: running.enter_context(second_gateway(cfg, uvicorn_args=flags)) for name, flags in STACKS.items()
        }
        alternate(gateways, load_catalog()[args.task], args)


if __name__ == "__main__":
    main()
