"""Tests that need no server: the key, the event format, argument checks."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any

import pytest
from edr_worker_client import (
    EdrValidationError,
    EdrWorkerConnectionManager,
    KafkaConnectionManager,
    build_event,
    connection_key,
    encode_event,
)
from edr_worker_client.events import connection_key as _ckey
from edr_worker_client.rpc import EdrRpcClient, EdrWorkerReplyError
from tractusx_sdk.dataspace.managers.connection.base_connection_manager import BaseConnectionManager

# Nothing listens on port 1: any attempt to use the network fails loudly.
DEAD = dict(brokers="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0", timeout=0.2,
            publish_timeout=0.5)
KEYS = ("BPNL000000000065", "https://provider.example.com/api/v1/dsp", "a" * 64, "b" * 64)


def test_is_an_sdk_connection_manager() -> None:
    assert issubclass(EdrWorkerConnectionManager, BaseConnectionManager)
    assert KafkaConnectionManager is EdrWorkerConnectionManager
    assert not getattr(EdrWorkerConnectionManager, "__abstractmethods__", None)


def test_connection_key_is_sha256_of_fields_joined_by_unit_separator() -> None:
    expected = hashlib.sha256(b"BPNL1\x1fhttps://p\x1fq\x1fp").hexdigest()
    assert connection_key("BPNL1", "https://p", "q", "p") == expected
    # UTF-8 bytes, lowercase hex
    key = connection_key("did:web:\u00e9x", "a", "b", "c")
    assert key == hashlib.sha256("did:web:\u00e9x\x1fa\x1fb\x1fc".encode()).hexdigest()
    assert key == key.lower() and len(key) == 64
    # the separator keeps field boundaries: ("ab","c") differs from ("a","bc")
    assert connection_key("ab", "c", "d", "e") != connection_key("a", "bc", "d", "e")


def test_negotiated_event_follows_the_contract() -> None:
    edr = {"transferProcessId": "tp-1", "assetId": "x"}
    ev = build_event("edr.negotiated", "urn:connector:test", *KEYS, edr=edr)
    assert ev["specversion"] == "1.0" and ev["type"] == "edr.negotiated"
    assert ev["id"] and ev["source"] == "urn:connector:test"
    assert ev["subject"] == "tp-1" and ev["datacontenttype"] == "application/json"
    assert ev["time"].endswith("Z")
    assert ev["data"] == {"counter_party_id": KEYS[0], "counter_party_address": KEYS[1],
                          "query_checksum": KEYS[2], "policy_checksum": KEYS[3], "edr": edr}
    assert json.loads(encode_event(ev)) == ev


def test_expired_event_carries_the_transfer_id() -> None:
    ev = build_event("edr.expired", "urn:x", *KEYS, transfer_process_id="tp-9")
    assert ev["data"]["transfer_process_id"] == "tp-9"
    assert "edr" not in ev["data"]


@pytest.mark.parametrize("bad", [{}, {"transferProcessId": ""}, {"transferProcessId": 5}])
def test_event_refuses_edr_without_transfer_id(bad: dict) -> None:
    with pytest.raises(EdrValidationError):
        build_event("edr.negotiated", "urn:x", *KEYS, edr=bad)


def test_event_refuses_bad_keys_and_oversize() -> None:
    with pytest.raises(EdrValidationError):
        build_event("edr.expired", "urn:x", "", *KEYS[1:])
    with pytest.raises(EdrValidationError):
        build_event("edr.expired", "urn:x", "x" * 1025, *KEYS[1:])
    with pytest.raises(EdrValidationError):
        build_event("edr.bogus", "urn:x", *KEYS)
    big = build_event("edr.negotiated", "urn:x", *KEYS,
                      edr={"transferProcessId": "t", "blob": "x" * (1024 * 1024)})
    with pytest.raises(EdrValidationError):
        encode_event(big)


@pytest.mark.parametrize("entry", [
    {"@type": "EndpointDataReferenceEntry", "providerId": "p", "@context": {}},
    {"transferProcessId": "", "@type": "x", "providerId": "p", "@context": {}},
    {"transferProcessId": None},
])
def test_add_connection_validates_like_the_sdk_before_any_io(entry: dict) -> None:
    m = EdrWorkerConnectionManager(**DEAD)
    try:
        with pytest.raises(Exception) as info:
            m.add_connection(*KEYS, entry)
        assert isinstance(info.value, EdrValidationError)
    finally:
        m.close(timeout=0)


def test_lookups_with_keys_nothing_can_be_stored_under_do_not_ask() -> None:
    m = EdrWorkerConnectionManager(**DEAD)
    assert m.get_connection("", *KEYS[1:]) == {}
    assert m.get_connection_transfer_id(*KEYS[:3], "p" * 2000) is None
    assert m.delete_connection(None, *KEYS[1:]) is False  # type: ignore[arg-type]
    m.close(timeout=0)


def test_reply_parsing() -> None:
    parse = EdrRpcClient._parse_reply
    assert parse("get_connection", "r1", b'{"id":"r1","status":"ok","result":{"a":1}}') == ("ok", {"a": 1})
    assert parse("get_connection", "r1", b'{"id":"r1","status":"not_found","result":{}}')[0] == "not_found"
    with pytest.raises(EdrWorkerReplyError, match="boom"):
        parse("get_connection", "r1", b'{"id":"r1","status":"error","error":"boom"}')
    # v2 error replies carry a code
    with pytest.raises(EdrWorkerReplyError, match="unavailable: store") as info:
        parse("count", "r1", b'{"id":"r1","status":"error","error":"store down",'
                             b'"code":"unavailable","result":null}')
    assert info.value.code == "unavailable"
    with pytest.raises(EdrWorkerReplyError):
        parse("get_connection", "r1", b'{"id":"other","status":"ok","result":{}}')
    with pytest.raises(EdrWorkerReplyError):
        parse("get_connection", "r1", b"not json")


# -- drop-in for the SDK managers: constructor, stop(), open_connections ---------------

ADAPTER = dict(brokers="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0", timeout=0.2,
               publish_timeout=0.5)


class FakeProducer:
    """Stands in for confluent_kafka.Producer: every record is delivered on flush()."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self._reports: list[Any] = []
        self.flushes = 0

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        self.records.append((key, value))
        self._reports.append(on_delivery)

    def flush(self, timeout: float = 0) -> int:
        self.flushes += 1
        reports, self._reports = self._reports, []
        for report in reports:
            report(None, None)
        return 0

    def poll(self, timeout: float = 0) -> int:
        return self.flush(timeout)


