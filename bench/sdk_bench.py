#!/usr/bin/env python3
"""sdk_bench.py: the Tractus-X SDK's own connection managers doing the same
puts, gets and deletes as bench/store_bench.c, on the same entries.

Entries: the same N keys and the same ~600-byte EDR JSON that store_bench
generates (byte for byte), plus the three members the SDK removes before
storing (@type, @context, providerId), so what the SDK keeps is what
store_bench stores.

  memory    MemoryConnectionManager: add_connection for every entry,
            get_connection for every entry, delete_connection for every one
  file      FileSystemConnectionManager (persist_interval, default 5 s): the
            same calls. They only touch the in-memory dicts; the file is
            written by a background thread every persist_interval seconds
            (rewritten in place, no fsync). Also timed: one explicit full
            save of the N entries (what each persist costs), and constructing
            a new manager on the saved file (the reload).
  postgres  PostgresConnectionManager through SQLAlchemy (psycopg 3): timed
            add_connection for the first --pg-put-sample entries (each is its
            own session: primary-key probe, INSERT, COMMIT); the rest are then
            inserted in bulk through the SDK's own table model, untimed, so
            the table holds all N rows; then get_connection and
            delete_connection on --pg-get-sample random entries (the SDK has
            no index on the four lookup columns: every get scans the table).
            If the installed release cannot construct it, one record with the
            exact error is printed instead.

Output: one JSON line per run and figure on stdout:
  {"bench":"sdk","sdk_version":..,"backend":..,"metric":..,"value":..,
   "unit":..,"entries":N,"ops":K,"run":r}
and {"bench":"sdk","backend":"postgres","error":"..."} when it cannot run.

usage: sdk_bench.py [--managers memory,file,postgres] [--entries N] [--runs R]
                    [--dir DIR] [--persist-interval S] [--pg-put-sample K]
                    [--pg-get-sample K]
env:   EDR_PG_DSN (postgres)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

M64 = (1 << 64) - 1


def sb_hex(a: int, b: int) -> str:
    """store_bench.c's sb_hex: four 16-digit hex words."""
    a &= M64
    b &= M64
    return "%016x%016x%016x%016x" % (a, b, a ^ 0x5BD1E995, (b * 31) & M64)


def make_data(n: int) -> list[tuple[tuple[str, str, str, str], dict[str, Any]]]:
    """store_bench.c's sb_data_make, plus the members the SDK strips."""
    out = []
    for i in range(n):
        cpid = "BPNL%012d" % (i % 5000)
        addr = "https://provider-%d.example.com/api/v1/dsp" % (i % 997)
        query = sb_hex(i * 2654435761, i + 17)
        policy = sb_hex(i * 40503, ~i & M64)
        tid = "%08x-1c2d-4e5f-8a9b-%012x" % (i, i * 7)
        entry = {
            "@id": tid,
            "assetId": "urn:uuid:asset-%08x-part-type-information" % i,
            "agreementId": "agreement-%08x-9d3c-4a1e-b6f2-0c9e2b7a5d41" % i,
            "transferProcessId": tid,
            "contractNegotiationId": "negotiation-%08x-7f1a-4b2c-9e8d-3a6b5c4d2e1f" % i,
            "createdAt": 1700000000000 + i,
            "counterPartyAddress": addr,
            "edc:endpoint": "https://dataplane-%d.example.com/api/public" % (i % 13),
            "tx-auth:audience": cpid,
            "tx-auth:expiresIn": "300",
            "note": "benchmark entry padded to a typical EDR size",
        }
        # what EDC's management API adds and the SDK removes before storing
        entry["@type"] = "EndpointDataReferenceEntry"
        entry["providerId"] = "BPNL000000000001"
        entry["@context"] = {"@vocab": "https://w3id.org/edc/v0.0.1/ns/",
                             "tx-auth": "https://w3id.org/tractusx/auth/"}
        out.append(((cpid, addr, query, policy), entry))
    return out


def stored_bytes(entry: dict[str, Any]) -> int:
    kept = {k: v for k, v in entry.items() if k not in ("@type", "providerId", "@context")}
    return len(json.dumps(kept, separators=(",", ":")))


class Emitter:
    def __init__(self, version: str, n: int) -> None:
        self.version, self.n = version, n

    def __call__(self, backend: str, metric: str, value: float, unit: str, run: int,
                 ops: int | None = None, **extra: Any) -> None:
        rec = {"bench": "sdk", "sdk_version": self.version, "backend": backend,
               "metric": metric, "value": round(value, 3), "unit": unit,
               "entries": self.n, "ops": ops if ops is not None else self.n, "run": run}
        rec.update(extra)
        print(json.dumps(rec), flush=True)


def timed_rate(fn, items) -> float:
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return len(items) / (time.perf_counter() - t0)


def bench_dict_manager(kind: str, mgr: Any, data: list, emit: Emitter, run: int) -> None:
    def put(d):
        mgr.add_connection(*d[0], d[1])

    def get(d):
        if not mgr.get_connection(*d[0]):
            raise RuntimeError(f"{kind}: a stored entry was not found")

    def delete(d):
        if not mgr.delete_connection(*d[0]):
            raise RuntimeError(f"{kind}: a stored entry could not be deleted")

    emit(kind, "put_ops_per_s", timed_rate(put, data), "ops/s", run)
    emit(kind, "get_ops_per_s", timed_rate(get, data), "ops/s", run)
    if kind == "file":
        # one persist of the whole store, as the background thread does it
        t0 = time.perf_counter()
        mgr._save_to_file()
        save = time.perf_counter() - t0
        emit(kind, "full_save_s", save, "s", run)
        emit(kind, "file_bytes", float(os.path.getsize(mgr.file_path)), "bytes", run)
        from tractusx_sdk.dataspace.managers.connection import FileSystemConnectionManager

        t0 = time.perf_counter()
        again = FileSystemConnectionManager(path=mgr.file_path, persist_interval=3600)
        load = time.perf_counter() - t0
        again.stop()
        if not again.get_connection(*data[0][0]):
            raise RuntimeError("file: reloaded manager lacks an entry")
        emit(kind, "reopen_entries_per_s", len(data) / load, "entries/s", run)
    emit(kind, "delete_ops_per_s", timed_rate(delete, data), "ops/s", run)


