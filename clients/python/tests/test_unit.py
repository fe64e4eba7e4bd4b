"""Tests that need no server: the key, the event format, argument checks."""

from __future__ import annotations

import hashlib
import json

import pytest
from edr_worker_client import (
    EdrValidationError,
    EdrWorkerConnectionManager,
    KafkaConnectionManager,
    build_event,
    connection_key,
    encode_event,
)
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