class FakeRpc:
    """Stands in for EdrRpcClient: a dict the test 'applies' writes to when it chooses."""

    timeout = 0.2

    def __init__(self) -> None:
        self.store: dict[str, tuple[dict[str, str], dict[str, Any]]] = {}
        self.lookups = 0
        self.applied = threading.Event()
        self.queued: list[tuple[str, dict[str, str], dict[str, Any] | None]] = []

    def apply(self) -> None:
        """Apply every queued write (the worker catching up)."""
        for key, keys, entry in self.queued:
            if entry is None:
                self.store.pop(key, None)
            else:
                self.store[key] = (keys, entry)
        self.queued.clear()

    def queue_from(self, producer: FakeProducer) -> None:
        for raw_key, value in producer.records:
            event = json.loads(value)
            data = event["data"]
            keys = {k: data[k] for k in ("counter_party_id", "counter_party_address",
                                         "query_checksum", "policy_checksum")}
            self.queued.append((raw_key.decode(), keys, data.get("edr")))
        producer.records.clear()

    def get_connection(self, keys: dict[str, str]) -> dict[str, Any]:
        self.lookups += 1
        hit = self.store.get(_ckey(**keys))
        return json.loads(json.dumps(hit[1])) if hit else {}

    def get_connection_transfer_id(self, keys: dict[str, str]) -> str | None:
        return self.get_connection(keys).get("transferProcessId")

    def iter_connections(self, counter_party_id_substring: str | None = None) -> list[dict]:
        self.lookups += 1
        return [dict(keys, transferProcessId=entry["transferProcessId"])
                for keys, entry in self.store.values()
                if counter_party_id_substring is None
                or counter_party_id_substring in keys["counter_party_id"]]

    def close(self) -> None:
        pass


def fake_manager(**kwargs: Any) -> tuple[EdrWorkerConnectionManager, FakeProducer, FakeRpc]:
    rpc = FakeRpc()
    opts: dict[str, Any] = dict(ADAPTER, rpc_client=rpc, apply_timeout=0.5)
    opts.update(kwargs)
    m = EdrWorkerConnectionManager(**opts)
    producer = FakeProducer()
    m._producer = producer  # type: ignore[assignment]
    return m, producer, rpc


