"""What every part of the service agrees on, with light dependencies only (the standard library, pydantic,
python-json-logger): the model catalog, the log line format, TorchServe's key file, the S3 manifest, the
model card and the gateway's status answers (`/v1/models`, `/readyz`).

The gateway and the UI stand on this package and on nothing of the build (`modelops`); import-linter's
contracts in `pyproject.toml` keep it so.
"""
