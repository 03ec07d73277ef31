"""Serving operations: sync TorchServe to the S3 manifest through its management API; container health checks."""