def run_memory(data: list, emit: Emitter, run: int) -> None:
    from tractusx_sdk.dataspace.managers.connection import MemoryConnectionManager

    bench_dict_manager("memory", MemoryConnectionManager(), data, emit, run)


def run_file(data: list, emit: Emitter, run: int, base: str, interval: int) -> None:
    from tractusx_sdk.dataspace.managers.connection import FileSystemConnectionManager

    d = tempfile.mkdtemp(prefix="sdk-bench-", dir=base)
    try:
        mgr = FileSystemConnectionManager(path=os.path.join(d, "connection_cache.json"),
                                          persist_interval=interval)
        try:
            bench_dict_manager("file", mgr, data, emit, run)
        finally:
            mgr.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def sqlalchemy_url(dsn: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix):]
    return dsn


class PgBench:
    """One PostgresConnectionManager per process: the SDK defines its table
    model class at construction, and a second one in the same process fails
    (SQLAlchemy: column already assigned). Runs reuse its table, emptied."""

    def __init__(self, version: str) -> None:
        from sqlalchemy import create_engine
        from tractusx_sdk.dataspace.managers.connection import PostgresConnectionManager

        self.error = None
        self.engine = None
        dsn = os.environ.get("EDR_PG_DSN")
        if not dsn:
            self.error = "EDR_PG_DSN not set"
            return
        self.table = f"sdk_bench_{os.getpid()}_{int(time.time())}"
        self.engine = create_engine(sqlalchemy_url(dsn))
        try:
            self.mgr = PostgresConnectionManager(self.engine, table_name=self.table)
        except Exception as exc:  # reported, not hidden: this is a finding
            self.error = f"{type(exc).__name__}: {exc}"

    def run(self, data: list, emit: Emitter, run: int, put_sample: int, get_sample: int) -> None:
        from sqlalchemy import insert

        mgr, engine = self.mgr, self.engine
        with engine.begin() as conn:
            conn.exec_driver_sql(f'TRUNCATE "{self.table}"')
        k = min(put_sample, len(data))
        emit("postgres", "put_ops_per_s",
             timed_rate(lambda d: mgr.add_connection(*d[0], d[1]), data[:k]), "ops/s", run, ops=k)
        # the rest untimed, stored as add_connection would store it
        strip = ("@type", "providerId", "@context")
        rows = [{"transfer_id": e["@id"], "counter_party_id": key[0],
                 "counter_party_address": key[1], "query_checksum": key[2],
                 "policy_checksum": key[3],
                 "edr_data": {a: b for a, b in e.items() if a not in strip}}
                for key, e in data[k:]]
        tbl = mgr.EDRConnection.__table__
        with engine.begin() as conn:
            for i in range(0, len(rows), 5000):
                conn.execute(insert(tbl), rows[i:i + 5000])
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ANALYZE "{self.table}"')
        rnd = random.Random(1000 + run)
        sample = rnd.sample(data, min(get_sample, len(data)))

        def get(d):
            if not mgr.get_connection(*d[0]):
                raise RuntimeError("postgres: a stored entry was not found")

        def delete(d):
            if not mgr.delete_connection(*d[0]):
                raise RuntimeError("postgres: a stored entry could not be deleted")

        emit("postgres", "get_ops_per_s", timed_rate(get, sample), "ops/s", run, ops=len(sample))
        emit("postgres", "delete_ops_per_s", timed_rate(delete, sample), "ops/s", run,
             ops=len(sample))

    def close(self) -> None:
        if self.engine is not None:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{self.table}"')
            self.engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--managers", default="memory,file,postgres")
    ap.add_argument("--entries", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--persist-interval", type=int, default=5,
                    help="FileSystemConnectionManager's persist_interval (SDK default 5)")
    ap.add_argument("--pg-put-sample", type=int, default=10000)
    ap.add_argument("--pg-get-sample", type=int, default=300)
    args = ap.parse_args()
    if args.entries < 1 or args.runs < 1:
        ap.error("--entries and --runs must be positive")
    version = metadata.version("tractusx-sdk")
    data = make_data(args.entries)
    emit = Emitter(version, args.entries)
    print(json.dumps({"bench": "sdk", "sdk_version": version, "python": sys.version.split()[0],
                      "entries": args.entries,
                      "stored_json_bytes_per_entry":
                          sum(stored_bytes(e) for _, e in data) / len(data)}), flush=True)
    managers = args.managers.split(",")
    pg = PgBench(version) if "postgres" in managers else None
    if pg and pg.error:
        print(json.dumps({"bench": "sdk", "sdk_version": version, "backend": "postgres",
                          "error": pg.error}), flush=True)
    try:
        for run in range(args.runs):
            if "memory" in managers:
                run_memory(data, emit, run)
            if "file" in managers:
                run_file(data, emit, run, args.dir, args.persist_interval)
            if pg and not pg.error:
                pg.run(data, emit, run, args.pg_put_sample, args.pg_get_sample)
    finally:
        if pg:
            pg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
