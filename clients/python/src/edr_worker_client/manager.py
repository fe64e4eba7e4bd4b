"""A Tractus-X SDK connection manager backed by edr-worker.

Writes become events on Kafka (schemas/README.md section 1) that every worker
applies; reads are lookups over Redis request/reply (section 2) that any
worker answers. Several connector replicas using this manager therefore share
one EDR cache, where the SDK's own managers keep one per process (memory,
file) or scan an unindexed table (postgres).

Consistency: by default every write waits (bounded by ``apply_timeout``) until
a lookup sees its effect, so ``add_connection`` followed by
``get_connection`` -- the SDK consumer's own flow -- reads its write, and a
second ``delete_connection`` returns False as with the SDK's managers. With
the ``postgres`` store all workers answer from one table, so once one lookup
sees a write, every later lookup does. With the ``memory``/``file`` stores
each worker applies the log itself; a later lookup answered by a lagging
worker can briefly miss a write that another worker already showed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from tractusx_sdk.dataspace.managers.connection.base_connection_manager import BaseConnectionManager

from .errors import EdrPublishError, EdrValidationError, EdrWorkerError, EdrWorkerTimeout
from .events import (
    CONTENT_TYPE,
    EVENT_EXPIRED,
    EVENT_NEGOTIATED,
    EVENT_RENEWED,
    TRANSFER_ID_KEY,
    build_event,
    check_key_fields,
    connection_key,
    encode_event,
)
from .rpc import EdrRpcClient

_module_log = logging.getLogger(__name__)

DEFAULT_BROKERS = "127.0.0.1:9092"
DEFAULT_TOPIC = "edr.events"
DEFAULT_PUBLISH_TIMEOUT_S = 30.0
# Members the SDK's managers drop before storing (the provider id key is configurable).
_JSONLD_TYPE = "@type"
_JSONLD_CONTEXT = "@context"


def _default_source() -> str:
    return os.environ.get("EDR_SOURCE") or f"urn:connector:{socket.gethostname()}"


class EdrWorkerConnectionManager(BaseConnectionManager):
    """Drop-in replacement for the SDK's Memory/FileSystem/PostgresConnectionManager.

    Every setting defaults to the environment variable the worker reads:

    :param brokers: Kafka bootstrap servers (``EDR_KAFKA_BROKERS``, default ``127.0.0.1:9092``).
    :param topic: event topic (``EDR_TOPIC``, default ``edr.events``).
    :param redis_url: Redis URL of the lookup channel (``EDR_REDIS_URL``).
    :param rpc_prefix: lookup key prefix (``EDR_RPC_PREFIX``, default ``edr``).
    :param timeout: seconds to wait for a lookup reply (``EDR_TIMEOUT_MS``, default 5 s).
    :param source: CloudEvents ``source`` of the events (``EDR_SOURCE``, default
        ``urn:connector:<hostname>``).
    :param provider_id_key: entry member removed before storing, as in the SDK.
    :param publish_timeout: seconds to wait for Kafka's delivery report.
    :param wait_applied: after a write, wait until a lookup sees its effect
        (read-your-writes). If that takes longer than ``apply_timeout`` the
        write stays published (it will be applied) and a warning is logged.
    :param apply_timeout: bound of that wait in seconds (default: ``timeout``).
    :param producer_config: extra librdkafka producer properties.
    :param logger: logger to use (default: this module's); EDR contents are never logged.
    :param verbose: log each write at INFO instead of DEBUG, like the SDK's ``verbose``.
    :param rpc_client: an :class:`EdrRpcClient` to use instead of building one.

    Lookups raise :class:`~edr_worker_client.errors.EdrWorkerError` subclasses on
    timeouts, Redis failures and worker error replies -- never a silent ``{}``.
    """

    def __init__(self, brokers: str | None = None, topic: str | None = None,
                 redis_url: str | None = None, rpc_prefix: str | None = None,
                 timeout: float | None = None, *, source: str | None = None,
                 provider_id_key: str = "providerId",
                 publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT_S, wait_applied: bool = True,
                 apply_timeout: float | None = None,
                 producer_config: Mapping[str, Any] | None = None,
                 logger: logging.Logger | None = None, verbose: bool = False,
                 rpc_client: EdrRpcClient | None = None) -> None:
        # BaseConnectionManager.__init__ is abstract and raises: not called.
        self.brokers = brokers or os.environ.get("EDR_KAFKA_BROKERS") or DEFAULT_BROKERS
        self.topic = topic or os.environ.get("EDR_TOPIC") or DEFAULT_TOPIC
        self.rpc = rpc_client or EdrRpcClient(redis_url, rpc_prefix, timeout)
        self.timeout = self.rpc.timeout
        self.source = source or _default_source()
        self.provider_id_key = provider_id_key
        if publish_timeout <= 0:
            raise EdrValidationError("publish_timeout must be positive")
        self.publish_timeout = float(publish_timeout)
        self.wait_applied = wait_applied
        self.apply_timeout = float(apply_timeout) if apply_timeout is not None else self.timeout
        self.logger = logger or _module_log
        self.verbose = verbose
        conf: dict[str, Any] = {
            "bootstrap.servers": self.brokers,
            # Idempotence keeps retries from duplicating or reordering the
            # events of one connection (implies acks=all).
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(self.publish_timeout * 1000),
            "error_cb": self._on_kafka_error,
            # librdkafka's own log lines go through `logging`, not stderr.
            "logger": self.logger,
        }
        if producer_config:
            conf.update(producer_config)
        try:
            self._producer: Producer | None = Producer(conf)
        except KafkaException as exc:
            raise EdrValidationError(f"invalid Kafka producer setting: {exc}") from exc
        self._closed = False
        self._close_lock = threading.Lock()

    # -- life cycle -----------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is still queued (waiting at most ``timeout`` s, default
        ``publish_timeout``) and release the Kafka and Redis clients."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(self.publish_timeout if timeout is None else timeout)
        # Dropping the last reference destroys the librdkafka handle now: a
        # live client keeps refreshing the topic's metadata, which on brokers
        # with auto.create.topics.enable re-creates a topic deleted later.
        del producer
        self.rpc.close()

    def __enter__(self) -> EdrWorkerConnectionManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_kafka_error(self, err: KafkaError) -> None:
        # Broker-level errors (connection refused, ...) carry no EDR data.
        self.logger.warning("edr-worker-client: Kafka error: %s", err.str())

    def _note(self, msg: str, *args: object) -> None:
        self.logger.log(logging.INFO if self.verbose else logging.DEBUG, msg, *args)

    # -- SDK interface -------------------------------------------------------

    def add_connection(self, counter_party_id: str, counter_party_address: str,
                       query_checksum: str, policy_checksum: str,
                       connection_entry: dict) -> str | None:
        """Store ``connection_entry`` under the four keys (publishes ``edr.negotiated``).

        Validates like the SDK (a missing or empty ``transferProcessId`` raises),
        drops ``@type``, ``@context`` and the provider id key, waits for Kafka's
        delivery report (and, with ``wait_applied``, for a lookup to see it).

        :returns: the entry's transfer process id.
        :raises EdrValidationError: bad entry or keys (nothing is published).
        :raises EdrPublishError: Kafka refused the event.
        :raises EdrWorkerTimeout: no delivery report within ``publish_timeout``.
        """
        return self._put(EVENT_NEGOTIATED, counter_party_id, counter_party_address,
                         query_checksum, policy_checksum, connection_entry)

    def renew_connection(self, counter_party_id: str, counter_party_address: str,
                         query_checksum: str, policy_checksum: str,
                         connection_entry: dict) -> str | None:
        """Like :meth:`add_connection` but publishes ``edr.renewed`` (a refreshed token).

        Not part of the SDK interface; the stored result is the same.
        """
        return self._put(EVENT_RENEWED, counter_party_id, counter_party_address,
                         query_checksum, policy_checksum, connection_entry)

    def get_connection(self, counter_party_id: str, counter_party_address: str,
                       query_checksum: str, policy_checksum: str) -> dict:
        """The stored entry (a fresh dict the caller may change), or ``{}`` when there is none.

        :raises EdrWorkerError: timeout, Redis failure or worker error reply.
        """
        keys = self._lookup_keys(counter_party_id, counter_party_address, query_checksum,
                                 policy_checksum)
        if keys is None:
            return {}
        return self.rpc.get_connection(keys)

    def get_connection_transfer_id(self, counter_party_id: str, counter_party_address: str,
                                   query_checksum: str, policy_checksum: str) -> str | None:
        """The stored entry's ``transferProcessId``, or ``None`` when there is none.

        :raises EdrWorkerError: timeout, Redis failure or worker error reply.
        """
        keys = self._lookup_keys(counter_party_id, counter_party_address, query_checksum,
                                 policy_checksum)
        if keys is None:
            return None
        return self.rpc.get_connection_transfer_id(keys)

    def delete_connection(self, counter_party_id: str, counter_party_address: str,
                          query_checksum: str, policy_checksum: str) -> bool:
        """Remove the entry at the four keys; True if there was one.

        Publishes ``edr.expired`` carrying the looked-up transfer process id, so
        an EDR negotiated meanwhile under the same keys survives.
        """
        keys = self._lookup_keys(counter_party_id, counter_party_address, query_checksum,
                                 policy_checksum)
        if keys is None:
            return False
        transfer_id = self.rpc.get_connection_transfer_id(keys)
        if transfer_id is None:
            return False
        self._publish_expired([(keys, transfer_id)])
        self._note("edr-worker-client: published edr.expired for connection %s",
                   connection_key(**keys))
        if self.wait_applied:
            self._wait_until(lambda: self.rpc.get_connection_transfer_id(keys) != transfer_id,
                             "delete_connection")
        return True

    def clear_connections_by_party(self, counter_party_id_substring: str) -> int:
        """Remove every entry whose ``counter_party_id`` contains the substring.

        A BPN therefore clears both the bare-BPN and the DID-keyed entries.
        Each removal is an ``edr.expired`` carrying the listed transfer process
        id (a newer EDR negotiated meanwhile survives).

        :returns: the number of distinct ``counter_party_id`` values cleared
            (0 when nothing matched, so a second call returns 0).
        """
        if not isinstance(counter_party_id_substring, str):
            raise EdrValidationError("counter_party_id_substring must be a string")
        items = self.rpc.iter_connections(counter_party_id_substring)
        targets: list[tuple[dict[str, str], str]] = []
        parties: set[str] = set()
        for item in items:
            try:
                keys = {k: item[k] for k in ("counter_party_id", "counter_party_address",
                                             "query_checksum", "policy_checksum")}
                transfer_id = item[TRANSFER_ID_KEY]
            except (KeyError, TypeError):
                raise EdrWorkerError("list_connections item lacks a contract member") from None
            targets.append((keys, transfer_id))
            parties.add(keys["counter_party_id"])
        if not targets:
            return 0
        self._publish_expired(targets)
        self._note("edr-worker-client: published %d edr.expired events for %d parties",
                   len(targets), len(parties))
        if self.wait_applied:
            cleared = {(connection_key(**k), t) for k, t in targets}

            def gone() -> bool:
                remaining = self.rpc.iter_connections(counter_party_id_substring)
                return not any((connection_key(**_item_keys(i)), i.get(TRANSFER_ID_KEY)) in cleared
                               for i in remaining)

            self._wait_until(gone, "clear_connections_by_party")
        return len(parties)

    # -- internals -------------------------------------------------------------

    @staticmethod
    def _lookup_keys(counter_party_id: Any, counter_party_address: Any, query_checksum: Any,
                     policy_checksum: Any) -> dict[str, str] | None:
        """The request args, or None for keys nothing can be stored under."""
        try:
            check_key_fields(counter_party_id, counter_party_address, query_checksum,
                             policy_checksum)
        except EdrValidationError:
            return None
        return {"counter_party_id": counter_party_id,
                "counter_party_address": counter_party_address,
                "query_checksum": query_checksum, "policy_checksum": policy_checksum}

    def _put(self, event_type: str, counter_party_id: str, counter_party_address: str,
             query_checksum: str, policy_checksum: str, connection_entry: Mapping[str, Any]) -> str:
        if not isinstance(connection_entry, Mapping):
            raise EdrValidationError("connection_entry must be a dict")
        transfer_id = connection_entry.get(TRANSFER_ID_KEY)
        if transfer_id is None or transfer_id == "":
            raise EdrValidationError(
                "The transfer id key was not found or is empty! Not able to do the contract negotiation!")
        if not isinstance(transfer_id, str):
            raise EdrValidationError(f"{TRANSFER_ID_KEY} must be a string")
        check_key_fields(counter_party_id, counter_party_address, query_checksum, policy_checksum)
        saved = dict(connection_entry)
        for member in (_JSONLD_TYPE, _JSONLD_CONTEXT, self.provider_id_key, "providerId"):
            saved.pop(member, None)
        event = build_event(event_type, self.source, counter_party_id, counter_party_address,
                            query_checksum, policy_checksum, edr=saved)
        value = encode_event(event)
        key = connection_key(counter_party_id, counter_party_address, query_checksum,
                             policy_checksum)
        self._publish([(key, value)])
        self._note("edr-worker-client: published %s for connection %s", event_type, key)
        if self.wait_applied:
            # Compare with the entry as JSON carries it (tuples become lists, ...).
            expected = json.loads(value)["data"]["edr"]
            keys = self._lookup_keys(counter_party_id, counter_party_address, query_checksum,
                                     policy_checksum)
            assert keys is not None
            self._wait_until(lambda: self.rpc.get_connection(keys) == expected, "add_connection")
        return transfer_id

    def _publish_expired(self, targets: Iterable[tuple[dict[str, str], str]]) -> None:
        records = []
        for keys, transfer_id in targets:
            event = build_event(EVENT_EXPIRED, self.source, keys["counter_party_id"],
                                keys["counter_party_address"], keys["query_checksum"],
                                keys["policy_checksum"], transfer_process_id=transfer_id)
            records.append((connection_key(**keys), encode_event(event)))
        self._publish(records)

    def _publish(self, records: list[tuple[str, bytes]]) -> None:
        """Produce the records and wait until Kafka confirmed every one."""
        producer = self._producer
        if self._closed or producer is None:
            raise EdrWorkerError("the connection manager is closed")
        results: list[KafkaError | None | bool] = [None] * len(records)

        def on_delivery(index: int) -> Callable[[KafkaError | None, Any], None]:
            def report(err: KafkaError | None, _msg: Any) -> None:
                results[index] = err if err is not None else True
            return report

        # Slack past message.timeout.ms so librdkafka's own failure report wins.
        deadline = time.monotonic() + self.publish_timeout + 5.0
        headers: list[tuple[str, str | bytes | None]] = [("content-type", CONTENT_TYPE.encode("ascii"))]
        for index, (key, value) in enumerate(records):
            while True:
                try:
                    producer.produce(self.topic, value=value, key=key.encode("ascii"),
                                     headers=headers, on_delivery=on_delivery(index))
                    break
                except BufferError:
                    # Local queue full (a very large clear): let deliveries drain.
                    if time.monotonic() >= deadline:
                        raise EdrWorkerTimeout("Kafka producer queue stayed full") from None
                    producer.poll(0.05)
                except KafkaException as exc:
                    raise EdrPublishError(f"Kafka refused the event: {exc}") from exc
        # flush() serves delivery callbacks; another thread's flush may serve
        # ours, so loop on our own results rather than on flush's return.
        while any(r is None for r in results):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EdrWorkerTimeout(
                    f"Kafka did not confirm {sum(r is None for r in results)} event(s) within "
                    f"{self.publish_timeout:.1f} s")
            producer.flush(min(remaining, 0.5))
        failures = [r for r in results if isinstance(r, KafkaError)]
        if failures:
            raise EdrPublishError(
                f"Kafka failed to deliver {len(failures)} of {len(records)} event(s) to "
                f"{self.topic}: {failures[0].str()}")

    def _wait_until(self, predicate: Callable[[], bool], what: str) -> bool:
        """Poll ``predicate`` with backoff until true or ``apply_timeout``; never raises."""
        deadline = time.monotonic() + self.apply_timeout
        delay = 0.002
        while True:
            try:
                if predicate():
                    return True
            except EdrWorkerError as exc:
                self.logger.warning("edr-worker-client: %s: could not confirm the write: %s",
                                    what, exc)
                return False
            if time.monotonic() + delay > deadline:
                self.logger.warning(
                    "edr-worker-client: %s: write published but not yet visible after %.1f s",
                    what, self.apply_timeout)
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _item_keys(item: Mapping[str, Any]) -> dict[str, str]:
    return {k: item.get(k, "") for k in ("counter_party_id", "counter_party_address",
                                         "query_checksum", "policy_checksum")}


#: The name the issue uses; same class.
KafkaConnectionManager = EdrWorkerConnectionManager
