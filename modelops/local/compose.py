"""`python -m modelops.local.compose [FOLDER]`: the secrets `docker-compose.yml` reads, generated once.

- `s3-identities.json`: SeaweedFS's identity file (the S3 service refuses anonymous access);
- `aws-credentials`: the same key pair as an AWS shared-credentials file. The sync and seed containers point
  `AWS_SHARED_CREDENTIALS_FILE` at it, so boto3 finds the keys through the standard AWS chain, as it would
  find an instance role on EC2.

They are written under `var/compose/` (git-ignored), never printed, and an existing pair is kept, so
running it again does not lock out data already in S3. The folder is mode 700, so no other user of the host
can reach them; the files themselves are 644 because Compose bind-mounts secret files with their host
owner and mode (outside Swarm it ignores `uid`/`mode`), and the containers run as uid 10001.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from contract.catalog import STATE_DIR
from modelops.local.s3 import new_s3_credentials, s3_identities, write_private

DEFAULT_DIR = STATE_DIR / "compose"


def write_compose_secrets(folder: Path) -> list[Path]:
    identities, credentials = folder / "s3-identities.json", folder / "aws-credentials"
    if identities.exists() and credentials.exists():
        return []
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    access_key, secret_key = new_s3_credentials()
    write_private(identities, json.dumps(s3_identities(access_key, secret_key)), mode=0o644)
    ini = f"[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
    write_private(credentials, ini, mode=0o644)
    return [identities, credentials]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else DEFAULT_DIR
    written = write_compose_secrets(folder)
    print(f"wrote {', '.join(map(str, written))}" if written else f"kept the existing secrets in {folder}")


if __name__ == "__main__":
    main()
