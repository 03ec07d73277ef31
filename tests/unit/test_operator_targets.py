"""The operator make targets (sync, build, models, rollback) talk to the caller's S3 when the caller names one,
and to the local stack's otherwise: the README promises the same commands work against AWS S3."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from contract.catalog import REPO_ROOT

# stands in for the virtualenv's python: prints the S3 settings the target's command would run with
PRINT_S3 = (
    'python3 -c \'import os; print(os.environ.get("AWS_ACCESS_KEY_ID", "-"), os.environ.get("AWS_ENDPOINT_URL", "-"))\''
)


def _run_target(target: str, local_env: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", target, f"PY={PRINT_S3}", f"LOCAL_S3_ENV={local_env}", "STAMP="],
        cwd=REPO_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize("target", ["sync", "build", "rollback"])
def test_the_callers_credentials_win_and_the_local_ones_fill_in(target: str, tmp_path: Path) -> None:
    local_env = tmp_path / "local-s3.env"
    local_env.write_text("AWS_ENDPOINT_URL=http://127.0.0.1:8333\nAWS_ACCESS_KEY_ID=local-key\n")
    assert _run_target(target, local_env) == "local-key http://127.0.0.1:8333"
    assert _run_target(target, local_env, AWS_ACCESS_KEY_ID="mine") == "mine -"
    assert _run_target(target, local_env, AWS_PROFILE="prod") == "- -"
    assert _run_target(target, tmp_path / "absent.env") == "- -"
