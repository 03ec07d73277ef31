"""`make test` on a bare machine: scripts/test-prerequisites.sh installs the system tools the tests use when it
may (root or passwordless sudo), and otherwise stops at once with the one command to run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from contract.catalog import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "test-prerequisites.sh"
ALL_TOOLS = (
    "chromium docker-compose systemd caddy nodejs npm podman runc golang-github-containernetworking-plugin-dnsname"
    " debootstrap"
)


def _bare_machine(tmp_path: Path, uid: int) -> tuple[Path, Path]:
    """A PATH holding none of the tools, an `id` answering `uid` and an `apt-get` that records its calls."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-calls"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "env").write_text('#!/bin/sh\nshift\nexec "$@"\n')  # `env VAR=... cmd`: drop the assignment
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    data = tmp_path / "data" / "imdb"
    data.mkdir(parents=True)
    (data / "reviews.csv").write_text("text,label\n")
    return bin_dir, calls


def _run(bin_dir: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env={"PATH": str(bin_dir), "DATA_DIR": str(data_dir), "CNI_PLUGIN_DIR": str(bin_dir / "no-cni")},
        capture_output=True,
        text=True,
        check=False,
    )


def test_without_root_or_sudo_it_stops_at_once_with_the_install_line(tmp_path: Path) -> None:
    bin_dir, calls = _bare_machine(tmp_path, uid=1000)
    result = _run(bin_dir, tmp_path / "data")
    assert result.returncode == 1
    assert f"sudo apt-get install -y --no-install-recommends {ALL_TOOLS}" in result.stderr
    assert not calls.exists()


def test_as_root_it_installs_what_is_missing(tmp_path: Path) -> None:
    bin_dir, calls = _bare_machine(tmp_path, uid=0)
    result = _run(bin_dir, tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["update -qq", f"install -y -qq --no-install-recommends {ALL_TOOLS}"]


def test_missing_training_data_is_named(tmp_path: Path) -> None:
    bin_dir, _ = _bare_machine(tmp_path, uid=0)
    result = _run(bin_dir, tmp_path / "nowhere")
    assert result.returncode == 1
    assert f"training data not found at {tmp_path / 'nowhere'}" in result.stderr
