"""The adapter against the real local stack and a running edr-worker.

Every behaviour of shared/SDK-MANAGERS.md's interface table, plus what only a
shared cache can do: replicas seeing each other's writes, edrctl agreeing,
outages raising instead of looking like an empty cache.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from conftest import Keys, Worker, binary, edr_entry
from edr_worker_client import (
    EdrValidationError,
    EdrWorkerConnectionManager,
    EdrWorkerError,
    EdrWorkerReplyError,
    EdrWorkerTimeout,
    build_event,
    connection_key,
    encode_event,
)

pytestmark = pytest.mark.integration
STRIPPED = ("@type", "@context", "providerId")


def expected_stored(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in STRIPPED}


# -- add / get ------------------------------------------------------------------


def test_add_returns_transfer_id_and_get_returns_stripped_entry(manager: Any) -> None:
    k = Keys()
    entry = edr_entry()
    assert manager.add_connection(*k.args(), entry) == entry["transferProcessId"]
    got = manager.get_connection(*k.args())
    assert got == expected_stored(entry)
    for member in STRIPPED:
        assert member not in got
    assert manager.get_connection_transfer_id(*k.args()) == entry["transferProcessId"]


def test_add_does_not_change_the_callers_entry(manager: Any) -> None:
    entry = edr_entry()
    before = json.loads(json.dumps(entry))
    manager.add_connection(*Keys().args(), entry)
    assert entry == before


def test_add_accepts_entry_without_jsonld_members(manager: Any) -> None:
    k = Keys()
    entry = {"transferProcessId": f"tp-{uuid.uuid4()}", "assetId": "a"}
    manager.add_connection(*k.args(), entry)
    assert manager.get_connection(*k.args()) == entry


@pytest.mark.parametrize("entry", [
    {"@type": "EndpointDataReferenceEntry", "providerId": "p", "@context": {}, "assetId": "a"},
    {"transferProcessId": "", "assetId": "a"},
])
def test_add_without_transfer_id_raises_and_stores_nothing(manager: Any,
                                                           entry: dict[str, Any]) -> None:
    k = Keys()
    with pytest.raises(EdrValidationError):
        manager.add_connection(*k.args(), entry)
    assert manager.get_connection(*k.args()) == {}


def test_misses_return_empty_dict_and_none(manager: Any) -> None:
    k = Keys()
    assert manager.get_connection(*k.args()) == {}
    assert manager.get_connection_transfer_id(*k.args()) is None


def test_keys_are_all_four_fields(manager: Any) -> None:
    k = Keys()
    entry = edr_entry()
    manager.add_connection(*k.args(), entry)
    party, address, query, policy = k.args()
    assert manager.get_connection(party, address, query, policy + "0") == {}
    assert manager.get_connection(party, address, query + "0", policy) == {}
    assert manager.get_connection(party, address + "/x", query, policy) == {}
    assert manager.get_connection(party + "0", address, query, policy) == {}


def test_add_again_replaces_the_entry(manager: Any) -> None:
    k = Keys()
    manager.add_connection(*k.args(), edr_entry())
    newer = edr_entry()
    manager.add_connection(*k.args(), newer)
    assert manager.get_connection_transfer_id(*k.args()) == newer["transferProcessId"]
    # a renewal: same transfer id, new createdAt
    renewed = dict(newer, createdAt=newer["createdAt"] + 60_000)
    manager.renew_connection(*k.args(), renewed)
    assert manager.get_connection(*k.args()) == expected_stored(renewed)


def test_changing_a_returned_entry_does_not_change_the_cache(manager: Any) -> None:
    k = Keys()
    entry = edr_entry()
    manager.add_connection(*k.args(), entry)
    got = manager.get_connection(*k.args())
    got["transferProcessId"] = "tampered"
    got["assetId"] = "tampered"
    got.clear()
    assert manager.get_connection(*k.args()) == expected_stored(entry)


# -- delete -------------------------------------------------------------------------


def test_delete_returns_true_then_false(manager: Any) -> None:
    k = Keys()
    manager.add_connection(*k.args(), edr_entry())
    assert manager.delete_connection(*k.args()) is True
    assert manager.get_connection(*k.args()) == {}
    assert manager.get_connection_transfer_id(*k.args()) is None
    assert manager.delete_connection(*k.args()) is False


def test_delete_of_unknown_connection_returns_false(manager: Any) -> None:
    assert manager.delete_connection(*Keys().args()) is False


def test_delete_leaves_other_connections(manager: Any) -> None:
    a, b = Keys(), Keys()
    ea, eb = edr_entry(), edr_entry()
    manager.add_connection(*a.args(), ea)
    manager.add_connection(*b.args(), eb)
    assert manager.delete_connection(*a.args()) is True
    assert manager.get_connection_transfer_id(*b.args()) == eb["transferProcessId"]


# -- clear_connections_by_party -------------------------------------------------------


def test_clear_by_bpn_removes_bare_and_did_keyed_entries(manager: Any) -> None:
    bpn = f"BPNL{uuid.uuid4().hex[:12].upper()}"
    other_bpn = f"BPNL{uuid.uuid4().hex[:12].upper()}"
    bare1, bare2 = Keys(party=bpn), Keys(party=bpn)  # one party, two connections
    did = Keys(party=f"did:web:wallet.example.com:{bpn}")
    did2 = Keys(party=f"did:web:other-wallet.example.org:{bpn}")
    other = Keys(party=other_bpn)
    other_did = Keys(party=f"did:web:wallet.example.com:{other_bpn}")
    for k in (bare1, bare2, did, did2, other, other_did):
        manager.add_connection(*k.args(), edr_entry())
    assert manager.rpc.count(bpn) == 4

    assert manager.clear_connections_by_party(bpn) == 3  # bare BPN + two DIDs
    for k in (bare1, bare2, did, did2):
        assert manager.get_connection(*k.args()) == {}
    for k in (other, other_did):
        assert manager.get_connection(*k.args()) != {}
    assert manager.clear_connections_by_party(bpn) == 0
    assert manager.clear_connections_by_party(other_bpn) == 2
    assert manager.rpc.count(other_bpn) == 0


def test_clear_of_unknown_party_returns_zero(manager: Any) -> None:
    assert manager.clear_connections_by_party(f"BPNL{uuid.uuid4().hex[:12].upper()}") == 0


def test_clear_pages_through_many_entries(manager: Any) -> None:
    bpn = f"BPNL{uuid.uuid4().hex[:12].upper()}"
    n = 1100  # more than one list page of at most 1000
    keys = [Keys(party=bpn if i % 2 else f"did:web:w{i % 7}.example.com:{bpn}") for i in range(n)]
    # publish in one batch (add_connection would wait per entry)
    manager._publish([(connection_key(*k.args()),
                       encode_event(build_event("edr.negotiated", "urn:connector:pytest", *k.args(),
                                                edr={"transferProcessId": f"tp-{uuid.uuid4()}"})))
                      for k in keys])
    deadline = time.monotonic() + 30
    while manager.rpc.count(bpn) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager.rpc.count(bpn) == n
    parties = {k.counter_party_id for k in keys}
    assert len(parties) == 8
    assert manager.clear_connections_by_party(bpn) == len(parties)
    assert manager.rpc.count(bpn) == 0
    assert manager.clear_connections_by_party(bpn) == 0


def test_late_expiry_keeps_a_newer_edr(manager: Any) -> None:
    """delete/clear send the transfer id they saw, so a newer EDR survives them."""
    k = Keys()
    old, new = edr_entry(), edr_entry()
    manager.add_connection(*k.args(), old)
    manager.add_connection(*k.args(), new)
    keys = dict(zip(("counter_party_id", "counter_party_address", "query_checksum",
                     "policy_checksum"), k.args()))
    manager._publish_expired([(keys, old["transferProcessId"])])
    # A later event on the same key lands in the same partition after the
    # expiry: once it is visible, the expiry has been applied too.
    renewed = dict(new, createdAt=new["createdAt"] + 1)
    manager.renew_connection(*k.args(), renewed)
    assert manager.get_connection(*k.args()) == expected_stored(renewed)


# -- several replicas, the SDK consumer flow, edrctl ------------------------------------


def test_two_instances_see_each_others_writes(make_manager: Callable[..., Any]) -> None:
    a, b = make_manager(source="urn:connector:replica-a"), make_manager(source="urn:connector:replica-b")
    k = Keys()
    entry = edr_entry()
    a.add_connection(*k.args(), entry)
    assert b.get_connection(*k.args()) == expected_stored(entry)
    assert b.delete_connection(*k.args()) is True
    assert a.get_connection(*k.args()) == {}
    assert a.delete_connection(*k.args()) is False


def test_one_instance_shared_by_threads(manager: Any) -> None:
    """A connector serves requests on many threads through one manager."""
    import concurrent.futures

    def work(_: int) -> bool:
        k = Keys()
        entry = edr_entry()
        manager.add_connection(*k.args(), entry)
        ok = manager.get_connection(*k.args()) == expected_stored(entry)
        return ok and manager.delete_connection(*k.args()) and not manager.delete_connection(*k.args())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(32)))


def test_sdk_consumer_flow_miss_add_hit_from_another_instance(
        make_manager: Callable[..., Any]) -> None:
    """BaseConnectorConsumerService.get_transfer_id: lookup, negotiate on a miss, add."""
    replica_a, replica_b = make_manager(), make_manager()
    k = Keys(party="did:web:wallet.example.com:BPNL000000000065")
    assert replica_a.get_connection_transfer_id(*k.args()) is None  # miss -> negotiate
    negotiated = edr_entry()
    tp = replica_a.add_connection(*k.args(), negotiated)
    assert tp == negotiated["transferProcessId"]
    assert replica_b.get_connection_transfer_id(*k.args()) == tp  # the other replica reuses it
    assert replica_a.get_connection_transfer_id(*k.args()) == tp


def _edrctl(worker: Worker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("edrctl")), *args], env=worker.env, capture_output=True,
                          text=True, timeout=30)


def _key_flags(k: Keys) -> list[str]:
    return ["--party", k.counter_party_id, "--address", k.counter_party_address,
            "--query", k.query_checksum, "--policy", k.policy_checksum]


def test_adapter_and_edrctl_agree(manager: Any, worker: Worker) -> None:
    k = Keys()
    entry = edr_entry()
    manager.add_connection(*k.args(), entry)
    got = _edrctl(worker, "get", *_key_flags(k))
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == manager.get_connection(*k.args())
    tid = _edrctl(worker, "transfer-id", *_key_flags(k))
    assert tid.returncode == 0, tid.stderr
    assert json.loads(tid.stdout) == entry["transferProcessId"]

    # and the other way: edrctl publishes, the adapter reads
    k2 = Keys()
    e2 = edr_entry()
    pub = _edrctl(worker, "publish", "negotiated", *_key_flags(k2), "--edr", json.dumps(e2))
    assert pub.returncode == 0, pub.stderr
    assert set(json.loads(pub.stdout)) >= {"partition", "offset"}
    deadline = time.monotonic() + 10
    while manager.get_connection(*k2.args()) == {} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.get_connection(*k2.args()) == expected_stored(e2)
    assert manager.delete_connection(*k2.args()) is True
    miss = _edrctl(worker, "get", *_key_flags(k2))
    assert miss.returncode == 1, (miss.stdout, miss.stderr)


def test_events_on_the_wire_follow_the_contract(manager: Any, worker: Worker) -> None:
    k = Keys()
    entry = edr_entry()
    manager.add_connection(*k.args(), entry)
    manager.delete_connection(*k.args())
    key = connection_key(*k.args()).encode()
    consumer = Consumer({"bootstrap.servers": worker.brokers, "group.id": f"pytest-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(worker.topic, timeout=10).topics[worker.topic]
        consumer.assign([TopicPartition(worker.topic, p, 0) for p in meta.partitions])
        found = []
        deadline = time.monotonic() + 20
        while len(found) < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.key() == key:
                found.append(msg)
    finally:
        consumer.close()
    assert len(found) == 2
    assert found[0].partition() == found[1].partition()
    for msg in found:
        assert ("content-type", b"application/cloudevents+json") in (msg.headers() or [])
    neg, exp = (json.loads(m.value()) for m in found)
    assert neg["specversion"] == "1.0" and neg["type"] == "edr.negotiated"
    assert neg["source"] == "urn:connector:pytest" and neg["subject"] == entry["transferProcessId"]
    assert neg["data"]["edr"] == expected_stored(entry)
    assert neg["data"]["counter_party_id"] == k.counter_party_id
    assert exp["type"] == "edr.expired" and "edr" not in exp["data"]
    assert exp["data"]["transfer_process_id"] == entry["transferProcessId"]
    assert neg["id"] != exp["id"]


# -- failures raise --------------------------------------------------------------------


def test_no_worker_means_timeout_not_empty(worker: Worker) -> None:
    m = EdrWorkerConnectionManager(brokers=worker.brokers, topic=worker.topic,
                                   redis_url=worker.redis_url,
                                   rpc_prefix=f"pytest-nobody-{uuid.uuid4().hex}", timeout=0.3)
    try:
        k = Keys()
        started = time.monotonic()
        with pytest.raises(EdrWorkerTimeout):
            m.get_connection(*k.args())
        assert time.monotonic() - started < 3
        with pytest.raises(EdrWorkerTimeout):
            m.get_connection_transfer_id(*k.args())
        with pytest.raises(EdrWorkerTimeout):
            m.delete_connection(*k.args())
        with pytest.raises(EdrWorkerTimeout):
            m.clear_connections_by_party("BPNL")
        assert issubclass(EdrWorkerTimeout, EdrWorkerError)
    finally:
        m.rpc._redis.delete(m.rpc.request_queue)  # the unanswered requests
        m.close()


def test_redis_down_raises(worker: Worker) -> None:
    m = EdrWorkerConnectionManager(brokers=worker.brokers, topic=worker.topic,
                                   redis_url="redis://127.0.0.1:1/0", rpc_prefix=worker.rpc_prefix,
                                   timeout=0.5)
    try:
        with pytest.raises(EdrWorkerError):
            m.get_connection(*Keys().args())
    finally:
        m.close()


def test_worker_error_reply_raises(manager: Any) -> None:
    with pytest.raises(EdrWorkerReplyError):
        manager.rpc.call("no_such_op", {})


def test_kafka_down_raises_on_add(worker: Worker) -> None:
    m = EdrWorkerConnectionManager(brokers="127.0.0.1:1", topic=worker.topic,
                                   redis_url=worker.redis_url, rpc_prefix=worker.rpc_prefix,
                                   timeout=1.0, publish_timeout=1.0)
    with pytest.raises(EdrWorkerError):
        m.add_connection(*Keys().args(), edr_entry())
    m.close(timeout=0)


def test_ping_reports_the_store(manager: Any, worker: Worker) -> None:
    info = manager.rpc.ping()
    assert info["store"] == worker.store
    assert isinstance(info["entries"], int)


def test_env_defaults(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDR_KAFKA_BROKERS", worker.brokers)
    monkeypatch.setenv("EDR_TOPIC", worker.topic)
    monkeypatch.setenv("EDR_REDIS_URL", worker.redis_url)
    monkeypatch.setenv("EDR_RPC_PREFIX", worker.rpc_prefix)
    monkeypatch.setenv("EDR_TIMEOUT_MS", "2500")
    m = EdrWorkerConnectionManager()
    try:
        assert m.timeout == 2.5 and m.topic == worker.topic
        k = Keys()
        m.add_connection(*k.args(), edr_entry())
        assert m.get_connection_transfer_id(*k.args())
    finally:
        m.close()


def test_logs_never_contain_edr_contents(make_manager: Callable[..., Any],
                                         caplog: pytest.LogCaptureFixture) -> None:
    m = make_manager(verbose=True)
    secret = f"secret-token-{uuid.uuid4().hex}"
    k = Keys()
    caplog.set_level("DEBUG")
    m.add_connection(*k.args(), edr_entry(authorization=secret))
    m.get_connection(*k.args())
    m.delete_connection(*k.args())
    assert caplog.records, "verbose mode logs each write"
    assert secret not in caplog.text


# -- drop-in for the SDK managers: stop(), open_connections, SDK arguments ----------------


def test_stop_awaits_fire_and_forget_writes(make_manager: Callable[..., Any]) -> None:
    """stop() at shutdown, then a second manager opened on the same state sees every write."""
    writer = make_manager(wait_applied=False)
    keys = [Keys() for _ in range(30)]
    entries = [edr_entry() for _ in keys]
    for k, e in zip(keys, entries):
        writer.add_connection(*k.args(), e)
    assert writer.delete_connection(*Keys().args()) is False
    writer.stop()
    assert writer.pending_writes == 0
    second = make_manager()
    for k, e in zip(keys, entries):  # no polling: stop() already awaited them
        assert second.get_connection(*k.args()) == expected_stored(e)
    writer.stop()  # idempotent
    # still usable after stop(): delete (fire-and-forget), stop, the other sees it
    assert writer.delete_connection(*keys[0].args()) is True
    writer.stop()
    assert second.get_connection(*keys[0].args()) == {}
    writer.add_connection(*keys[0].args(), entries[0])
    writer.stop()
    assert second.get_connection_transfer_id(*keys[0].args()) == entries[0]["transferProcessId"]


def test_open_connections_snapshot_from_the_worker(manager: Any) -> None:
    bpn = f"BPNL{uuid.uuid4().hex[:12].upper()}"
    a, b = Keys(party=bpn), Keys(party=bpn)
    did = Keys(party=f"did:web:wallet.example.com:{bpn}")
    for k in (a, b, did):
        manager.add_connection(*k.args(), edr_entry())
    snap = manager.open_connections
    assert snap["edrs"] == manager.rpc.count()
    for k in (a, b, did):
        assert snap[k.counter_party_id][k.counter_party_address][k.query_checksum][
            k.policy_checksum] == manager.get_connection(*k.args())
    total_in_shape = sum(1 for party, addrs in snap.items() if party != "edrs"
                         for queries in addrs.values() for policies in queries.values()
                         for _ in policies)
    assert total_in_shape == snap["edrs"]
    snap[bpn].clear()
    assert manager.get_connection(*a.args()) != {}  # the snapshot is not the cache
    assert manager.clear_connections_by_party(bpn) == 2
    after = manager.open_connections
    assert bpn not in after and did.counter_party_id not in after


def test_sdk_positional_arguments_against_the_worker(worker: Worker,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """MemoryConnectionManager's positional order, plus an engine as the Postgres managers take."""
    settings = dict(brokers=worker.brokers, topic=worker.topic, redis_url=worker.redis_url,
                    rpc_prefix=worker.rpc_prefix, timeout=5.0)
    caplog.set_level("INFO", logger="edr_worker_client")
    for args in (("providerId", "edrs", None, False), (object(), "providerId", "edr_connections")):
        m = EdrWorkerConnectionManager(*args, **settings)
        try:
            k = Keys()
            entry = edr_entry()
            assert m.add_connection(*k.args(), entry) == entry["transferProcessId"]
            assert m.get_connection(*k.args()) == expected_stored(entry)
            assert m.delete_connection(*k.args()) is True
            m.stop()
        finally:
            m.close()
    assert "engine, table_name" in caplog.text
