"""The project installs as a package: `pip install .` into a fresh virtualenv from the gateway's lock alone (no
torch, no TorchServe), its console script starts the CLI, and the gateway app builds there without torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from contract.catalog import REPO_ROOT


def _source_copy(dest: Path) -> Path:
    """The files a clone has (tracked, and new ones git does not ignore), so the build leaves the checkout clean."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_pip_install_gives_a_torch_free_gateway_and_the_cli(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(source / "requirements" / "gateway.txt")], check=True)
    subprocess.run([*pip, f"{source}[gateway]"], check=True)

    cli = subprocess.run([str(venv / "bin" / "modelops"), "--help"], capture_output=True, text=True, check=True)
    assert "usage:" in cli.stdout
    assert "sync" in cli.stdout

    probe = (
        "import importlib.util, sys\n"
        "from gateway.main import create_app\n"
        "app = create_app()\n"
        "print(sorted(app.openapi()['paths']))\n"
        "print(importlib.util.find_spec('torch') is None, 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,  # not the checkout: the installed packages, not the source folders, are imported
        env={"MODEL_CATALOG": str(source / "models.toml"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    routes, torch_state = result.stdout.splitlines()
    assert all(route in routes for route in ("/v1/sentiment", "/v1/disaster", "/v1/pose", "/v1/models"))
    assert torch_state == "True False"  # torch is not even installed, and nothing tried to import it
