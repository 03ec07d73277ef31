"""Structured logging: one JSON object per line, with an `event` name and the fields that explain it.

Operators grep and parse these; a sentence without the numbers that matter is not a log line.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter


class JsonFormatter(LibraryJsonFormatter):
    """python-json-logger with this project's line shape: `ts` (UTC, milliseconds), `level` (lower case),
    `logger`, `event`, then the fields passed with `log_event`; `exception` holds a traceback.

    The library replaced a hand-written formatter with the same output: 8.6 against 6.9 microseconds of CPU per
    line (median of 5 x 20,000 lines), and a gateway request logs one line: not a cost worth our own code."""

    def __init__(self) -> None:
        super().__init__(
            "{name}{message}",
            style="{",
            rename_fields={"name": "logger", "message": "event", "exc_info": "exception"},
            json_default=str,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        log_data["level"] = record.levelname.lower()
        super().add_fields(log_data, record, message_dict)


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send JSON lines to `stream`, by default stderr (stdout stays free for command results)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra=fields)