def sdk_entry(tp: str, **extra: Any) -> dict[str, Any]:
    return {"@id": tp, "@type": "EndpointDataReferenceEntry", "providerId": "BPNL000000000065",
            "assetId": "asset-1", "transferProcessId": tp, "createdAt": 1729683943014,
            "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, **extra}


@pytest.mark.parametrize("kwargs, attr, value", [
    ({"provider_id_key": "edc:providerId"}, "provider_id_key", "edc:providerId"),
    ({"edrs_key": "count"}, "edrs_key", "count"),
    ({"verbose": True}, "verbose", True),
])
def test_sdk_keyword_arguments_keep_their_meaning(kwargs: dict, attr: str, value: Any) -> None:
    m = EdrWorkerConnectionManager(**kwargs, **DEAD)
    try:
        assert getattr(m, attr) == value
    finally:
        m.close(timeout=0)


def test_sdk_logger_is_used() -> None:
    mine = logging.getLogger("my-connector")
    m = EdrWorkerConnectionManager(logger=mine, **DEAD)
    try:
        assert m.logger is mine
    finally:
        m.close(timeout=0)


@pytest.mark.parametrize("kwargs", [
    {"engine": object()}, {"table_name": "edr_connections"}, {"path": "./data/cache.json"},
    {"file_path": "/var/lib/cache.json"}, {"persist_interval": 5},
    {"engine": object(), "table_name": "edr_cache_v2", "persist_interval": 1},
])
def test_sdk_storage_arguments_are_ignored_with_a_note(kwargs: dict,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="edr_worker_client")
    m = EdrWorkerConnectionManager(**kwargs, **DEAD)
    try:
        notes = [r for r in caplog.records if "ignoring the SDK storage argument" in r.getMessage()]
        assert len(notes) == 1 and notes[0].levelno == logging.INFO
        for name in kwargs:
            assert name in notes[0].getMessage()
        for value in kwargs.values():  # names only, never values (a DSN may hide there)
            if isinstance(value, str):
                assert value not in notes[0].getMessage()
    finally:
        m.close(timeout=0)


def test_no_note_without_storage_arguments(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="edr_worker_client")
    m = EdrWorkerConnectionManager(provider_id_key="providerId", **DEAD)
    try:
        assert not [r for r in caplog.records if "ignoring" in r.getMessage()]
    finally:
        m.close(timeout=0)


def test_note_goes_to_the_callers_logger(caplog: pytest.LogCaptureFixture) -> None:
    mine = logging.getLogger("my-connector")
    caplog.set_level("INFO", logger="my-connector")
    m = EdrWorkerConnectionManager(table_name="edr_connections", logger=mine, **DEAD)
    try:
        assert any(r.name == "my-connector" and "table_name" in r.getMessage()
                   for r in caplog.records)
    finally:
        m.close(timeout=0)


class _Engine:
    """Looks like an SQLAlchemy engine: not a str."""


@pytest.mark.parametrize("args, expected", [
    # MemoryConnectionManager(provider_id_key, edrs_key, logger, verbose)
    (("edc:providerId",), {"provider_id_key": "edc:providerId"}),
    (("pid", "n", None, True), {"provider_id_key": "pid", "edrs_key": "n", "verbose": True}),
    # FileSystemConnectionManager(path, persist_interval)
    (("./data/connection_cache.json",), {"provider_id_key": "providerId"}),
    (("cache", 5), {"provider_id_key": "providerId"}),
    # PostgresMemoryConnectionManager(engine, provider_id_key, table_name, edrs_key, logger, verbose)
    ((_Engine(), "pid", "tbl", "n", None, True),
     {"provider_id_key": "pid", "edrs_key": "n", "verbose": True}),
    # PostgresMemoryRefreshConnectionManager(engine, persist_interval, provider_id_key, ...)
    ((_Engine(), 5, "pid", "tbl", "n"), {"provider_id_key": "pid", "edrs_key": "n"}),
    # PostgresConnectionManager(engine, provider_id_key, table_name, logger, verbose)
    ((_Engine(), "pid", "tbl", logging.getLogger("x"), True),
     {"provider_id_key": "pid", "edrs_key": "edrs", "verbose": True}),
])
def test_positional_arguments_follow_the_sdk_signature_they_fit(args: tuple, expected: dict) -> None:
    m = EdrWorkerConnectionManager(*args, **DEAD)
    try:
        for attr, value in expected.items():
            assert getattr(m, attr) == value, attr
        assert m.brokers == DEAD["brokers"]  # never taken from a positional argument
    finally:
        m.close(timeout=0)


def test_positional_engine_is_accepted_and_noted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="edr_worker_client")
    m = EdrWorkerConnectionManager(_Engine(), **DEAD)
    try:
        assert any("engine" in r.getMessage() and "ignoring" in r.getMessage()
                   for r in caplog.records)
        assert m.provider_id_key == "providerId"
    finally:
        m.close(timeout=0)


