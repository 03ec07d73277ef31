"""`python -m contract.healthcheck URL [--key-file FILE --key KIND]`: exit 0 when URL answers 200.

Container health checks with token auth: TorchServe's `/ping` needs a key too, so the check reads the
current key from TorchServe's key file (`--key management`) and asks the management API, which also proves
the key file the gateway and the sync read is in place. Standard library only (the key file is parsed by
`contract.torchserve`): it runs every few seconds.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

from contract.torchserve import parse_keys


def healthy(url: str, key_file: Path | None = None, kind: str = "management", timeout_s: float = 3.0) -> bool:
    request = urllib.request.Request(url)
    try:
        if key_file is not None:
            request.add_header("Authorization", f"Bearer {getattr(parse_keys(key_file), kind)}")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError, KeyError, TypeError):
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m contract.healthcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--key-file", type=Path, help="TorchServe's key_file.json (sends its key as a bearer token)")
    parser.add_argument("--key", default="management", choices=("management", "inference"))
    args = parser.parse_args(argv)
    sys.exit(0 if healthy(args.url, args.key_file, args.key) else 1)


if __name__ == "__main__":
    main()
