"""Fixtures: the local stack's settings, an own edr-worker, adapter factories.

The session starts an edr-worker from the built binary for each store kind
(memory, then postgres; every integration test runs against both), each on a
topic, dead-letter topic, consumer group, RPC prefix and table unique to
this run, so concurrent runs and other suites sharing the servers never
interfere. Topics and tables are dropped at the end.
Binary: $EDR_BUILD_DIR/edr-worker, else ./build/edr-worker.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
RUN_ID = f"{os.getpid()}-{int(time.time() * 1000)}"


def _stack_env() -> dict[str, str]:
    """EDR_KAFKA_BROKERS / EDR_REDIS_URL from the environment or `scripts/services.sh env`."""
    env: dict[str, str] = {}
    if not (os.environ.get("EDR_KAFKA_BROKERS") and os.environ.get("EDR_REDIS_URL")):
        script = REPO / "scripts" / "services.sh"
        out = subprocess.run([str(script), "env"], capture_output=True, text=True, check=True,
                             timeout=60).stdout
        for line in out.splitlines():
            parts = shlex.split(line)
            if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
                name, value = parts[1].split("=", 1)
                env[name] = value
    for name in ("EDR_KAFKA_BROKERS", "EDR_REDIS_URL", "EDR_PG_DSN"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def build_dir() -> Path:
    if os.environ.get("EDR_BUILD_DIR"):
        return Path(os.environ["EDR_BUILD_DIR"]).resolve()
    return REPO / "build"


def binary(name: str) -> Path:
    path = build_dir() / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build the project first (or set EDR_BUILD_DIR)")
    return path


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    env = _stack_env()
    for name in ("EDR_KAFKA_BROKERS", "EDR_REDIS_URL"):
        if not env.get(name):
            pytest.fail(f"{name} unknown: start the stack with scripts/services.sh up")
    return env


def _create_topics(brokers: str, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1)
                                   for n in names], operation_timeout=30)
    for fut in futures.values():
        fut.result(timeout=60)


def _delete_topics(brokers: str, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers})
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        try:
            fut.result(timeout=30)
        except Exception:  # cleanup only; a leftover topic harms nobody
            pass


class Worker:
    """One edr-worker process and the settings to reach it."""

    def __init__(self, stack: dict[str, str], tmp: Path, store: str) -> None:
        self.store = store
        run = f"{RUN_ID}-{store}"
        self.topic = f"pytest-edr-{run}"
        self.dlq_topic = f"{self.topic}.dlq"
        self.rpc_prefix = f"pytest-edr-{run}"
        self.pg_dsn = stack.get("EDR_PG_DSN", "")
        self.pg_table = f"pytest_edr_{run}".replace("-", "_")
        self.brokers = stack["EDR_KAFKA_BROKERS"]
        self.redis_url = stack["EDR_REDIS_URL"]
        self.log_path = tmp / "edr-worker.log"
        self.env = {
            **os.environ,
            "EDR_KAFKA_BROKERS": self.brokers,
            "EDR_REDIS_URL": self.redis_url,
            "EDR_TOPIC": self.topic,
            "EDR_DLQ_TOPIC": self.dlq_topic,
            "EDR_GROUP_ID": f"pytest-edr-{run}",
            "EDR_RPC_PREFIX": self.rpc_prefix,
            "EDR_STORE": store,
            "EDR_PG_DSN": self.pg_dsn,
            "EDR_PG_TABLE": self.pg_table,
            "EDR_WORKER_ID": f"pytest-{run}",
            "EDR_HTTP_ADDR": "off",
            "EDR_LOG_LEVEL": "info",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.store == "postgres" and not self.pg_dsn:
            pytest.fail("EDR_PG_DSN unknown: start the stack with scripts/services.sh up")
        _create_topics(self.brokers, [self.topic, self.dlq_topic])
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(binary("edr-worker"))], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=self.log_path.parent)
        log.close()
        from edr_worker_client import EdrRpcClient, EdrWorkerError

        rpc = EdrRpcClient(self.redis_url, self.rpc_prefix, timeout=1.0)
        deadline = time.monotonic() + 60
        try:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"edr-worker exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    rpc.ping()
                    # ping answers while a memory worker restores its state
                    # from the changelog; count waits for the whole state
                    rpc.count()
                    return
                except EdrWorkerError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"edr-worker did not answer ping and count in 60 s:\n"
                                    f"{self.log_tail()}")
                    time.sleep(0.05)
        finally:
            rpc.close()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def drop_keys(self) -> None:
        import redis

        r = redis.Redis.from_url(self.redis_url)
        try:
            r.delete(f"{self.rpc_prefix}:requests")
        finally:
            r.close()

    def drop_table(self) -> None:
        if self.store != "postgres":
            return
        import psycopg

        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            for table in (self.pg_table, f"{self.pg_table}_offsets"):
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')  # name made here, not input

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            pytest.fail(f"edr-worker is not running (exit {code}):\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session", params=["memory", "postgres"])
def worker(request: pytest.FixtureRequest, stack: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One edr-worker per store kind; every integration test runs against each."""
    w = Worker(stack, tmp_path_factory.mktemp(f"edr-worker-{request.param}"), request.param)
    try:
        w.start()
        yield w
    finally:
        code = w.stop()
        _delete_topics(w.brokers, [w.topic, w.dlq_topic])
        w.drop_table()
        w.drop_keys()
    assert code == 0, f"edr-worker exited with {code} on SIGTERM:\n{w.log_tail()}"