@pytest.mark.parametrize("args, kwargs, match", [
    (("127.0.0.1:9092",), {}, "keyword-only"),          # the old positional brokers
    (("kafka-1:9092,kafka-2:9092", "edr.events"), {}, "keyword-only"),
    (("a", "b", None, False, "extra"), {}, "at most 4"),
    ((_Engine(), "p", "t", "e", None, False, "x"), {}, "at most 6"),
    (("pid",), {"provider_id_key": "other"}, "multiple values"),
    ((), {"provider_id_key": ""}, "provider_id_key"),
    ((), {"logger": "not a logger"}, "logger"),
])
def test_bad_constructor_arguments_raise_type_error(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        EdrWorkerConnectionManager(*args, **kwargs, **DEAD)


def test_adapter_settings_are_keyword_only() -> None:
    import inspect

    params = inspect.signature(EdrWorkerConnectionManager.__init__).parameters
    for name in ("brokers", "topic", "redis_url", "rpc_prefix", "timeout", "source",
                 "publish_timeout", "wait_applied", "apply_timeout", "producer_config",
                 "rpc_client"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_custom_provider_id_key_is_the_member_dropped() -> None:
    m, producer, rpc = fake_manager(provider_id_key="edc:providerId", wait_applied=False)
    m.add_connection(*KEYS, sdk_entry("tp-1", **{"edc:providerId": "BPNL1"}))
    edr = json.loads(producer.records[0][1])["data"]["edr"]
    # as MemoryConnectionManager: @type, @context and the configured key go; providerId stays
    assert "edc:providerId" not in edr and "@type" not in edr and "@context" not in edr
    assert edr["providerId"] == "BPNL000000000065"


def test_stop_awaits_pending_writes_and_leaves_the_manager_usable() -> None:
    m, producer, rpc = fake_manager(wait_applied=False, apply_timeout=30)
    assert m.add_connection(*KEYS, sdk_entry("tp-1")) == "tp-1"
    assert m.pending_writes == 1
    rpc.queue_from(producer)
    done = threading.Event()
    stopper = threading.Thread(target=lambda: (m.stop(), done.set()))
    stopper.start()
    # stop() keeps polling while the worker has not applied the write ...
    polled = rpc.lookups
    deadline = time.monotonic() + 10
    while rpc.lookups < polled + 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rpc.lookups >= polled + 3 and not done.is_set()
    rpc.apply()  # ... and returns once it has
    assert done.wait(10)
    stopper.join(10)
    assert m.pending_writes == 0
    # idempotent: nothing pending, no lookup
    before = rpc.lookups
    m.stop()
    m.stop()
    assert rpc.lookups == before
    # usable after stop(): write, read, delete
    m.add_connection(*KEYS[:3], "c" * 64, sdk_entry("tp-2"))
    rpc.queue_from(producer)
    rpc.apply()
    assert m.get_connection_transfer_id(*KEYS[:3], "c" * 64) == "tp-2"
    m.close(timeout=0)


def test_stop_flushes_the_producer_and_awaits_deletes() -> None:
    m, producer, rpc = fake_manager(wait_applied=False)
    m.add_connection(*KEYS, sdk_entry("tp-1"))
    rpc.queue_from(producer)
    rpc.apply()
    flushes = producer.flushes
    assert m.delete_connection(*KEYS) is True
    rpc.queue_from(producer)
    rpc.apply()
    m.stop()
    assert producer.flushes > flushes and m.pending_writes == 0
    assert m.get_connection(*KEYS) == {}
    m.close(timeout=0)


def test_stop_is_bounded_and_keeps_what_it_could_not_confirm(
        caplog: pytest.LogCaptureFixture) -> None:
    m, producer, rpc = fake_manager(wait_applied=False)
    m.add_connection(*KEYS, sdk_entry("tp-1"))
    started = time.monotonic()
    m.stop(timeout=0.2)  # the worker never applies it
    assert time.monotonic() - started < 5
    assert m.pending_writes == 1
    assert "not yet visible" in caplog.text
    rpc.queue_from(producer)
    rpc.apply()
    m.stop()  # a later stop() confirms it
    assert m.pending_writes == 0
    m.close(timeout=0)
    before = rpc.lookups
    m.stop()  # after close(): nothing to do, no error
    assert rpc.lookups == before


def test_a_confirmed_write_is_not_pending() -> None:
    m, producer, rpc = fake_manager(wait_applied=True, apply_timeout=0.1)
    m.add_connection(*KEYS, sdk_entry("tp-1"))  # not applied: the wait runs out
    assert m.pending_writes == 1
    rpc.queue_from(producer)
    rpc.apply()
    m.add_connection(*KEYS, sdk_entry("tp-1", assetId="asset-2"))  # newer write, same key
    assert m.pending_writes == 1  # one per connection: the newest write
    rpc.queue_from(producer)
    rpc.apply()
    m.stop()
    assert m.pending_writes == 0
    m.close(timeout=0)


def test_open_connections_is_a_read_only_snapshot_in_the_sdk_shape() -> None:
    m, producer, rpc = fake_manager(wait_applied=False, edrs_key="count")
    other = ("did:web:w.example.com:BPNL000000000065", KEYS[1], "d" * 64, "e" * 64)
    m.add_connection(*KEYS, sdk_entry("tp-1"))
    m.add_connection(*other, sdk_entry("tp-2"))
    m.add_connection(*KEYS[:3], "f" * 64, sdk_entry("tp-3"))
    rpc.queue_from(producer)
    rpc.apply()
    snap = m.open_connections
    assert snap == {
        KEYS[0]: {KEYS[1]: {KEYS[2]: {KEYS[3]: m.get_connection(*KEYS),
                                      "f" * 64: m.get_connection(*KEYS[:3], "f" * 64)}}},
        other[0]: {other[1]: {other[2]: {other[3]: m.get_connection(*other)}}},
        "count": 3,
    }
    assert snap[KEYS[0]][KEYS[1]][KEYS[2]][KEYS[3]]["transferProcessId"] == "tp-1"
    # mutating the snapshot changes nothing
    del snap[KEYS[0]]
    snap[other[0]][other[1]][other[2]][other[3]]["transferProcessId"] = "tampered"
    snap["count"] = 0
    again = m.open_connections
    assert again["count"] == 3 and KEYS[0] in again
    assert again[other[0]][other[1]][other[2]][other[3]]["transferProcessId"] == "tp-2"
    with pytest.raises(AttributeError):
        m.open_connections = {}  # type: ignore[misc]
    m.close(timeout=0)


def test_open_connections_empty_and_edrs_key_party(caplog: pytest.LogCaptureFixture) -> None:
    m, producer, rpc = fake_manager(wait_applied=False)
    assert m.open_connections == {"edrs": 0}
    m.add_connection("edrs", *KEYS[1:], sdk_entry("tp-1"))
    rpc.queue_from(producer)
    rpc.apply()
    assert m.open_connections == {"edrs": 0}  # the shape cannot hold it (the SDK's bug)
    assert "edrs_key" in caplog.text
    assert m.clear_connections_by_party("edrs") == 1  # but it can be cleared
    m.close(timeout=0)


def test_clear_counts_parties_with_entries_like_the_sdk() -> None:
    m, producer, rpc = fake_manager(wait_applied=False)
    did = "did:web:w.example.com:BPNL000000000065"
    m.add_connection(*KEYS, sdk_entry("tp-1"))
    m.add_connection(*KEYS[:3], "f" * 64, sdk_entry("tp-2"))
    m.add_connection(did, *KEYS[1:], sdk_entry("tp-3"))
    m.add_connection("BPNL000000000099", *KEYS[1:], sdk_entry("tp-4"))
    rpc.queue_from(producer)
    rpc.apply()
    assert m.clear_connections_by_party("BPNL000000000065") == 2  # two parties, three entries
    rpc.queue_from(producer)
    rpc.apply()
    assert m.clear_connections_by_party("BPNL000000000065") == 0
    assert m.open_connections["edrs"] == 1
    m.close(timeout=0)
