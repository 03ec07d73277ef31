"""How a call to the TorchServes can end without an answer to pass on, in TorchServe's terms.

They carry no HTTP status for the gateway's caller: `gateway.upstream` maps them to API errors, in one place.
Each one's text is its reason, worded for a person.
"""

from __future__ import annotations


class TorchServeFailure(Exception):
    """A call to the TorchServes that ended without an answer to pass on."""


class Unreachable(TorchServeFailure):
    """An upstream could not be asked (connection failed, or it rejects our key): try another one. Raised by the
    pool when no upstream could be asked at all."""


class UpstreamTimeout(TorchServeFailure):
    """No answer within the timeout: the pool sends a prediction again while it has a retry left."""

    def __init__(self, upstream: str, seconds: float) -> None:
        super().__init__(f"TorchServe {upstream} did not answer within {seconds:g}s")


class NotReady(TorchServeFailure):
    """The model cannot answer yet: not loaded, no worker free, its worker died, or no worker described it."""


class Refused(TorchServeFailure):
    """An upstream's final answer to a prediction was an error no other try would change."""

    def __init__(self, upstream: str, status: int, detail: str) -> None:
        super().__init__(f"TorchServe {upstream} answered HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class Starting(TorchServeFailure):
    """The model was scaled to zero and its worker is still starting after the caller's wait."""


class CapacityFull(TorchServeFailure):
    """A worker of the model cannot start within the worker-memory budget now: every worker that could make
    room is busy or kept warm."""
