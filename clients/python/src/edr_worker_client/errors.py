"""Exceptions raised by the edr-worker connection manager.

Every failure to reach or hear from the workers raises: an outage must never
look like an empty cache (which would make a connector renegotiate every EDR).
"""

from __future__ import annotations


class EdrWorkerError(Exception):
    """Base class of every error raised by this package."""


class EdrValidationError(EdrWorkerError, ValueError):
    """An argument breaks the SDK's rules or the wire contract (nothing was sent)."""


class EdrWorkerTimeout(EdrWorkerError, TimeoutError):
    """No worker answered a lookup (or Kafka did not confirm a write) in time."""


class EdrWorkerReplyError(EdrWorkerError):
    """A worker answered a lookup with ``status: error`` or a malformed reply."""

    def __init__(self, op: str, reason: str) -> None:
        super().__init__(f"edr-worker error reply to {op}: {reason}")
        self.op = op
        self.reason = reason


class EdrWorkerUnavailable(EdrWorkerError, ConnectionError):
    """Redis could not be reached for a lookup."""


class EdrPublishError(EdrWorkerError):
    """Kafka reported a failed delivery of an event."""
