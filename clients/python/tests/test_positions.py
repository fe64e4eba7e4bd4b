"""Read-your-writes through min_positions (schemas/README.md section 2, v2).

Unit part (fakes): a write whose delivery report carries its position is
confirmed by one ``wait_positions`` lookup with exactly that position, never
by polling ``get_connection``; a report without a position falls back to the
predicates. Integration part (the real worker, memory and postgres): the
request the adapter sends, a position nobody reached (a timeout, False),
and get_by_transfer_id / the v2 filters through the client.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from conftest import Keys, Worker, edr_entry
from edr_worker_client import EdrValidationError, EdrWorkerConnectionManager
from edr_worker_client.rpc import EdrRpcClient

ADAPTER = dict(brokers="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0", timeout=0.2,
               publish_timeout=0.5)
KEYS = ("BPNL000000000065", "https://provider.example.com/api/v1/dsp", "a" * 64, "b" * 64)


class Msg:
    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class PositionProducer:
    """Delivers on flush() with positions: partition 2, offsets 40, 41, ..."""

    def __init__(self, with_positions: bool = True) -> None:
        self.reports: list[Any] = []
        self.next = 40
        self.with_positions = with_positions

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        self.reports.append(on_delivery)

    def flush(self, timeout: float = 0) -> int:
        reports, self.reports = self.reports, []
        for report in reports:
            report(None, Msg(2, self.next) if self.with_positions else None)
            self.next += 1
        return 0

    def poll(self, timeout: float = 0) -> int:
        return self.flush(timeout)


class PositionRpc:
    timeout = 0.2

    def __init__(self, reached: bool = True) -> None:
        self.waits: list[tuple[str, dict[int, int], float]] = []
        self.gets = 0
        self.reached = reached
        self.tid: str | None = "tp-1"

    def wait_positions(self, party: str, positions: dict[int, int], timeout: float) -> bool:
        self.waits.append((party, dict(positions), timeout))
        return self.reached

    def get_connection(self, keys: dict[str, str]) -> dict[str, Any]:
        self.gets += 1
        return {}

    def get_connection_transfer_id(self, keys: dict[str, str]) -> str | None:
        tid, self.tid = self.tid, None  # gone once deleted
        return tid

    def close(self) -> None:
        pass


def manager_with(rpc: PositionRpc, producer: PositionProducer,
                 **kwargs: Any) -> EdrWorkerConnectionManager:
    opts: dict[str, Any] = dict(ADAPTER, rpc_client=rpc, apply_timeout=3.0)
    opts.update(kwargs)
    m = EdrWorkerConnectionManager(**opts)
    m._producer = producer  # type: ignore[assignment]
    return m


def test_a_write_waits_for_its_own_position_not_by_polling() -> None:
    rpc, producer = PositionRpc(), PositionProducer()
    m = manager_with(rpc, producer)
    m.add_connection(*KEYS, {"transferProcessId": "tp-1"})
    assert rpc.waits == [(KEYS[0], {2: 40}, pytest.approx(3.0, abs=0.5))]
    assert rpc.gets == 0 and m.pending_writes == 0
    assert m.delete_connection(*KEYS) is True
    assert rpc.waits[-1][1] == {2: 41}
    assert m.delete_connection(*KEYS) is False  # nothing left: nothing published
    assert len(rpc.waits) == 2
    m.close(timeout=0)


def test_a_position_not_reached_stays_pending_until_stop_sees_it(
        caplog: pytest.LogCaptureFixture) -> None:
    rpc, producer = PositionRpc(reached=False), PositionProducer()
    m = manager_with(rpc, producer, apply_timeout=0.1)
    m.add_connection(*KEYS, {"transferProcessId": "tp-1"})
    assert m.pending_writes == 1
    assert "not yet visible" in caplog.text
    rpc.reached = True
    m.stop()
    assert m.pending_writes == 0
    assert rpc.waits[-1][1] == {2: 40} and rpc.gets == 0
    m.close(timeout=0)


def test_without_positions_the_predicates_decide() -> None:
    rpc, producer = PositionRpc(), PositionProducer(with_positions=False)
    m = manager_with(rpc, producer, apply_timeout=0.1)
    m.add_connection(*KEYS, {"transferProcessId": "tp-1"})
    assert rpc.waits == [] and rpc.gets > 0
    m.close(timeout=0)


def test_wait_args_are_checked() -> None:
    rpc = EdrRpcClient("redis://127.0.0.1:1/0", "x", 0.2)
    keys = dict(zip(("counter_party_id", "counter_party_address", "query_checksum",
                     "policy_checksum"), KEYS))
    for bad in (dict(wait_ms=-1), dict(wait_ms=30001), dict(wait_ms=True),
                dict(min_positions={-1: 2}), dict(min_positions={1: -2}),
                dict(min_positions={"1": 2})):
        with pytest.raises(EdrValidationError):
            rpc.get_connection(keys, **bad)
    with pytest.raises(EdrValidationError):
        rpc.get_by_transfer_id("")
    rpc.close()


# -- against the worker ------------------------------------------------------


@pytest.mark.integration
def test_the_request_carries_the_delivery_position(make_manager: Any, worker: Worker) -> None:
    """add-then-get on the real stack, and the min_positions the adapter sent
    equals the event's place on the topic."""
    sent: list[dict[str, Any]] = []
    m = make_manager()
    real_call = m.rpc.call

    def spy(op: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        sent.append({"op": op, "args": dict(args or {})})
        return real_call(op, args, timeout)

    m.rpc.call = spy  # type: ignore[method-assign]
    k = Keys()
    entry = edr_entry()
    m.add_connection(*k.args(), entry)
    waits = [s for s in sent if "min_positions" in s["args"]]
    assert len(waits) == 1 and waits[0]["op"] == "list_connections"
    (partition, offset), = waits[0]["args"]["min_positions"].items()
    assert int(partition) >= 0 and offset >= 0
    assert m.get_connection(*k.args())["transferProcessId"] == entry["transferProcessId"]
    assert m.delete_connection(*k.args()) is True
    assert m.delete_connection(*k.args()) is False


@pytest.mark.integration
def test_a_position_nobody_reached_is_false_after_the_wait(worker: Worker) -> None:
    rpc = EdrRpcClient(worker.redis_url, worker.rpc_prefix, timeout=5.0)
    started = time.monotonic()
    assert rpc.wait_positions("BPNLNOBODY", {0: 10 ** 12}, 0.5) is False
    assert time.monotonic() - started >= 0.45
    rpc.close()


@pytest.mark.integration
def test_wait_ms_answers_when_the_write_lands(make_manager: Any, worker: Worker) -> None:
    import threading
    writer = make_manager(wait_applied=False)
    rpc = EdrRpcClient(worker.redis_url, worker.rpc_prefix, timeout=5.0)
    k = Keys()
    keys = dict(zip(("counter_party_id", "counter_party_address", "query_checksum",
                     "policy_checksum"), k.args()))
    tid = f"tp-{uuid.uuid4().hex[:8]}"
    timer = threading.Timer(0.5, writer.add_connection, args=(*k.args(), edr_entry(tid)))
    timer.start()
    started = time.monotonic()
    assert rpc.get_connection_transfer_id(keys, wait_ms=15000) == tid
    assert time.monotonic() - started < 10
    timer.join()
    rpc.close()
