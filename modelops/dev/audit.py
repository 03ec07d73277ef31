"""`python -m modelops.dev.audit`: check the pinned requirements against known vulnerabilities with pip-audit.

pip-audit alone prints "No known vulnerabilities found" even when it could audit nothing (a package its
vulnerability service does not know, or a service it cannot reach, is only "skipped"). This wrapper says how
many packages were actually audited, lists the skipped ones with pip-audit's reason, and fails on any
vulnerability found. With `--strict` it also fails when anything could not be audited.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from contract.catalog import REPO_ROOT
from modelops.tools import bin_path

REQUIREMENTS = ("requirements/base.txt", "requirements/dev.txt")


def run_pip_audit(service: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="audit-") as scratch:
        report = Path(scratch) / "report.json"
        command = [bin_path("pip-audit"), "--progress-spinner", "off", "-s", service, "-f", "json", "-o", str(report)]
        for requirements in REQUIREMENTS:
            command += ["-r", str(REPO_ROOT / requirements)]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        if not report.exists():
            raise SystemExit(f"pip-audit failed (exit {finished.returncode}): {finished.stderr.strip()[-500:]}")
        return json.loads(report.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelops.dev.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", default="pypi", choices=("pypi", "osv"), help="pip-audit vulnerability service")
    parser.add_argument("--strict", action="store_true", help="fail when any package could not be audited")
    args = parser.parse_args(argv)
    report = run_pip_audit(args.service)
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    audited = len(dependencies) - len(skipped)
    counts = f"{len(dependencies)} pinned packages, {audited} audited, {len(skipped)} not audited"
    print(f"pip-audit ({args.service}): {counts}")
    for dep in vulnerable:
        ids = ", ".join(
            v["id"] + (f" (fixed in {', '.join(v['fix_versions'])})" if v.get("fix_versions") else "")
            for v in dep["vulns"]
        )
        print(f"VULNERABLE {dep['name']} {dep['version']}: {ids}")
    if skipped:
        reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
        print(f"not audited: {', '.join(d['name'] for d in skipped)}")
        print(f"why: {'; '.join(reasons)}")
    if vulnerable:
        sys.exit(1)
    if skipped and args.strict:
        sys.exit(2)
    print("no known vulnerabilities in the audited packages" if audited else "NOTHING WAS AUDITED")


if __name__ == "__main__":
    main()
