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
import re
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
from .single_flight import SingleFlight

_module_log = logging.getLogger(__name__)

DEFAULT_BROKERS = "127.0.0.1:9092"
DEFAULT_TOPIC = "edr.events"
DEFAULT_PUBLISH_TIMEOUT_S = 30.0
# Members the SDK's managers drop before storing (the provider id key is configurable).
_JSONLD_TYPE = "@type"
_JSONLD_CONTEXT = "@context"


DEFAULT_PROVIDER_ID_KEY = "providerId"
DEFAULT_EDRS_KEY = "edrs"
#: The SDK managers' storage arguments: accepted, logged, ignored (the worker stores).
_SDK_STORAGE_ARGS = ("engine", "table_name", "path", "file_path", "persist_interval")
_UNSET: Any = object()

# The SDK managers' positional orders (tractusx-sdk 0.8.0-0.8.3).
_ORDER_MEMORY = ("provider_id_key", "edrs_key", "logger", "verbose")
_ORDER_FILE = ("path", "persist_interval")
_ORDER_POSTGRES_MEMORY = ("engine", "provider_id_key", "table_name", "edrs_key", "logger",
                          "verbose")
_ORDER_POSTGRES_REFRESH = ("engine", "persist_interval", "provider_id_key", "table_name",
                           "edrs_key", "logger", "verbose")
_ORDER_POSTGRES = ("engine", "provider_id_key", "table_name", "logger", "verbose")
_BROKER_LIST = re.compile(r"^[^\s/,]+:\d+(,[^\s/,]+:\d+)*$")
_PATH_PREFIXES = ("/", "./", "../", "~")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sdk_positional(args: tuple[Any, ...]) -> tuple[str | None, dict[str, Any]]:
    """Name the positional arguments after the SDK manager whose signature they fit.

    - a ``str`` first: ``MemoryConnectionManager(provider_id_key, edrs_key,
      logger, verbose)``; but ``FileSystemConnectionManager(path,
      persist_interval)`` when the second is a number or the first looks like
      a file (ends with ``.json`` or starts with ``/``, ``./``, ``../``, ``~``);
    - anything else first (an SQLAlchemy engine or session):
      ``PostgresMemoryRefreshConnectionManager(engine, persist_interval, ...)``
      when the second is a number, ``PostgresConnectionManager(engine,
      provider_id_key, table_name, logger, verbose)`` when the fourth is a
      logger, else ``PostgresMemoryConnectionManager(engine, provider_id_key,
      table_name, edrs_key, logger, verbose)``.

    A first ``str`` shaped like ``host:port`` raises TypeError: before 0.2 the
    first positional argument was the Kafka brokers, now ``brokers=`` is
    keyword-only and silently reading it as a provider id key would be wrong.
    """
    if not args:
        return None, {}
    first = args[0]
    if isinstance(first, str):
        if _BROKER_LIST.match(first):
            raise TypeError("the adapter's settings are keyword-only: pass brokers=%r" % first)
        looks_like_file = first.endswith(".json") or first.startswith(_PATH_PREFIXES)
        if looks_like_file or (len(args) > 1 and _is_number(args[1])):
            name, order = "FileSystemConnectionManager", _ORDER_FILE
        else:
            name, order = "MemoryConnectionManager", _ORDER_MEMORY
    elif len(args) > 1 and _is_number(args[1]):
        name, order = "PostgresMemoryRefreshConnectionManager", _ORDER_POSTGRES_REFRESH
    elif len(args) > 3 and (args[3] is None or isinstance(args[3], (logging.Logger,
                                                                     logging.LoggerAdapter))):
        name, order = "PostgresConnectionManager", _ORDER_POSTGRES
    else:
        name, order = "PostgresMemoryConnectionManager", _ORDER_POSTGRES_MEMORY
    if len(args) > len(order):
        raise TypeError(f"{name}'s signature takes at most {len(order)} positional arguments "
                        f"({len(args)} given); pass the adapter's settings by keyword")
    return name, dict(zip(order, args))


