"""The published store in S3: versioned archives, the manifest naming each default, and the KServe view."""


class StoreError(RuntimeError):
    """S3 could not be reached or refused the operation; the message says which and why.

    Defined here, without boto3, so the CLI can name it in its error handling before any command runs."""
