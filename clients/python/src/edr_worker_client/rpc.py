"""Lookups over Redis request/reply (schemas/README.md section 2).

One request is LPUSHed onto ``<prefix>:requests``; the reply is awaited with
BLPOP on a list name that is unique per request, so a late reply to a
request that already timed out can never be read as the answer to another.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any

import redis

from .errors import (
    EdrValidationError,
    EdrWorkerError,
    EdrWorkerReplyError,
    EdrWorkerTimeout,
    EdrWorkerUnavailable,
)

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_NOT_FOUND = "not_found"
STATUS_ERROR = "error"
MAX_REQUEST_BYTES = 64 * 1024
LIST_LIMIT_MAX = 1000

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_RPC_PREFIX = "edr"
DEFAULT_TIMEOUT_S = 5.0
WAIT_MS_MAX = 30000
#: the worker's own bound of a min_positions wait when wait_ms is absent
POSITIONS_WAIT_DEFAULT_S = 5.0
#: delete KEYS[1] only while it holds ARGV[1]: a lease that expired and was
#: taken by another replica is never released by its former holder
_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def _env_timeout() -> float:
    raw = os.environ.get("EDR_TIMEOUT_MS")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = int(raw)
    except ValueError:
        raise EdrValidationError("EDR_TIMEOUT_MS must be an integer number of milliseconds") from None
    if value <= 0:
        raise EdrValidationError("EDR_TIMEOUT_MS must be positive")
    return value / 1000.0


class EdrRpcClient:
    """A client of the workers' lookup channel.

    Thread-safe: redis-py's client keeps a connection pool, and every call
    uses its own reply list.

    :param redis_url: Redis URL (``EDR_REDIS_URL``, default ``redis://127.0.0.1:6379/0``).
    :param rpc_prefix: key prefix (``EDR_RPC_PREFIX``, default ``edr``).
    :param timeout: seconds to wait for a reply (``EDR_TIMEOUT_MS``, default 5 s).
    :param redis_client: an existing ``redis.Redis`` to use instead of ``redis_url``.
    """

    def __init__(self, redis_url: str | None = None, rpc_prefix: str | None = None,
                 timeout: float | None = None, *, redis_client: redis.Redis | None = None) -> None:
        self.redis_url = redis_url or os.environ.get("EDR_REDIS_URL") or DEFAULT_REDIS_URL
        self.rpc_prefix = rpc_prefix or os.environ.get("EDR_RPC_PREFIX") or DEFAULT_RPC_PREFIX
        self.timeout = float(timeout) if timeout is not None else _env_timeout()
        if self.timeout <= 0:
            raise EdrValidationError("timeout must be positive")
        self.request_queue = f"{self.rpc_prefix}:requests"
        self._client_id = uuid.uuid4().hex
        self._owns_redis = redis_client is None
        # The socket timeout must outlast the BLPOP wait or redis-py would
        # report a blocked read as a connection error.
        self._redis = redis_client if redis_client is not None else redis.Redis.from_url(
            self.redis_url, socket_timeout=self.timeout + 5.0, socket_connect_timeout=self.timeout,
            health_check_interval=30)

    def close(self) -> None:
        """Release the Redis connections (only when this client created them)."""
        if self._owns_redis:
            self._redis.close()

    def call(self, op: str, args: dict[str, Any] | None = None,
             timeout: float | None = None) -> tuple[str, Any]:
        """Send one request and return ``(status, result)`` for ``ok``/``not_found``.

        :raises EdrWorkerTimeout: no reply within the timeout.
        :raises EdrWorkerReplyError: an ``error`` reply or a reply that breaks the contract.
        :raises EdrWorkerUnavailable: Redis could not be reached.
        """
        wait = self.timeout if timeout is None else float(timeout)
        req_id = f"{self._client_id}-{uuid.uuid4().hex[:12]}"
        reply_to = f"{self.rpc_prefix}:reply:{req_id}"
        request: dict[str, Any] = {"id": req_id, "reply_to": reply_to, "op": op,
                                   "deadline_ms": int((time.time() + wait) * 1000)}
        if args is not None:
            request["args"] = args
        payload = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(payload) > MAX_REQUEST_BYTES:
            raise EdrValidationError(f"{op} request is {len(payload)} bytes, more than {MAX_REQUEST_BYTES}")
        started = time.monotonic()
        try:
            self._redis.lpush(self.request_queue, payload)
            # BLPOP takes fractional seconds (Redis >= 6); 0 would mean forever.
            popped = self._redis.blpop([reply_to], timeout=max(wait, 0.001))
        except redis.exceptions.TimeoutError as exc:
            raise EdrWorkerTimeout(f"Redis did not answer {op} in time: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise EdrWorkerUnavailable(f"Redis failed during {op}: {exc}") from exc
        if popped is None:
            log.warning("edr-worker lookup %s timed out after %.3f s (queue %s)", op, wait,
                        self.request_queue)
            raise EdrWorkerTimeout(
                f"no edr-worker answered {op} on {self.request_queue} within {wait:.3f} s")
        log.debug("edr-worker lookup %s answered in %.2f ms", op, (time.monotonic() - started) * 1000)
        return self._parse_reply(op, req_id, bytes(popped[1]) if not isinstance(popped[1], str)
                                 else popped[1].encode())

    @staticmethod
    def _parse_reply(op: str, req_id: str, raw: bytes) -> tuple[str, Any]:
        try:
            reply = json.loads(raw)
        except ValueError:
            raise EdrWorkerReplyError(op, "reply is not valid JSON") from None
        if not isinstance(reply, dict):
            raise EdrWorkerReplyError(op, "reply is not a JSON object")
        if reply.get("id") != req_id:
            raise EdrWorkerReplyError(op, "reply id does not match the request id")
        status = reply.get("status")
        if status == STATUS_ERROR:
            reason = reply.get("error")
            code = reply.get("code")  # v2: bad_request, unavailable, ... (absent from v1 workers)
            text = reason if isinstance(reason, str) else "unspecified error"
            err = EdrWorkerReplyError(op, f"{code}: {text}" if isinstance(code, str) else text)
            err.code = code if isinstance(code, str) else None  # type: ignore[attr-defined]
            raise err
        if status not in (STATUS_OK, STATUS_NOT_FOUND):
            raise EdrWorkerReplyError(op, f"unknown reply status {status!r}")
        return status, reply.get("result")

    # -- the operations of the contract ------------------------------------

    @staticmethod
    def _wait_args(args: dict[str, Any], wait_ms: int | None,
                   min_positions: dict[int, int] | None) -> float:
        """Adds the v2 wait members to args; the seconds the worker may wait."""
        wait_s = 0.0
        if wait_ms is not None:
            if isinstance(wait_ms, bool) or not isinstance(wait_ms, int) \
                    or not 0 <= wait_ms <= WAIT_MS_MAX:
                raise EdrValidationError(f"wait_ms must be an integer 0..{WAIT_MS_MAX}")
            args["wait_ms"] = wait_ms
            wait_s = wait_ms / 1000.0
        if min_positions is not None:
            positions: dict[str, int] = {}
            for partition, offset in min_positions.items():
                if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0 \
                        or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                    raise EdrValidationError("min_positions maps partitions (int >= 0) to "
                                             "offsets (int >= 0)")
                positions[str(partition)] = offset
            args["min_positions"] = positions
            if wait_ms is None:
                wait_s = POSITIONS_WAIT_DEFAULT_S
        return wait_s

    def wait_positions(self, counter_party_id: str, positions: dict[int, int],
                       timeout: float) -> bool:
        """Wait until the answering worker's state includes every event up to
        ``positions`` (partition -> offset, from Kafka's delivery reports): the
        read-your-writes wait. One request that the worker holds until then
        (``min_positions``, woken by the apply), not polling. True once
        reached, False when ``timeout`` seconds pass first.

        :raises EdrWorkerError: Redis failure or another worker error reply.
        """
        wait_ms = int(min(max(timeout, 0.0), WAIT_MS_MAX / 1000.0) * 1000)
        # the cheapest lookup there is: one page of one item of one party
        args: dict[str, Any] = {"counter_party_id_substring": counter_party_id, "limit": 1}
        self._wait_args(args, wait_ms, positions)
        try:
            self.call("list_connections", args, timeout=wait_ms / 1000.0 + self.timeout)
        except EdrWorkerReplyError as exc:
            if getattr(exc, "code", None) == "timeout":
                return False
            raise
        return True

    def get_connection(self, keys: dict[str, str], *, wait_ms: int | None = None,
                       min_positions: dict[int, int] | None = None) -> dict[str, Any]:
        """The stored entry at the four keys, or ``{}``.

        ``wait_ms``: wait that long for a match to be applied before answering
        ``{}``. ``min_positions``: answer only once the events up to these
        (partition -> offset) are applied (read-your-writes).
        """
        args: dict[str, Any] = dict(keys)
        wait_s = self._wait_args(args, wait_ms, min_positions)
        status, result = self.call("get_connection", args,
                                   timeout=self.timeout + wait_s if wait_s else None)
        if status == STATUS_NOT_FOUND:
            return {}
        if not isinstance(result, dict):
            raise EdrWorkerReplyError("get_connection", "result is not an object")
        return result

    def get_connection_transfer_id(self, keys: dict[str, str], *, wait_ms: int | None = None,
                                   min_positions: dict[int, int] | None = None) -> str | None:
        """The stored entry's transfer process id, or ``None`` (waits as get_connection)."""
        args: dict[str, Any] = dict(keys)
        wait_s = self._wait_args(args, wait_ms, min_positions)
        status, result = self.call("get_connection_transfer_id", args,
                                   timeout=self.timeout + wait_s if wait_s else None)
        if status == STATUS_NOT_FOUND:
            return None
        if not isinstance(result, str):
            raise EdrWorkerReplyError("get_connection_transfer_id", "result is not a string")
        return result

    def get_by_transfer_id(self, transfer_process_id: str, *, wait_ms: int | None = None,
                           min_positions: dict[int, int] | None = None) -> dict[str, Any]:
        """``{"counter_party_id", ..., "edr": entry}`` of the entry holding that
        transfer process id (v2 workers), or ``{}``."""
        if not isinstance(transfer_process_id, str) or not transfer_process_id:
            raise EdrValidationError("transfer_process_id must be a non-empty string")
        args: dict[str, Any] = {"transfer_process_id": transfer_process_id}
        wait_s = self._wait_args(args, wait_ms, min_positions)
        status, result = self.call("get_by_transfer_id", args,
                                   timeout=self.timeout + wait_s if wait_s else None)
        if status == STATUS_NOT_FOUND:
            return {}
        if not isinstance(result, dict):
            raise EdrWorkerReplyError("get_by_transfer_id", "result is not an object")
        return result

    @staticmethod
    def _filters(args: dict[str, Any], transfer_process_id: str | None, asset_id: str | None,
                 asset_id_prefix: str | None) -> None:
        for name, value in (("transfer_process_id", transfer_process_id),
                            ("asset_id", asset_id), ("asset_id_prefix", asset_id_prefix)):
            if value is not None:
                if not isinstance(value, str):
                    raise EdrValidationError(f"{name} must be a string")
                args[name] = value

    def count(self, counter_party_id_substring: str | None = None, *,
              transfer_process_id: str | None = None, asset_id: str | None = None,
              asset_id_prefix: str | None = None) -> int:
        """Number of stored entries matching every filter given (v2 filters
        besides the counter_party_id substring)."""
        args: dict[str, Any] = {} if counter_party_id_substring is None else {
            "counter_party_id_substring": counter_party_id_substring}
        self._filters(args, transfer_process_id, asset_id, asset_id_prefix)
        _, result = self.call("count", args)
        if not isinstance(result, int) or isinstance(result, bool):
            raise EdrWorkerReplyError("count", "result is not an integer")
        return result

    def list_connections(self, counter_party_id_substring: str | None = None, limit: int = 100,
                         cursor: str | None = None, *, transfer_process_id: str | None = None,
                         asset_id: str | None = None, asset_id_prefix: str | None = None
                         ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``(items, next_cursor)``; ``next_cursor`` is None on the last page."""
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise EdrValidationError(f"limit must be between 1 and {LIST_LIMIT_MAX}")
        args: dict[str, Any] = {"limit": limit}
        if counter_party_id_substring is not None:
            args["counter_party_id_substring"] = counter_party_id_substring
        if cursor is not None:
            args["cursor"] = cursor
        self._filters(args, transfer_process_id, asset_id, asset_id_prefix)
        _, result = self.call("list_connections", args)
        if not isinstance(result, dict) or not isinstance(result.get("items"), list):
            raise EdrWorkerReplyError("list_connections", "result has no items list")
        next_cursor = result.get("next_cursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise EdrWorkerReplyError("list_connections", "next_cursor is not a string or null")
        return result["items"], next_cursor

    def iter_connections(self, counter_party_id_substring: str | None = None,
                         page_size: int = LIST_LIMIT_MAX, *,
                         transfer_process_id: str | None = None, asset_id: str | None = None,
                         asset_id_prefix: str | None = None) -> list[dict[str, Any]]:
        """Every item matching all filters given, following the cursor across pages."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page, cursor = self.list_connections(counter_party_id_substring, page_size, cursor,
                                                 transfer_process_id=transfer_process_id,
                                                 asset_id=asset_id,
                                                 asset_id_prefix=asset_id_prefix)
            items.extend(page)
            if not cursor:
                return items
            if cursor in seen:  # a worker bug must not loop us forever
                raise EdrWorkerReplyError("list_connections", "next_cursor repeats")
            seen.add(cursor)

    # -- leases (the adapter's single-flight mode; plain Redis keys) --------

    def lease_key(self, connection_key: str) -> str:
        """``<prefix>:lease:<connection key>``: the single-flight lease of one connection."""
        return f"{self.rpc_prefix}:lease:{connection_key}"

    def try_lease(self, name: str, token: str, ttl_ms: int) -> bool:
        """``SET name token NX PX ttl_ms``: True when this call took the lease."""
        try:
            return bool(self._redis.set(name, token, nx=True, px=ttl_ms))
        except redis.exceptions.RedisError as exc:
            raise EdrWorkerUnavailable(f"Redis failed taking a lease: {exc}") from exc

    def lease_left_ms(self, name: str) -> int:
        """Milliseconds the lease has left; 0 when nobody holds it."""
        try:
            left = int(self._redis.pttl(name))
        except redis.exceptions.RedisError as exc:
            raise EdrWorkerUnavailable(f"Redis failed reading a lease: {exc}") from exc
        return max(left, 0)

    def release_lease(self, name: str, token: str) -> bool:
        """Delete the lease only if it is still ours (compare-and-delete in Lua)."""
        try:
            return bool(self._redis.eval(_RELEASE_LUA, 1, name, token))
        except redis.exceptions.RedisError as exc:
            raise EdrWorkerUnavailable(f"Redis failed releasing a lease: {exc}") from exc

    def ping(self) -> dict[str, Any]:
        """The answering worker's id, store kind and entry count."""
        _, result = self.call("ping")
        if not isinstance(result, dict):
            raise EdrWorkerReplyError("ping", "result is not an object")
        return result


__all__ = ["EdrRpcClient", "EdrWorkerError"]
