"""Single-flight: one negotiation per key across replicas (issue 17, part 2).

Replicas are processes (``multiprocessing``, spawn), each with its own adapter
(``single_flight=True``) and its own SDK ``ConnectorConsumerService``
(tests/sf_replica.py), against one fake EDC in this process that counts the
negotiations (``POST /v3/edrs``) and one edr-worker.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sf_replica
from conftest import Worker
from edr_worker_client import EdrRpcClient, EdrValidationError, EdrWorkerConnectionManager
from fake_edc import FakeEdc
from test_sdk_service import API_KEY, request_args, sdk_keys

from edr_worker_client import connection_key

pytestmark = pytest.mark.integration
REPLICAS = 8
CTX = multiprocessing.get_context("spawn")


@pytest.fixture
def edc() -> Iterator[FakeEdc]:
    fake = FakeEdc(api_key=API_KEY, provider_id=f"BPNL{uuid.uuid4().hex[:12].upper()}",
                   asset_id=f"urn:uuid:{uuid.uuid4()}").start()
    try:
        yield fake
    finally:
        fake.stop()


class Fleet:
    """Replica processes that start together on ``go``."""

    def __init__(self, worker: Worker, edc: FakeEdc, lease_ttl: float) -> None:
        self.cfg = {"brokers": worker.brokers, "topic": worker.topic,
                    "redis_url": worker.redis_url, "rpc_prefix": worker.rpc_prefix,
                    "lease_ttl": lease_ttl, "version": "jupiter",
                    "edc": {"provider_id": edc.provider_id, "dsp_address": edc.dsp_address,
                            "asset_id": edc.asset_id, "base_url": edc.base_url}}
        self.messages: Any = CTX.Queue()
        self.procs: list[Any] = []

    def spawn(self, n: int) -> Any:
        go = CTX.Event()
        procs = [CTX.Process(target=sf_replica.replica, args=(self.cfg, self.messages, go))
                 for _ in range(n)]
        for p in procs:
            p.start()
        self.procs.extend(procs)
        return go

    def expect(self, kind: str, n: int, timeout: float = 120.0) -> list[tuple[str, int, Any]]:
        """The next n messages, all of ``kind`` (an error message fails the test)."""
        got: list[tuple[str, int, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            try:
                msg = self.messages.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"{len(got)} of {n} replicas said {kind!r} within {timeout} s")
            assert msg[0] == kind, msg
            got.append(msg)
        return got

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(10)


@pytest.fixture
def fleet_factory(worker: Worker, edc: FakeEdc) -> Iterator[Any]:
    worker.check_alive()
    made: list[Fleet] = []

    def make(lease_ttl: float) -> Fleet:
        f = Fleet(worker, edc, lease_ttl)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()
    worker.check_alive()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def test_eight_replicas_missing_one_key_negotiate_once(fleet_factory: Any, edc: FakeEdc) -> None:
    fleet = fleet_factory(lease_ttl=30.0)
    go = fleet.spawn(REPLICAS)
    fleet.expect("ready", REPLICAS)
    assert edc.negotiations == 0
    go.set()  # all at once
    fleet.expect("calling", REPLICAS)
    results = fleet.expect("ok", REPLICAS)
    transfer_ids = {tp for _, _, tp in results}
    print(f"\nsingle-flight: {REPLICAS} replicas, {edc.negotiations} negotiation(s), "
          f"transfer ids {sorted(transfer_ids)}")
    assert edc.negotiations == 1, edc.errors
    assert len(transfer_ids) == 1 and transfer_ids <= edc.by_transfer.keys()
    assert not edc.errors, edc.errors


def test_killed_lease_holder_lets_exactly_one_more_in(fleet_factory: Any, edc: FakeEdc,
                                                      worker: Worker) -> None:
    ttl = 4.0
    edc.stall_negotiations = 1  # the first negotiation never finalizes
    fleet = fleet_factory(lease_ttl=ttl)
    holder_go = fleet.spawn(1)
    holder_pid = fleet.expect("ready", 1)[0][1]
    rest_go = fleet.spawn(REPLICAS - 1)
    fleet.expect("ready", REPLICAS - 1)  # imports done: the race is about the lease only

    holder_go.set()
    fleet.expect("calling", 1)
    _wait(lambda: edc.negotiations == 1, 30, "the holder negotiates")
    rest_go.set()
    fleet.expect("calling", REPLICAS - 1)
    lease = f"{worker.rpc_prefix}:lease:{connection_key(*sdk_keys(request_args(edc, 'jupiter')))}"
    r = redis.Redis.from_url(worker.redis_url)
    try:
        left_at_kill = r.pttl(lease)
        os.kill(holder_pid, signal.SIGKILL)  # mid-negotiation, holding the lease
        killed_at = time.monotonic()
    finally:
        r.close()
    assert left_at_kill > 0, "the lease was gone before the holder was killed"
    assert edc.negotiations == 1

    results = fleet.expect("ok", REPLICAS - 1, timeout=ttl + 60)
    waited = time.monotonic() - killed_at
    transfer_ids = {tp for _, _, tp in results}
    print(f"\nsingle-flight, holder SIGKILLed mid-negotiation (lease {left_at_kill} ms left): "
          f"{edc.negotiations} negotiation(s) in all, {len(results)} waiters answered after "
          f"{waited:.1f} s, transfer ids {sorted(transfer_ids)}")
    assert edc.negotiations == 2, edc.errors
    assert len(transfer_ids) == 1
    (tp,) = transfer_ids
    assert tp in edc.by_transfer and edc.by_transfer[tp].negotiation_id not in edc.stalled


def test_release_deletes_only_its_own_lease(worker: Worker) -> None:
    rpc = EdrRpcClient(worker.redis_url, worker.rpc_prefix, timeout=2.0)
    try:
        name = rpc.lease_key(uuid.uuid4().hex)
        assert rpc.try_lease(name, "mine", 10_000) is True
        assert rpc.try_lease(name, "theirs", 10_000) is False
        assert 0 < rpc.lease_left_ms(name) <= 10_000
        assert rpc.release_lease(name, "theirs") is False
        assert rpc.lease_left_ms(name) > 0
        assert rpc.release_lease(name, "mine") is True
        assert rpc.lease_left_ms(name) == 0
        assert rpc.try_lease(name, "theirs", 50) is True  # expires by itself
        _wait(lambda: rpc.lease_left_ms(name) == 0, 10, "the lease expires")
    finally:
        rpc.close()


def test_single_flight_settings_are_checked(worker: Worker) -> None:
    for bad in ({"lease_ttl": 0}, {"single_flight_wait": -1}):
        with pytest.raises(EdrValidationError):
            EdrWorkerConnectionManager(brokers=worker.brokers, redis_url=worker.redis_url,
                                       single_flight=True, **bad)
