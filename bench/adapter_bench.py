#!/usr/bin/env python3
"""adapter_bench.py: get_connection through the edr-worker adapter vs the SDK's
PostgresConnectionManager, on the same PostgreSQL and the same data.

For each size (default 1,000 and 100,000 stored entries):
  * SDK side: the Tractus-X SDK's PostgresConnectionManager on its own table
    (rows inserted in bulk through the SDK's own table model, as its
    add_connection would store them);
  * our side: EdrWorkerConnectionManager -> Redis -> an edr-worker started
    here with the postgres store, its table filled through edr.negotiated
    events on a topic of its own;
  * latency: one thread, --lookups get_connection calls on random stored keys
    (the same keys in the same order for both), p50/p99;
  * throughput: --threads threads calling get_connection for --duration s.
Ratios are SDK/adapter for latency and adapter/SDK for throughput (> 1 means
the adapter is better). Every table, topic and RPC prefix is unique to the
run and dropped at the end.

The newest tractusx-sdk release's PostgresConnectionManager cannot be
constructed (it lacks clear_connections_by_party); run this under a venv with
a release where it can -- bench/adapter_bench.sh sets that up.

Settings: EDR_PG_DSN, EDR_KAFKA_BROKERS, EDR_REDIS_URL (scripts/services.sh
env), EDR_BUILD_DIR (edr-worker; default build/).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN = f"{os.getpid()}_{int(time.time())}"
FIELDS = ("counter_party_id", "counter_party_address", "query_checksum", "policy_checksum")


def log(msg: str) -> None:
    print(f"adapter_bench: {msg}", file=sys.stderr, flush=True)


def make_data(n: int, seed: int = 7) -> list[tuple[tuple[str, str, str, str], dict[str, Any]]]:
    """n connections over n/10 parties (half bare BPNs, half DIDs); a prefix of the
    result is the data set of a smaller size."""
    rnd = random.Random(seed)
    parties = max(1, n // 10)
    out = []
    for i in range(n):
        p = rnd.randrange(parties)
        bpn = f"BPNL{p:012d}"
        party = bpn if p % 2 else f"did:web:wallet{p % 17}.example.com:{bpn}"
        address = f"https://provider{p}.example.com/api/v1/dsp"
        q = "%064x" % rnd.getrandbits(256)
        pol = "%064x" % rnd.getrandbits(256)
        tp = str(uuid.UUID(int=rnd.getrandbits(128)))
        entry = {"@id": tp, "transferProcessId": tp, "assetId": f"asset-{i}",
                 "agreementId": f"agreement-{i}", "contractNegotiationId": f"neg-{i}",
                 "createdAt": 1795000000000 + i}
        out.append(((party, address, q, pol), entry))
    return out


def sqlalchemy_url(dsn: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix):]
    return dsn


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def measure(get: Callable[[tuple[str, str, str, str]], Any], keys: list[tuple[str, str, str, str]],
            threads: int, duration: float) -> dict[str, float]:
    for k in keys[:50]:  # warm pools and caches
        get(k)
    lat = []
    for k in keys:
        t0 = time.perf_counter()
        r = get(k)
        lat.append((time.perf_counter() - t0) * 1000.0)
        if not r:
            raise RuntimeError("a stored key was not found")
    stop = threading.Event()
    counts = [0] * threads
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        rnd = random.Random(i)
        try:
            while not stop.is_set():
                get(keys[rnd.randrange(len(keys))])
                counts[i] += 1
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"throughput run failed: {errors[0]!r}")
    return {"p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99),
            "mean_ms": statistics.fmean(lat), "ops_per_s": sum(counts) / elapsed}


class SdkSide:
    def __init__(self, dsn: str) -> None:
        from sqlalchemy import create_engine
        from tractusx_sdk.dataspace.managers.connection import PostgresConnectionManager

        self.table = f"bench_sdk_{RUN}"
        self.engine = create_engine(sqlalchemy_url(dsn), pool_size=16, max_overflow=0)
        self.manager = PostgresConnectionManager(self.engine, table_name=self.table)

    def load(self, data: list) -> None:
        from sqlalchemy import delete, insert

        table = self.manager.EDRConnection.__table__
        rows = [{"transfer_id": e["@id"], "counter_party_id": k[0], "counter_party_address": k[1],
                 "query_checksum": k[2], "policy_checksum": k[3], "edr_data": e, "edr_hash": None}
                for k, e in data]
        with self.engine.begin() as conn:
            conn.execute(delete(table))
            for i in range(0, len(rows), 5000):
                conn.execute(insert(table), rows[i:i + 5000])
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f'ANALYZE "{self.table}"')

    def get(self, k: tuple[str, str, str, str]) -> Any:
        return self.manager.get_connection(*k)

    def drop(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{self.table}"')
        self.engine.dispose()


class AdapterSide:
    def __init__(self, dsn: str, brokers: str, redis_url: str, build_dir: Path) -> None:
        from edr_worker_client import EdrWorkerConnectionManager

        self.dsn, self.brokers, self.redis_url = dsn, brokers, redis_url
        self.topic = f"bench-adapter-{RUN}"
        self.prefix = f"bench-adapter-{RUN}"
        self.table = f"bench_edr_{RUN}"
        self.build_dir = build_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"adapter-bench-worker-{RUN}.log"
        self.manager = None
        self._create_topics()
        try:
            self._start_worker()
        except BaseException:
            self.stop()
            raise
        self.manager = EdrWorkerConnectionManager(brokers=brokers, topic=self.topic,
                                                  redis_url=redis_url, rpc_prefix=self.prefix,
                                                  timeout=10.0, source="urn:connector:bench")

    def _create_topics(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.brokers})
        for f in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                      for t in (self.topic, self.topic + ".dlq")]).values():
            f.result(timeout=60)

    def _start_worker(self) -> None:
        from edr_worker_client import EdrRpcClient, EdrWorkerError

        env = {**os.environ, "EDR_KAFKA_BROKERS": self.brokers, "EDR_REDIS_URL": self.redis_url,
               "EDR_TOPIC": self.topic, "EDR_DLQ_TOPIC": self.topic + ".dlq",
               "EDR_GROUP_ID": f"bench-adapter-{RUN}", "EDR_RPC_PREFIX": self.prefix,
               "EDR_STORE": "postgres", "EDR_PG_DSN": self.dsn, "EDR_PG_TABLE": self.table,
               "EDR_HTTP_ADDR": "off", "EDR_LOG_LEVEL": "warn"}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([str(self.build_dir / "edr-worker")], env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        rpc = EdrRpcClient(self.redis_url, self.prefix, timeout=1.0)
        deadline = time.monotonic() + 60
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"edr-worker exited {self.proc.returncode}; see {self.log_path}")
                try:
                    info = rpc.ping()
                    if info.get("store") != "postgres":
                        raise RuntimeError(f"worker store is {info.get('store')}, not postgres")
                    return
                except EdrWorkerError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"edr-worker did not answer; see {self.log_path}")
        finally:
            rpc.close()

    def load(self, data: list, timeout: float) -> float:
        """Publish every entry as edr.negotiated; wait until the worker stored them. Returns s."""
        from confluent_kafka import Producer
        from edr_worker_client import build_event, connection_key, encode_event

        t0 = time.monotonic()
        prod = Producer({"bootstrap.servers": self.brokers, "enable.idempotence": True,
                         "linger.ms": 20, "queue.buffering.max.messages": 200000})
        failed: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(err.str())

        already = self.manager.rpc.count()
        for k, e in data:
            value = encode_event(build_event("edr.negotiated", "urn:connector:bench", *k, edr=e))
            while True:
                try:
                    prod.produce(self.topic, value=value, key=connection_key(*k).encode(),
                                 headers=[("content-type", b"application/cloudevents+json")],
                                 on_delivery=report)
                    break
                except BufferError:
                    prod.poll(0.1)
            prod.poll(0)
        if prod.flush(120) or failed:
            raise RuntimeError(f"publishing the data set failed: {failed[:1]}")
        target = already + len({k for k, _ in data})
        deadline = time.monotonic() + timeout
        while (n := self.manager.rpc.count()) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker stored {n} of {target} entries in {timeout} s")
            time.sleep(0.5)
        return time.monotonic() - t0

    def get(self, k: tuple[str, str, str, str]) -> Any:
        return self.manager.get_connection(*k)

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        from confluent_kafka.admin import AdminClient

        for f in AdminClient({"bootstrap.servers": self.brokers}).delete_topics(
                [self.topic, self.topic + ".dlq"]).values():
            try:
                f.result(timeout=30)
            except Exception:
                pass
        from sqlalchemy import create_engine

        engine = create_engine(sqlalchemy_url(self.dsn))
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{self.table}"')
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{self.table}_offsets"')
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--lookups", type=int, default=1000, help="latency samples per side and size")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0, help="throughput seconds per side")
    ap.add_argument("--load-timeout", type=float, default=900.0)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    sdk_version = metadata.version("tractusx-sdk")
    dsn = os.environ.get("EDR_PG_DSN")
    brokers = os.environ.get("EDR_KAFKA_BROKERS")
    redis_url = os.environ.get("EDR_REDIS_URL")
    if not (dsn and brokers and redis_url):
        log("set EDR_PG_DSN, EDR_KAFKA_BROKERS, EDR_REDIS_URL (eval \"$(scripts/services.sh env)\")")
        return 2
    build_dir = Path(os.environ.get("EDR_BUILD_DIR", ROOT / "build"))
    try:
        sdk = SdkSide(dsn)
    except TypeError as exc:
        log(f"tractusx-sdk {sdk_version}: PostgresConnectionManager cannot be constructed: {exc}")
        log("use a release where it can (bench/adapter_bench.sh installs one)")
        return 2
    log(f"tractusx-sdk {sdk_version}; SDK table {sdk.table}")
    try:
        ours = AdapterSide(dsn, brokers, redis_url, build_dir)
    except BaseException:
        sdk.drop()
        raise
    results: dict[str, Any] = {"sdk_version": sdk_version, "threads": args.threads,
                               "lookups": args.lookups, "duration_s": args.duration, "sizes": {}}
    try:
        sizes = sorted(int(s) for s in args.sizes.split(","))
        everything = make_data(sizes[-1])
        loaded = 0
        for size in sizes:
            data = everything[:size]
            sdk.load(data)
            # the worker's table grows: publish only what is new
            took = ours.load(data[loaded:], args.load_timeout)
            loaded = size
            log(f"{size} entries stored (worker ingest {took:.1f} s)")
            rnd = random.Random(42)
            keys = [data[rnd.randrange(size)][0] for _ in range(args.lookups)]
            for k in keys[:20]:  # both sides return the same entry
                if sdk.get(k) != ours.get(k):
                    raise RuntimeError("the SDK and the adapter disagree on a stored entry")
            s = measure(sdk.get, keys, args.threads, args.duration)
            o = measure(ours.get, keys, args.threads, args.duration)
            row = {"sdk": s, "adapter": o,
                   "latency_p50_ratio_sdk_over_adapter": s["p50_ms"] / o["p50_ms"],
                   "latency_p99_ratio_sdk_over_adapter": s["p99_ms"] / o["p99_ms"],
                   "throughput_ratio_adapter_over_sdk": o["ops_per_s"] / s["ops_per_s"]}
            results["sizes"][str(size)] = row
            print(f"size={size:>6}  SDK postgres: p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms  "
                  f"{s['ops_per_s']:.0f} ops/s | adapter: p50 {o['p50_ms']:.3f} ms  "
                  f"p99 {o['p99_ms']:.3f} ms  {o['ops_per_s']:.0f} ops/s | "
                  f"p50 x{row['latency_p50_ratio_sdk_over_adapter']:.2f}  "
                  f"p99 x{row['latency_p99_ratio_sdk_over_adapter']:.2f}  "
                  f"throughput x{row['throughput_ratio_adapter_over_sdk']:.2f}", flush=True)
    finally:
        ours.stop()
        sdk.drop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