@pytest.fixture
def make_manager(worker: Worker) -> Iterator[Callable[..., Any]]:
    """Factory of adapters wired to the session's worker (each one a 'connector replica')."""
    from edr_worker_client import EdrWorkerConnectionManager

    worker.check_alive()  # fail fast instead of a timeout per lookup
    made: list[EdrWorkerConnectionManager] = []

    def make(**kwargs: Any) -> EdrWorkerConnectionManager:
        opts: dict[str, Any] = dict(brokers=worker.brokers, topic=worker.topic,
                                    redis_url=worker.redis_url, rpc_prefix=worker.rpc_prefix,
                                    timeout=5.0, source="urn:connector:pytest")
        opts.update(kwargs)
        m = EdrWorkerConnectionManager(**opts)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()
    worker.check_alive()


@pytest.fixture
def manager(make_manager: Callable[..., Any]) -> Any:
    return make_manager()


class Keys:
    """Unique four keys per test, so tests never see each other's entries."""

    def __init__(self, party: str | None = None, address: str | None = None) -> None:
        tag = uuid.uuid4().hex
        self.counter_party_id = party or f"BPNL{tag[:12].upper()}"
        self.counter_party_address = address or f"https://provider-{tag[:8]}.example.com/api/v1/dsp"
        self.query_checksum = uuid.uuid4().hex + uuid.uuid4().hex
        self.policy_checksum = uuid.uuid4().hex + uuid.uuid4().hex

    def args(self) -> tuple[str, str, str, str]:
        return (self.counter_party_id, self.counter_party_address, self.query_checksum,
                self.policy_checksum)


def edr_entry(transfer_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """An EDR entry as EDC's management API returns it."""
    tp = transfer_id or f"tp-{uuid.uuid4()}"
    entry = {
        "@id": tp,
        "@type": "EndpointDataReferenceEntry",
        "providerId": "BPNL000000000065",
        "assetId": f"asset-{uuid.uuid4().hex[:8]}",
        "agreementId": f"agreement-{uuid.uuid4().hex[:8]}",
        "transferProcessId": tp,
        "contractNegotiationId": f"neg-{uuid.uuid4().hex[:8]}",
        "createdAt": int(time.time() * 1000),
        "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
    }
    entry.update(extra)
    return entry
