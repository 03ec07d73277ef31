"""`python -m bench.gateway_versions --base REV`: the gateway code of a git revision against the working tree's,
in front of the same running TorchServe (`make run`), in one run.

A change meant to save the gateway CPU is judged here rather than by two `make bench` runs minutes apart, whose
difference this VM's noise swamps. The revision is checked out into a temporary git worktree, and uvicorn
imports the gateway (and the packages it stands on) from there (`--app-dir`); the other gateway runs the working
tree. Both get the same settings and are compared side by side (`bench.side_by_side`).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.servers import second_gateway
from bench.side_by_side import Figures, alternate, parser
from contract.catalog import REPO_ROOT, load_catalog
from modelops.local.config import StackConfig


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout.strip()


def compare(cfg: StackConfig, revision: str, args: argparse.Namespace) -> Figures:
    """The gateway at `revision` and the working tree's, side by side in front of `cfg`'s TorchServe."""
    base = _git("rev-parse", "--short", revision)
    with ExitStack() as running, tempfile.TemporaryDirectory(prefix="bench-gateway-base-") as scratch:
        tree = Path(scratch) / base
        _git("worktree", "add", "--detach", str(tree), base)
        running.callback(_git, "worktree", "remove", "--force", str(tree))
        gateways = {
            f"base {base}": running.enter_context(second_gateway(cfg, uvicorn_args=["--app-dir", str(tree)])),
            "working tree": running.enter_context(second_gateway(cfg)),
        }
        return alternate(gateways, load_catalog()[args.task], args)


def main(argv: list[str] | None = None) -> None:
    options = parser("python -m bench.gateway_versions", __doc__.split("\n\n")[0])
    options.add_argument("--base", default="HEAD", help="the git revision to compare with (default HEAD)")
    args = options.parse_args(argv)
    compare(StackConfig.from_env(), args.base, args)


if __name__ == "__main__":
    main()
