"""edr-worker client: a Tractus-X SDK connection manager backed by edr-worker.

Usage (where the SDK takes a ``connection_manager``)::

    from edr_worker_client import EdrWorkerConnectionManager
    manager = EdrWorkerConnectionManager()  # settings from EDR_* variables
"""

from .errors import (
                     EdrPublishError,
                     EdrValidationError,
                     EdrWorkerError,
                     EdrWorkerReplyError,
                     EdrWorkerTimeout,
                     EdrWorkerUnavailable,
)
from .events import build_event, connection_key, encode_event
from .manager import EdrWorkerConnectionManager, KafkaConnectionManager
from .rpc import EdrRpcClient

__version__ = "0.2.0"

__all__ = [
    "EdrPublishError",
    "EdrRpcClient",
    "EdrValidationError",
    "EdrWorkerConnectionManager",
    "EdrWorkerError",
    "EdrWorkerReplyError",
    "EdrWorkerTimeout",
    "EdrWorkerUnavailable",
    "KafkaConnectionManager",
    "build_event",
    "connection_key",
    "encode_event",
]
