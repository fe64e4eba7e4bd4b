"""One connector replica in its own process, for the single-flight tests.

``replica`` runs in a ``multiprocessing`` child (spawn start method): it builds
its own adapter (``single_flight=True``) and its own SDK
``ConnectorConsumerService`` against the parent's fake EDC, says ``ready``,
waits for ``go``, says ``calling`` and asks for the transfer id, then reports
``("ok", pid, transfer id)`` or ``("error", pid, reason)`` on ``messages``.
"""

from __future__ import annotations

import os
import types
from typing import Any


def replica(cfg: dict[str, Any], messages: Any, go: Any) -> None:
    from edr_worker_client import EdrWorkerConnectionManager
    from test_sdk_service import consumer_service, request_args

    pid = os.getpid()
    edc = types.SimpleNamespace(**cfg["edc"])
    manager = EdrWorkerConnectionManager(
        brokers=cfg["brokers"], topic=cfg["topic"], redis_url=cfg["redis_url"],
        rpc_prefix=cfg["rpc_prefix"], timeout=5.0, source=f"urn:connector:replica-{pid}",
        single_flight=True, lease_ttl=cfg["lease_ttl"])
    try:
        service = consumer_service(edc, manager, cfg["version"])
        args = request_args(edc, cfg["version"])
        messages.put(("ready", pid, None))
        if not go.wait(120):
            messages.put(("error", pid, "never told to go"))
            return
        messages.put(("calling", pid, None))
        try:
            messages.put(("ok", pid, service.get_transfer_id(**args)))
        except Exception as exc:  # reported to the test, which fails on it
            messages.put(("error", pid, repr(exc)))
    finally:
        manager.close()