def _default_source() -> str:
    return os.environ.get("EDR_SOURCE") or f"urn:connector:{socket.gethostname()}"


class EdrWorkerConnectionManager(BaseConnectionManager):
    """Drop-in replacement for the SDK's Memory/FileSystem/Postgres(Memory)ConnectionManager.

    **The SDK managers' arguments** are accepted, by keyword or positionally:

    - ``provider_id_key`` (default ``providerId``): the entry member removed
      before storing, as in the SDK (only that member: with a custom key a
      ``providerId`` member is kept, as the SDK keeps it);
    - ``edrs_key`` (default ``edrs``): the counter's key in :attr:`open_connections`;
    - ``logger``: where this manager logs (default: this module's logger;
      EDR contents and tokens are never logged);
    - ``verbose``: log each write at INFO instead of DEBUG;
    - ``engine``, ``table_name``, ``path``, ``file_path``, ``persist_interval``:
      storage settings of the SDK's managers. They have no meaning here (the
      workers hold the state), so they are ignored and an INFO note naming
      them (never their values) is logged.

    Positional arguments follow the signature of the SDK manager they fit
    (see :func:`_sdk_positional`): a ``str`` first is
    ``MemoryConnectionManager(provider_id_key, edrs_key, logger, verbose)``,
    or ``FileSystemConnectionManager(path, persist_interval)`` when it looks
    like a file (``.json``, ``/``, ``./``, ``../``, ``~``) or the second is a
    number; a non-``str`` first (an SQLAlchemy engine or session) is
    ``PostgresMemoryConnectionManager(engine, provider_id_key, table_name,
    edrs_key, logger, verbose)``, ``PostgresMemoryRefreshConnectionManager(engine,
    persist_interval, ...)`` when the second is a number, or
    ``PostgresConnectionManager(engine, provider_id_key, table_name, logger,
    verbose)`` when the fourth is a logger. A ``host:port`` string first raises
    TypeError (it used to mean the brokers).

    **The adapter's own settings are keyword-only** and default to the
    environment variable the worker reads:

    :param brokers: Kafka bootstrap servers (``EDR_KAFKA_BROKERS``, default ``127.0.0.1:9092``).
    :param topic: event topic (``EDR_TOPIC``, default ``edr.events``).
    :param redis_url: Redis URL of the lookup channel (``EDR_REDIS_URL``).
    :param rpc_prefix: lookup key prefix (``EDR_RPC_PREFIX``, default ``edr``).
    :param timeout: seconds to wait for a lookup reply (``EDR_TIMEOUT_MS``, default 5 s).
    :param source: CloudEvents ``source`` of the events (``EDR_SOURCE``, default
        ``urn:connector:<hostname>``).
    :param publish_timeout: seconds to wait for Kafka's delivery report.
    :param wait_applied: after a write, wait until a lookup sees its effect
        (read-your-writes). If that takes longer than ``apply_timeout`` the
        write stays published (it will be applied), a warning is logged and
        :meth:`stop` waits for it again.
    :param apply_timeout: bound of that wait in seconds (default: ``timeout``).
    :param producer_config: extra librdkafka producer properties.
    :param rpc_client: an :class:`EdrRpcClient` to use instead of building one.
    :param single_flight: one negotiation per connection across replicas: a
        miss in :meth:`get_connection_transfer_id` takes a Redis lease
        (``SET NX PX``) and returns ``None`` (negotiate) only to its holder;
        the others wait for the holder's entry (see
        :mod:`edr_worker_client.single_flight`). Off by default.
    :param lease_ttl: seconds a lease lives if its holder never stores the
        entry (dies, fails): must outlast a negotiation (default 30).
    :param single_flight_wait: most seconds a replica waits for others before
        it negotiates itself anyway (default 120).

    Lookups raise :class:`~edr_worker_client.errors.EdrWorkerError` subclasses on
    timeouts, Redis failures and worker error replies -- never a silent ``{}``.

    Return values are the SDK's (``MemoryConnectionManager``), except where the
    SDK's value is a bug (README, "Where the SDK's behaviour is not copied"):
    ``clear_connections_by_party`` counts only parties that still had entries,
    ``delete_connection`` answers ``False`` when nothing was there (the
    Postgres-memory manager always answers ``True``), and ``get_connection``
    returns a copy.
    """

    def __init__(self, *sdk_args: Any, provider_id_key: str | None = None,
                 edrs_key: str | None = None, logger: logging.Logger | None = None,
                 verbose: bool | None = None, engine: Any = _UNSET, table_name: Any = _UNSET,
                 path: Any = _UNSET, file_path: Any = _UNSET, persist_interval: Any = _UNSET,
                 brokers: str | None = None, topic: str | None = None,
                 redis_url: str | None = None, rpc_prefix: str | None = None,
                 timeout: float | None = None, source: str | None = None,
                 publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT_S, wait_applied: bool = True,
                 apply_timeout: float | None = None,
                 producer_config: Mapping[str, Any] | None = None,
                 rpc_client: EdrRpcClient | None = None, single_flight: bool = False,
                 lease_ttl: float = 30.0, single_flight_wait: float = 120.0) -> None:
        given: dict[str, Any] = {}
        for name, value in (("provider_id_key", provider_id_key), ("edrs_key", edrs_key),
                            ("logger", logger), ("verbose", verbose)):
            if value is not None:
                given[name] = value
        for name, value in (("engine", engine), ("table_name", table_name), ("path", path),
                            ("file_path", file_path), ("persist_interval", persist_interval)):
            if value is not _UNSET:
                given[name] = value
        signature, positional = _sdk_positional(sdk_args)
        for name, value in positional.items():
            if name in given:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument "
                                f"{name!r}")
            given[name] = value
        provider_id_key = given.get("provider_id_key", DEFAULT_PROVIDER_ID_KEY)
        edrs_key = given.get("edrs_key", DEFAULT_EDRS_KEY)
        logger = given.get("logger")
        if not isinstance(provider_id_key, str) or not provider_id_key:
            raise TypeError("provider_id_key must be a non-empty string")
        if not isinstance(edrs_key, str) or not edrs_key:
            raise TypeError("edrs_key must be a non-empty string")
        if logger is not None and not callable(getattr(logger, "log", None)):
            raise TypeError("logger must be a logging.Logger (or have its log method)")
        self.provider_id_key = provider_id_key
        self.edrs_key = edrs_key
        self.logger = logger or _module_log
        self.verbose = bool(given.get("verbose", False))
        ignored = [name for name in _SDK_STORAGE_ARGS if name in given]
        if signature is not None:
            self.logger.debug("edr-worker-client: positional arguments read as %s", signature)
        if ignored:
            # Names only: an engine's or a path's value may carry a DSN or a secret.
            self.logger.info(
                "edr-worker-client: ignoring the SDK storage argument(s) %s: the edr-worker "
                "holds the shared state (see its EDR_STORE setting)", ", ".join(ignored))
        # BaseConnectionManager.__init__ is abstract and raises: not called.
        self.brokers = brokers or os.environ.get("EDR_KAFKA_BROKERS") or DEFAULT_BROKERS
        self.topic = topic or os.environ.get("EDR_TOPIC") or DEFAULT_TOPIC
        self.rpc = rpc_client or EdrRpcClient(redis_url, rpc_prefix, timeout)
        self.timeout = self.rpc.timeout
        self.source = source or _default_source()
        if publish_timeout <= 0:
            raise EdrValidationError("publish_timeout must be positive")
        self.publish_timeout = float(publish_timeout)
        self.wait_applied = wait_applied
        self.apply_timeout = float(apply_timeout) if apply_timeout is not None else self.timeout
        self._flight: SingleFlight | None = None
        if single_flight:
            try:
                self._flight = SingleFlight(self.rpc, lease_ttl, single_flight_wait, self.logger)
            except ValueError as exc:
                raise EdrValidationError(str(exc)) from None
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
        # Writes published but not yet seen applied by a lookup: connection
        # key -> (token, predicate). The newest write on a key replaces the
        # older one (a worker applies one key's events in order).
        self._pending: dict[str, tuple[object, Callable[[], bool]]] = {}
        # token -> (a party to look up, {partition: offset}) of a pending
        # write whose delivery report gave its position
        self._positions: dict[object, tuple[str, dict[int, int]]] = {}
        self._pending_lock = threading.Lock()

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

    def stop(self, timeout: float | None = None) -> None:
        """Flush and await every pending write; the manager stays usable.

        The SDK's file and Postgres-memory managers have ``stop()`` (end the
        background saver, save once more); code calls it at shutdown and may
        then go on using the manager or open a second one on the same state.
        Here it delivers everything still queued for Kafka (at most
        ``publish_timeout`` s), then waits until a lookup shows each write
        not yet seen applied -- those made with ``wait_applied=False``, those
        whose own wait ran out, those of other threads in flight -- bounded by
        ``timeout`` (default ``apply_timeout``) in total. A write still not
        visible then is logged as a warning and stays pending (a later
        ``stop()`` waits for it again); nothing raises, nothing is released.
        Idempotent: with nothing pending it returns after one flush; after
        :meth:`close` (which releases the clients) it does nothing. Returns
        ``None`` like the SDK's.
        """
        if self._closed:
            return
        producer = self._producer
        if producer is not None:
            remaining = producer.flush(self.publish_timeout)
            if remaining:
                self.logger.warning("edr-worker-client: stop: Kafka did not confirm %d event(s) "
                                    "within %.1f s", remaining, self.publish_timeout)
        deadline = time.monotonic() + (self.apply_timeout if timeout is None else float(timeout))
        with self._pending_lock:
            pending = [(key, token, predicate, self._positions.get(token))
                       for key, (token, predicate) in self._pending.items()]
        for key, token, predicate, at in pending:
            if at is not None:
                done = self._wait_positions(at[0], at[1], deadline, "stop", warn=False)
            else:
                done = self._wait_until(predicate, "stop", deadline=deadline, warn=False)
            if done:
                self._settle(key, token)
        left = self.pending_writes
        if left:
            self.logger.warning("edr-worker-client: stop: %d write(s) published but not yet "
                                "visible to lookups", left)
        else:
            self._note("edr-worker-client: stop: every write is applied")

    @property
    def pending_writes(self) -> int:
        """Number of connections whose last write was published but not yet seen applied.

        One small record per connection key (the newest write replaces an
        older one), dropped once a lookup shows the write: with
        ``wait_applied=True`` that is at once; with ``wait_applied=False`` at
        the next :meth:`stop`. A write that another replica overwrote before
        it was seen stays pending until ``stop()``'s wait runs out.
        """
        with self._pending_lock:
            return len(self._pending)

    def _track(self, key: str, predicate: Callable[[], bool]) -> object:
        token = object()
        with self._pending_lock:
            self._pending[key] = (token, predicate)
        return token

    def _settle(self, key: str, token: object) -> None:
        """Forget a write seen applied, unless a newer write on the key replaced it."""
        with self._pending_lock:
            current = self._pending.get(key)
            if current is not None and current[0] is token:
                del self._pending[key]
            self._positions.pop(token, None)

    def _wait_positions(self, party: str, positions: dict[int, int], deadline: float,
                        what: str, warn: bool) -> bool:
        """True once a lookup shows the events up to ``positions`` applied; never raises."""
        try:
            if self.rpc.wait_positions(party, positions, max(deadline - time.monotonic(), 0.0)):
                return True
        except EdrWorkerError as exc:
            self.logger.warning("edr-worker-client: %s: could not confirm the write: %s",
                                what, exc)
            return False
        if warn:
            self.logger.warning(
                "edr-worker-client: %s: write published but not yet visible after %.1f s",
                what, self.apply_timeout)
        return False

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

        With ``single_flight``, ``None`` means "you hold the lease: negotiate
        and :meth:`add_connection`"; a replica that misses while another holds
        the lease waits for that replica's entry and returns its transfer id.

        :raises EdrWorkerError: timeout, Redis failure or worker error reply.
        """
        keys = self._lookup_keys(counter_party_id, counter_party_address, query_checksum,
                                 policy_checksum)
        if keys is None:
            return None
        transfer_id = self.rpc.get_connection_transfer_id(keys)
        if transfer_id is not None or self._flight is None:
            return transfer_id
        return self._flight.after_miss(keys)

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
        key = connection_key(**keys)
        self._publish_tracked(self._expired_records([(keys, transfer_id)]),
                              [(key, self._expired_check(keys, transfer_id))],
                              "delete_connection", party=keys["counter_party_id"])
        self._note("edr-worker-client: published edr.expired for connection %s", key)
        return True

    def clear_connections_by_party(self, counter_party_id_substring: str) -> int:
        """Remove every entry whose ``counter_party_id`` contains the substring.

        A BPN therefore clears both the bare-BPN and the DID-keyed entries.
        Each removal is an ``edr.expired`` carrying the listed transfer process
        id (a newer EDR negotiated meanwhile survives).

        :returns: the number of distinct ``counter_party_id`` values that had
            entries and were cleared (0 when nothing matched, so a second call
            returns 0). The SDK's memory manager counts the top-level party keys
            it removes, which includes a party whose entries were all deleted
            before (``delete_connection`` leaves its empty dicts behind); that
            is not copied: such a party has nothing left to clear and is not
            counted. Unlike the SDK, a party whose id equals ``edrs_key`` is
            cleared too, and ``""`` clears every party, as ``"" in id`` does there.
        """
        if not isinstance(counter_party_id_substring, str):
            raise EdrValidationError("counter_party_id_substring must be a string")
        targets = self._evict("clear_connections_by_party",
                              counter_party_id_substring=counter_party_id_substring)
        return len({keys["counter_party_id"] for keys, _ in targets})

    def delete_connections_by_asset(self, asset_id: str | None = None,
                                    asset_id_prefix: str | None = None) -> int:
        """Evict every entry of an asset (``assetId == asset_id``) or an asset
        family (``assetId`` starts with ``asset_id_prefix``, bytes, case
        sensitive); both given: both must hold.

        Not part of the SDK's interface: what Industry Core Hub does with raw
        SQL behind the SDK's managers, here on every replica. One keyed
        ``edr.expired`` per listed entry, carrying its transfer process id (an
        entry renewed meanwhile survives), awaited like every write.

        :returns: the number of entries evicted (0 when nothing matched).
        :raises EdrValidationError: neither given, or one empty or not a string.
        """
        if asset_id is None and asset_id_prefix is None:
            raise EdrValidationError("give asset_id, asset_id_prefix or both")
        for name, value in (("asset_id", asset_id), ("asset_id_prefix", asset_id_prefix)):
            if value is not None and (not isinstance(value, str) or not value):
                raise EdrValidationError(f"{name} must be a non-empty string")
        return len(self._evict("delete_connections_by_asset", asset_id=asset_id,
                               asset_id_prefix=asset_id_prefix))

    def delete_connection_by_transfer_id(self, transfer_process_id: str) -> int:
        """Evict the entries holding ``transfer_process_id`` (a transfer that was
        terminated, suspended or completed); an entry renewed meanwhile with
        another transfer survives.

        :returns: the number of entries evicted (normally 0 or 1).
        :raises EdrValidationError: an empty or non-string id.
        """
        if not isinstance(transfer_process_id, str) or not transfer_process_id:
            raise EdrValidationError("transfer_process_id must be a non-empty string")
        return len(self._evict("delete_connection_by_transfer_id",
                               transfer_process_id=transfer_process_id))

    def _evict(self, what: str, counter_party_id_substring: str | None = None,
               **filters: str | None) -> list[tuple[dict[str, str], str]]:
        """List the entries matching every filter (``list_connections``) and
        publish, per entry, ``edr.expired`` with its keys and transfer process
        id; with ``wait_applied``, wait until lookups show them gone.

        :returns: the (keys, transfer id) of the entries evicted.
        """
        def listed() -> list[dict[str, Any]]:
            return self.rpc.iter_connections(counter_party_id_substring, **filters)

        targets: list[tuple[dict[str, str], str]] = []
        for item in listed():
            try:
                keys = {k: item[k] for k in ("counter_party_id", "counter_party_address",
                                             "query_checksum", "policy_checksum")}
                transfer_id = item[TRANSFER_ID_KEY]
            except (KeyError, TypeError):
                raise EdrWorkerError("list_connections item lacks a contract member") from None
            targets.append((keys, transfer_id))
        if not targets:
            return targets
        cleared = {(connection_key(**k), t) for k, t in targets}

        def gone() -> bool:
            return not any((connection_key(**_item_keys(i)), i.get(TRANSFER_ID_KEY)) in cleared
                           for i in listed())

        self._publish_tracked(self._expired_records(targets),
                              [(connection_key(**k), self._expired_check(k, t))
                               for k, t in targets],
                              what, applied=gone, party=targets[0][0]["counter_party_id"])
        self._note("edr-worker-client: %s: published %d edr.expired events", what, len(targets))
        return targets

    @property
    def open_connections(self) -> dict[str, Any]:
        """A read-only snapshot in the SDK managers' shape (costly: read it rarely).

        ``{counter_party_id: {counter_party_address: {query_checksum:
        {policy_checksum: entry}}}, edrs_key: number_of_entries}``, built by
        paging ``list_connections`` (one lookup per 1000 entries) and then
        fetching every entry with ``get_connection``: **one lookup per
        entry**. It is a fresh deep copy on every read: changing it changes
        nothing in the cache (evict with :meth:`delete_connection` or
        :meth:`clear_connections_by_party`), and assigning to it raises
        AttributeError. Entries written during the read may or may not
        appear; one removed between listing and fetching is left out. The
        ``edrs_key`` count is the number of entries in the snapshot (the SDK
        memory manager's counter drifts: it counts overwrites twice and is not
        lowered by clearing). A party whose id equals ``edrs_key`` cannot be
        represented in this shape (the SDK's bug too): it is left out and a
        warning is logged.

        :raises EdrWorkerError: timeout, Redis failure or worker error reply.
        """
        snapshot: dict[str, Any] = {}
        count = 0
        for item in self.rpc.iter_connections():
            keys = _item_keys(item)
            party = keys["counter_party_id"]
            if party == self.edrs_key:
                self.logger.warning("edr-worker-client: open_connections: a party id equals the "
                                    "edrs_key %r; its entries are left out", self.edrs_key)
                continue
            entry = self.rpc.get_connection(keys)
            if not entry:
                continue
            (snapshot.setdefault(party, {})
             .setdefault(keys["counter_party_address"], {})
             .setdefault(keys["query_checksum"], {}))[keys["policy_checksum"]] = entry
            count += 1
        snapshot[self.edrs_key] = count
        return snapshot

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
        for member in (_JSONLD_TYPE, _JSONLD_CONTEXT, self.provider_id_key):
            saved.pop(member, None)
        event = build_event(event_type, self.source, counter_party_id, counter_party_address,
                            query_checksum, policy_checksum, edr=saved)
        value = encode_event(event)
        key = connection_key(counter_party_id, counter_party_address, query_checksum,
                             policy_checksum)
        # Compare with the entry as JSON carries it (tuples become lists, ...).
        expected = json.loads(value)["data"]["edr"]
        keys = self._lookup_keys(counter_party_id, counter_party_address, query_checksum,
                                 policy_checksum)
        assert keys is not None
        try:
            self._publish_tracked([(key, value)],
                                  [(key, lambda: self.rpc.get_connection(keys) == expected)],
                                  "add_connection", party=counter_party_id)
        finally:
            # after the wait: the replicas waiting on the lease find the entry
            if self._flight is not None:
                self._flight.release(key)
        self._note("edr-worker-client: published %s for connection %s", event_type, key)
        return transfer_id

    def _publish_tracked(self, records: list[tuple[str, bytes]],
                         checks: list[tuple[str, Callable[[], bool]]], what: str,
                         applied: Callable[[], bool] | None = None, party: str = "") -> None:
        """Publish, remember each write as pending, and (``wait_applied``) wait for it.

        ``checks`` are (connection key, predicate true once that write is
        applied); ``applied`` is one predicate for them all (a clear's list).
        Registered before producing, so a concurrent :meth:`stop` awaits it.

        Read-your-writes uses the positions of Kafka's delivery reports: one
        lookup with ``min_positions`` (``party`` names the cheapest one to
        ask) that the worker answers once it applied them, woken by the
        apply. The predicates are the fallback when a delivery report
        carries no position.
        """
        tokens = [(key, self._track(key, check)) for key, check in checks]
        try:
            positions = self._publish(records)
        except BaseException:
            for key, token in tokens:
                self._settle(key, token)
            raise
        if positions:
            with self._pending_lock:
                for _, token in tokens:
                    self._positions[token] = (party, positions)
        if not self.wait_applied:
            return
        if positions:
            if self._wait_positions(party, positions, time.monotonic() + self.apply_timeout,
                                    what, warn=True):
                for key, token in tokens:
                    self._settle(key, token)
            return
        if applied is None:
            applied = (checks[0][1] if len(checks) == 1
                       else lambda: all(check() for _, check in checks))
        if self._wait_until(applied, what):
            for key, token in tokens:
                self._settle(key, token)

    def _expired_records(self, targets: Iterable[tuple[dict[str, str], str]]
                         ) -> list[tuple[str, bytes]]:
        records = []
        for keys, transfer_id in targets:
            event = build_event(EVENT_EXPIRED, self.source, keys["counter_party_id"],
                                keys["counter_party_address"], keys["query_checksum"],
                                keys["policy_checksum"], transfer_process_id=transfer_id)
            records.append((connection_key(**keys), encode_event(event)))
        return records

    def _publish_expired(self, targets: Iterable[tuple[dict[str, str], str]]) -> None:
        """Publish ``edr.expired`` for each (keys, transfer id), untracked (tests use it)."""
        self._publish(self._expired_records(targets))

    def _expired_check(self, keys: dict[str, str], transfer_id: str) -> Callable[[], bool]:
        return lambda: self.rpc.get_connection_transfer_id(keys) != transfer_id

    def _publish(self, records: list[tuple[str, bytes]]) -> dict[int, int]:
        """Produce the records and wait until Kafka confirmed every one.

        :returns: ``{partition: highest offset}`` of the records, from the
            delivery reports (as ``edrctl publish`` prints them); empty when
            the reports carry no position.
        """
        producer = self._producer
        if self._closed or producer is None:
            raise EdrWorkerError("the connection manager is closed")
        results: list[KafkaError | None | bool] = [None] * len(records)
        positions: dict[int, int] = {}
        located = [0]  # reports that carried a position

        def on_delivery(index: int) -> Callable[[KafkaError | None, Any], None]:
            def report(err: KafkaError | None, msg: Any) -> None:
                if err is None and msg is not None:
                    partition, offset = msg.partition(), msg.offset()
                    if isinstance(partition, int) and isinstance(offset, int) \
                            and partition >= 0 and offset >= 0:
                        positions[partition] = max(offset, positions.get(partition, -1))
                        located[0] += 1
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
        # every record must have a position, or the wait could miss one
        return positions if located[0] == len(records) else {}

    def _wait_until(self, predicate: Callable[[], bool], what: str,
                    deadline: float | None = None, warn: bool = True) -> bool:
        """Poll ``predicate`` with backoff until true or the deadline
        (default: ``apply_timeout`` from now); never raises."""
        if deadline is None:
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
                if warn:
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
