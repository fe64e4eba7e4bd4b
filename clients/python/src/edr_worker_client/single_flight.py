"""Single-flight: one negotiation per connection across replicas (opt-in).

With a shared cache, replicas that miss the same connection at the same
moment would all negotiate. In single-flight mode the manager's
``get_connection_transfer_id`` -- the lookup the SDK's consumer service makes
before it negotiates -- turns a miss into a lease race instead:

- the replica that takes the lease (Redis ``SET <prefix>:lease:<connection
  key> token NX PX ttl``) gets ``None`` and negotiates, as the SDK does on a
  miss; its ``add_connection`` releases the lease once the entry is visible
  (compare-and-delete in Lua, so an expired lease that another replica took
  is never released by its former holder);
- every other replica waits for the entry with the lookup's ``wait_ms``
  (schemas/README.md section 2), bounded by what the lease has left, and
  returns the transfer id the holder stored, without negotiating;
- a holder that dies (or whose negotiation fails) never releases: its lease
  expires after ``ttl``, the waiters' waits end with it, and the next replica
  to take the lease negotiates.

The lease must outlast a negotiation: one that takes longer than ``ttl`` lets
a second replica in.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from .events import connection_key
from .rpc import WAIT_MS_MAX, EdrRpcClient

#: the shortest wait for an entry while another replica holds the lease
_MIN_WAIT_MS = 50


class SingleFlight:
    """The lease bookkeeping of one manager (thread-safe)."""

    def __init__(self, rpc: EdrRpcClient, ttl: float, max_wait: float,
                 logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        if ttl <= 0 or max_wait <= 0:
            raise ValueError("lease_ttl and single_flight_wait must be positive")
        self.rpc = rpc
        self.ttl_ms = max(int(ttl * 1000), 1)
        self.max_wait = float(max_wait)
        self.logger = logger
        self._held: dict[str, tuple[str, str, int]] = {}  # key -> (lease, token, thread)
        self._lock = threading.Lock()

    def after_miss(self, keys: dict[str, str]) -> str | None:
        """Called after a lookup of ``keys`` found nothing.

        :returns: the transfer id another replica stored meanwhile, or
            ``None`` when this caller holds the lease and must negotiate (also
            after ``max_wait`` s without the lease or an entry: then a warning
            is logged, and availability wins over deduplication).
        """
        key = connection_key(**keys)
        name = self.rpc.lease_key(key)
        me = threading.get_ident()
        with self._lock:
            held = self._held.get(key)
        if held is not None and held[2] == me:
            return None  # our own lease: a retry after a failed negotiation
        deadline = time.monotonic() + self.max_wait
        while True:
            token = uuid.uuid4().hex
            if self.rpc.try_lease(name, token, self.ttl_ms):
                with self._lock:
                    self._held[key] = (name, token, me)
                # the previous holder may have stored it just before releasing
                transfer_id = self.rpc.get_connection_transfer_id(keys)
                if transfer_id is not None:
                    self.release(key)
                    return transfer_id
                self.logger.debug("edr-worker-client: single-flight: lease taken for "
                                  "connection %s: negotiating", key)
                return None
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                self.logger.warning("edr-worker-client: single-flight: no entry and no lease "
                                    "for connection %s after %.1f s: negotiating anyway", key,
                                    self.max_wait)
                return None
            left = self.rpc.lease_left_ms(name)
            wait_ms = int(min(max(left, _MIN_WAIT_MS), WAIT_MS_MAX, max(remaining_ms, 1)))
            transfer_id = self.rpc.get_connection_transfer_id(keys, wait_ms=wait_ms)
            if transfer_id is not None:
                return transfer_id

    def release(self, key: str) -> None:
        """Release this manager's lease on connection ``key``, if it holds one."""
        with self._lock:
            held = self._held.pop(key, None)
        if held is None:
            return
        try:
            self.rpc.release_lease(held[0], held[1])
        except Exception as exc:  # it expires by itself; never fail the write for it
            self.logger.warning("edr-worker-client: single-flight: could not release the "
                                "lease of connection %s (it expires in at most %d ms): %s",
                                key, self.ttl_ms, exc)
