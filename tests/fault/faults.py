#!/usr/bin/env python3
"""faults.py: the crash-and-outage suite of edr-worker (issue 9).

Every scenario publishes a seeded random event sequence (model.py) to a
fresh 6-partition topic, injects its faults while the worker ingests,
waits until the worker caught up (a sentinel event per partition is
served), then compares everything with the model: every entry (paging
list_connections + get_connection over Redis), the exact count, the
dead-letter topic (every malformed record present with edr-error and
edr-source-* headers, no good one) and, for postgres, the table and its
offsets table. An observer samples lookups during the run and fails the
scenario if a connection ever goes back to an earlier state (an event
applied twice or out of order). Finally each worker must answer /healthz
and /readyz with 200 and stop with exit code 0 on SIGTERM.

usage: faults.py [--ci | --long] [--seed N] [--only NAME[,NAME]] [--list]
See tests/fault/README.md.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from infra import (OwnKafka, OwnPostgres, OwnRedis, Rpc, RpcError,  # noqa
                   Worker, port_open, wait_until)
from model import Model  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PARTITIONS = 6
OWN_REDIS_PORT = 16395
OWN_PG_PORT = 15447
OWN_KAFKA_PORT, OWN_KAFKA_CPORT = 19096, 19097


def log(msg):
    print("faults: %s" % msg, flush=True)


class Failure(Exception):
    pass


# ---------------------------------------------------------------- context


class Env:
    """What every scenario shares: binaries, the shared stack, sizes."""

    def __init__(self, args):
        self.args = args
        self.binary = args.worker
        self.brokers = os.environ.get("EDR_KAFKA_BROKERS", "127.0.0.1:19092")
        self.redis_url = os.environ.get("EDR_REDIS_URL",
                                        "redis://127.0.0.1:16379/0")
        self.pg_dsn = os.environ.get("EDR_PG_DSN")
        self.kafka_libs = os.environ.get(
            "EDR_KAFKA_LIBS", os.path.join(ROOT, ".local", "kafka-libs"))
        self.workdir = args.workdir
        self.tag = "faults%d_%d" % (os.getpid(), int(time.time()) % 100000)
        self.own_kafka = None


class Scenario:
    name = "?"
    stores = ("memory", "file", "postgres")
    restarts = True  # the DLQ may hold copies of a record (re-dead-lettered)

    def __init__(self, env, store, seed):
        self.env, self.store, self.seed = env, store, seed
        self.rng = random.Random("%d/%s/%s" % (seed, self.name, store))
        self.id = "%s_%s_%s" % (env.tag, self.name.replace("-", "_"), store)
        self.dir = os.path.join(env.workdir, "%s-%s" % (self.name, store))
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.brokers = env.brokers
        self.redis_url = env.redis_url
        self.pg_dsn = env.pg_dsn
        self.topic = "fault_" + self.id
        self.dlq = self.topic + "_dlq"
        self.table = ("f_" + self.id).lower()[:50]
        self.workers = []
        self.faults = []  # text of each fault injected
        self.notes = []
        self.stop_observer = threading.Event()
        self.obs_lock = threading.Lock()
        self.violations = []
        self.observed = 0
        ci = env.args.size == "ci"
        self.n_events = env.args.events or (3000 if ci else 60000)
        self.n_conns = max(50, self.n_events // 8)
        self.publish_s = 6.0 if ci else 60.0

    # ---- hooks for subclasses ----

    def setup(self):
        pass

    def inject(self):
        """Runs while the publisher publishes; returns when faults end."""

    def teardown(self):
        pass

    def extra_checks(self):
        pass

    # ---- plumbing ----

    def worker_env(self):
        env = {
            "EDR_KAFKA_BROKERS": self.brokers,
            "EDR_TOPIC": self.topic,
            "EDR_DLQ_TOPIC": self.dlq,
            "EDR_GROUP_ID": "g_" + self.id,
            "EDR_STORE": self.store,
            "EDR_FILE_PATH": os.path.join(self.dir, "store", "edr.json"),
            "EDR_PG_TABLE": self.table,
            "EDR_REDIS_URL": self.redis_url,
            "EDR_RPC_PREFIX": "edrf:" + self.id,
            "EDR_LOG_LEVEL": "info",
            "EDR_READY_MAX_LAG": "1000",
        }
        if self.pg_dsn:
            env["EDR_PG_DSN"] = self.pg_dsn
        return env

    def new_worker(self, name=None, extra_env=None, start=True):
        args = []
        if self.store == "postgres":
            # A killed member's partitions move after the session timeout.
            args = ["-X", "session.timeout.ms=6000",
                    "-X", "heartbeat.interval.ms=500"]
        env = self.worker_env()
        env.update(extra_env or {})
        w = Worker(self.env.binary, name or "w%d" % len(self.workers), env,
                   self.dir, args)
        self.workers.append(w)
        if start:
            w.start()
        return w

    def live_workers(self):
        return [w for w in self.workers if w.alive()]

    def create_topics(self):
        admin = AdminClient({"bootstrap.servers": self.brokers})
        fs = admin.create_topics([NewTopic(self.topic, PARTITIONS, 1),
                                  NewTopic(self.dlq, 1, 1)],
                                 operation_timeout=30)
        for f in fs.values():
            f.result()

        def ready():
            md = admin.list_topics(self.topic, timeout=5)
            t = md.topics.get(self.topic)
            return (t is not None and t.error is None and
                    len(t.partitions) == PARTITIONS and
                    all(p.leader >= 0 for p in t.partitions.values()))

        wait_until(ready, 30, what="topic metadata")

    def delete_topics(self):
        try:
            admin = AdminClient({"bootstrap.servers": self.brokers})
            for f in admin.delete_topics([self.topic, self.dlq],
                                         operation_timeout=10).values():
                f.result()
        except Exception:
            pass

    # ---- publishing ----

    def publish(self, records, duration):
        p = Producer({"bootstrap.servers": self.brokers,
                      "enable.idempotence": True, "linger.ms": 5,
                      "message.timeout.ms": 600000,
                      "queue.buffering.max.messages": 200000})
        errors = []

        def report(err, msg, r):
            if err:
                errors.append(str(err))
            else:
                r.delivered = (msg.partition(), msg.offset())

        t0 = time.monotonic()
        n = len(records)
        for i, r in enumerate(records):
            kw = {}
            if r.partition is not None:
                kw["partition"] = r.partition
            while True:
                try:
                    p.produce(self.topic, r.value, r.key.encode(),
                              headers=[("content-type",
                                        b"application/cloudevents+json")],
                              on_delivery=lambda e, m, r=r: report(e, m, r),
                              **kw)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
            ahead = t0 + duration * (i + 1) / n - time.monotonic()
            if ahead > 0.002:
                time.sleep(ahead)
        left = p.flush(600)
        if left or errors:
            raise Failure("publisher: %d undelivered, errors %s" %
                          (left, errors[:3]))

    # ---- the observer ----

    def observe(self, model):
        """Samples lookups; a connection that goes back along its state
        list is an event applied twice or out of order."""
        rpc = Rpc(self.redis_url, "edrf:" + self.id)
        pos = {}
        keys = [c.key for c in model.conns]
        rng = random.Random(self.seed)
        while not self.stop_observer.is_set():
            sample = rng.sample(keys, min(40, len(keys)))
            with self.obs_lock:
                if getattr(self, "reset_positions", False):
                    pos.clear()
                    self.reset_positions = False
                try:
                    reps = rpc.call_many(
                        [("get_connection", model.by_key[k].fields())
                         for k in sample], timeout=2)
                except Exception:
                    reps = []
                    time.sleep(0.2)
                for k, rep in zip(sample, reps):
                    if rep is None or rep["status"] not in ("ok",
                                                            "not_found"):
                        continue
                    val = rep["result"] if rep["status"] == "ok" else None
                    at = pos.get(k, 0)
                    nxt = model.advance(k, at, val)
                    self.observed += 1
                    if nxt < 0:
                        back = model.advance(k, 0, val)
                        self.violations.append(
                            "connection %s... went back from state %d to "
                            "%s (seq %s)" % (k[:12], at,
                                             back if back >= 0 else "unknown",
                                             (val or {}).get("seq")))
                    else:
                        pos[k] = nxt
            time.sleep(0.05)
        rpc.close()

    def state_lost(self):
        """Called (with obs_lock held) when a worker restarts empty: the
        memory store rebuilds from the log's start."""
        if self.store == "memory":
            self.reset_positions = True

    def restart_after_kill(self, w, delay=0.0):
        with self.obs_lock:
            w.kill()
            self.state_lost()
        if delay:
            time.sleep(delay)
        w.start()

    # ---- verification ----

    def wait_caught_up(self, model, sentinels, timeout):
        rpc = Rpc(self.redis_url, "edrf:" + self.id)
        want = {r.key: model.current[r.key] for r in sentinels}
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                dead = [w for w in self.workers
                        if w.proc and not w.alive() and w.proc.returncode
                        not in (None, -9)]
                if dead and not self.live_workers():
                    raise Failure("no worker alive (exited: %s)" % "; ".join(
                        "%s rc %d: %s" % (w.name, w.proc.returncode,
                                          " / ".join(w.last_errors()))
                        for w in dead))
                reps = rpc.call_many(
                    [("get_connection", model.by_key[k].fields())
                     for k in want], timeout=3)
                if all(rep and rep["status"] == "ok" and
                       rep["result"] == want[k]
                       for k, rep in zip(want, reps)):
                    return
                time.sleep(0.3)
            raise Failure("not caught up after %.0f s" % timeout)
        finally:
            rpc.close()

    def verify_state(self, model):
        rpc = Rpc(self.redis_url, "edrf:" + self.id)
        try:
            expected = model.expected()
            items = rpc.list_all()
            problems = []
            listed = {}
            for it in items:
                k = model_key(it)
                if k in listed:
                    problems.append("listed twice: %s..." % k[:12])
                listed[k] = it
            missing = [k for k in expected if k not in listed]
            extra = [k for k in listed if k not in expected]
            if missing:
                problems.append("%d entries missing (e.g. %s...)" %
                                (len(missing), missing[0][:12]))
            if extra:
                problems.append("%d entries that must not exist (e.g. %s...)"
                                % (len(extra), extra[0][:12]))
            for k, it in listed.items():
                if k in expected and it["transferProcessId"] != \
                        expected[k][1]["transferProcessId"]:
                    problems.append("list: wrong transferProcessId at %s..."
                                    % k[:12])
                    break
            keys = list(expected)
            wrong = 0
            first = None
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                reps = rpc.call_many(
                    [("get_connection", expected[k][0].fields())
                     for k in chunk], timeout=30)
                for k, rep in zip(chunk, reps):
                    if rep is None or rep["status"] != "ok" or \
                            rep["result"] != expected[k][1]:
                        wrong += 1
                        if first is None:
                            got = rep and rep.get("result")
                            first = "%s...: want seq %s, got %s" % (
                                k[:12], expected[k][1]["seq"],
                                got.get("seq") if isinstance(got, dict)
                                else rep and rep["status"])
            if wrong:
                problems.append("%d entries differ (first %s)" % (wrong,
                                                                  first))
            cnt = rpc.call("count")
            if cnt["status"] != "ok" or cnt["result"] != len(expected):
                problems.append("count %s, want %d" % (cnt.get("result"),
                                                      len(expected)))
            if problems:
                raise Failure("state: " + "; ".join(problems))
            return len(expected)
        finally:
            rpc.close()

    def high_watermarks(self):
        c = Consumer({"bootstrap.servers": self.brokers,
                      "group.id": "faults-wm-" + self.id})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(self.topic, p),
                                               timeout=10)[1]
                    for p in range(PARTITIONS)}
        finally:
            c.close()

    def verify_dlq(self, model):
        c = Consumer({"bootstrap.servers": self.brokers,
                      "group.id": "faults-dlq-" + self.id,
                      "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        try:
            lo, hi = c.get_watermark_offsets(TopicPartition(self.dlq, 0),
                                             timeout=10)
            c.assign([TopicPartition(self.dlq, 0, lo)])
            msgs = []
            deadline = time.monotonic() + 60
            while len(msgs) < hi - lo and time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is None or m.error():
                    continue
                msgs.append(m)
        finally:
            c.close()
        bad = {r.delivered: r for r in model.records if not r.good}
        good = {r.delivered for r in model.records if r.good}
        seen = {}
        problems = []
        for m in msgs:
            h = {k: (v or b"").decode("utf-8", "replace")
                 for k, v in (m.headers() or [])}
            try:
                src = (int(h["edr-source-partition"]),
                       int(h["edr-source-offset"]))
            except (KeyError, ValueError):
                problems.append("DLQ record without edr-source-* headers")
                continue
            if h.get("edr-source-topic") != self.topic:
                problems.append("DLQ record with edr-source-topic %r" %
                                h.get("edr-source-topic"))
            if not h.get("edr-error"):
                problems.append("DLQ record without edr-error")
            if src in good:
                problems.append("good event %s dead-lettered (%s)" %
                                (src, h.get("edr-error")))
                continue
            r = bad.get(src)
            if r is None:
                problems.append("DLQ record from unknown source %s" % (src,))
                continue
            if (m.value() or b"") != r.value or m.key() != r.key.encode():
                problems.append("DLQ copy of %s differs from the original" %
                                (src,))
            if h.get("content-type") != "application/cloudevents+json":
                problems.append("DLQ copy of %s lost its headers" % (src,))
            seen[src] = seen.get(src, 0) + 1
        missing = [s for s in bad if s not in seen]
        if missing:
            problems.append("%d malformed events not dead-lettered (e.g. %s"
                            ", %s)" % (len(missing), missing[0],
                                       bad[missing[0]].kind))
        copies = sum(seen.values()) - len(seen)
        if copies and not self.restarts:
            problems.append("%d duplicate DLQ copies without a restart" %
                            copies)
        if problems:
            raise Failure("DLQ: " + "; ".join(sorted(set(problems))[:5]))
        return len(bad), copies

    def verify_postgres(self, model):
        if self.store != "postgres":
            return
        dsn = self.pg_dsn
        q = ("SELECT count(*) FROM %s" % self.table)
        out = psql(dsn, q)
        if int(out) != len(model.expected()):
            raise Failure("postgres table holds %s rows, want %d" %
                          (out, len(model.expected())))
        rows = psql(dsn, "SELECT partition, next_offset FROM %s_offsets "
                         "WHERE topic = '%s' ORDER BY 1" %
                    (self.table, self.topic))
        got = {int(a): int(b) for a, b in
               (ln.split("|") for ln in rows.splitlines() if ln)}
        hw = self.high_watermarks()
        if got != hw:
            raise Failure("offsets table %s != high watermarks %s" %
                          (got, hw))
        sample = psql(dsn, "SELECT connection_key, edr::text FROM %s "
                           "ORDER BY random() LIMIT 200" % self.table)
        exp = model.expected()
        for ln in sample.splitlines():
            k, _, edr = ln.partition("|")
            if k not in exp or json.loads(edr) != exp[k][1]:
                raise Failure("postgres row %s... differs from the model" %
                              k[:12])

    def verify_health(self):
        for w in self.live_workers():
            for path in ("/healthz", "/readyz"):
                try:
                    wait_until(lambda: w.http(path)[0] == 200, 30,
                               what="%s of %s" % (path, w.name))
                except TimeoutError:
                    raise Failure("%s %s: %s" % (w.name, path,
                                                 w.http(path)))
        rpc = Rpc(self.redis_url, "edrf:" + self.id)
        try:
            rep = rpc.call("ping")
            if rep["status"] != "ok" or rep["result"]["store"] != self.store:
                raise Failure("ping: %s" % rep)
        finally:
            rpc.close()

    def stop_workers(self):
        codes = {}
        for w in self.workers:
            if w.alive():
                codes[w.name] = w.stop()
        bad = {n: c for n, c in codes.items() if c != 0}
        if bad:
            raise Failure("exit codes on SIGTERM: %s (want 0)" % bad)

    def cleanup_postgres(self):
        if self.store == "postgres" and self.pg_dsn:
            try:
                psql(self.pg_dsn, "DROP TABLE IF EXISTS %s, %s_offsets" %
                     (self.table, self.table))
            except Exception:
                pass

    # ---- the run ----

    def run(self):
        t0 = time.monotonic()
        result = {"scenario": self.name, "store": self.store,
                  "seed": self.seed}
        model = Model(self.seed, self.n_events, self.n_conns,
                      self.id[-24:])
        self.model = model  # for scenarios that add events (cluster.py)
        observer = None
        try:
            self.setup()
            self.create_topics()
            self.start_workers()
            pub_err = []

            def publisher():
                try:
                    self.publish(model.records, self.publish_s)
                except Exception as e:
                    pub_err.append(e)

            pt = threading.Thread(target=publisher, daemon=True)
            pt.start()
            observer = threading.Thread(target=self.observe, args=(model,),
                                        daemon=True)
            observer.start()
            self.inject()
            pt.join()
            if pub_err:
                raise pub_err[0]
            sentinels = model.add_sentinels(PARTITIONS)
            self.publish(sentinels, 0)
            self.wait_caught_up(model, sentinels,
                                self.env.args.catch_up_timeout)
            time.sleep(0.3)  # one more observer round on the final state
            self.stop_observer.set()
            observer.join()
            n_entries = self.verify_state(model)
            n_bad, copies = self.verify_dlq(model)
            self.verify_postgres(model)
            self.extra_checks()
            self.verify_health()
            self.stop_workers()
            if self.violations:
                raise Failure("observer: %d regressions, first: %s" %
                              (len(self.violations), self.violations[0]))
            result["outcome"] = "pass"
            self.notes.append("%d entries, %d malformed, %d DLQ copies, "
                              "%d observations" % (n_entries, n_bad, copies,
                                                   self.observed))
            if not self.env.args.keep:
                self.cleanup_postgres()
                self.delete_topics()
        except Exception as e:
            result["outcome"] = "FAIL"
            if not isinstance(e, (Failure, TimeoutError)):
                traceback.print_exc()
            self.notes.append("%s: %s" % (type(e).__name__, e))
            if self.violations:
                self.notes.append("observer: %d regressions, first: %s" %
                                  (len(self.violations),
                                   self.violations[0]))
            self.notes.append("logs in %s" % self.dir)
        finally:
            self.stop_observer.set()
            if observer:
                observer.join(10)
            for w in self.workers:
                if w.alive():
                    w.kill()
            try:
                self.teardown()
            except Exception as e:
                self.notes.append("teardown: %s" % e)
        result["events"] = len(model.records)
        result["faults"] = self.faults
        result["notes"] = self.notes
        result["seconds"] = round(time.monotonic() - t0, 1)
        return result

    def start_workers(self):
        self.new_worker()


def model_key(it):
    from model import connection_key
    return connection_key(it["counter_party_id"], it["counter_party_address"],
                          it["query_checksum"], it["policy_checksum"])


def psql(dsn, sql):
    return subprocess.run(["psql", dsn, "-XAtq", "-v", "ON_ERROR_STOP=1",
                           "-c", sql], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


# ---------------------------------------------------------------- scenarios


class Kill20(Scenario):
    """SIGKILL the worker at random moments, 20 times, restart it."""
    name = "sigkill-x20"

    def start_workers(self):
        # Postgres: static membership, so the restarted worker takes its
        # partitions back at once instead of after the dead incarnation's
        # session timeout (group-kill-add covers that path).
        extra = None
        if self.store == "postgres":
            self.publish_s = max(self.publish_s, 15.0)
        w = self.new_worker(start=False)
        if self.store == "postgres":
            w.args += ["-X", "group.instance.id=" + self.id]
        w.start(extra)

    def inject(self):
        w = self.workers[0]
        n = self.env.args.kills
        # Spread the kills over the publishing time and a little beyond,
        # so some land in catch-up and (memory) in the replay.
        # A worker needs up to a second to its first dead letter (the DLQ
        # topic's metadata), so kills closer than that would only ever
        # hit start-ups.
        mean = max(self.publish_s * 1.2 / n, 0.8)
        for i in range(n):
            time.sleep(self.rng.uniform(0.4 * mean, 1.6 * mean))
            self.restart_after_kill(w, self.rng.choice((0, 0, 0.2)))
        self.faults.append("%d x SIGKILL + restart" % n)


class FileCrashPoints(Scenario):
    """File store: SIGKILL while a compaction writes PATH.tmp, SIGKILL in
    the middle of journal appends, and torn journal tails."""
    name = "file-crash-points"
    stores = ("file",)

    def worker_env(self):
        env = super().worker_env()
        env["EDR_FILE_COMPACT_MIN"] = "65536"
        return env

    def setup(self):
        # Appends only happen while events arrive: keep them coming for
        # the whole fault window.
        self.publish_s = max(self.publish_s, 15.0)

    def inject(self):
        w = self.workers[0]
        path = w.env["EDR_FILE_PATH"]
        tmp, journal = path + ".tmp", path + ".journal"
        in_compaction = in_append = torn = misses = 0
        half = max(1, self.env.args.kills // 2)
        deadline = time.monotonic() + self.publish_s * 0.9
        while (in_compaction < half or in_append < half) and \
                time.monotonic() < deadline:
            time.sleep(self.rng.uniform(0.2, 0.6))  # let it start up
            if in_compaction <= in_append and in_compaction < half:
                # Poll for a snapshot being written, kill while it is.
                t_end = time.monotonic() + 3
                hit = False
                while time.monotonic() < t_end:
                    if os.path.exists(tmp):
                        w.proc.send_signal(signal.SIGKILL)
                        hit = True
                        break
                    time.sleep(0.0002)
                if hit:
                    with self.obs_lock:
                        w.proc.wait()
                        w.kills += 1
                    in_compaction += 1
                    w.start()
                else:
                    misses += 1
                continue
            # Kill while the journal grows, then sometimes tear its tail.
            try:
                s0 = os.path.getsize(journal)
            except OSError:
                s0 = 0
            t_end = time.monotonic() + 2
            while time.monotonic() < t_end:
                try:
                    if os.path.getsize(journal) != s0:
                        break
                except OSError:
                    pass
                time.sleep(0.0002)
            w.kill()
            in_append += 1
            if self.rng.random() < 0.5 and tear_journal(journal, self.rng):
                torn += 1
            w.start()
        self.faults.append("%d x SIGKILL mid-compaction (PATH.tmp present), "
                           "%d x SIGKILL mid-append, %d torn journal tails"
                           % (in_compaction, in_append, torn))
        if in_compaction == 0:
            raise Failure("no kill landed in a compaction")


def tear_journal(journal, rng):
    """Cuts the journal inside its last frame, as a torn append would."""
    try:
        with open(journal, "rb") as f:
            data = f.read()
    except OSError:
        return False
    pos, last = 0, None
    while pos + 18 <= len(data):
        try:
            n = int(data[pos:pos + 8], 16)
        except ValueError:
            return False
        last = pos
        pos += 18 + n + 1
    if last is None or pos != len(data):
        return False
    cut = rng.randrange(last + 1, len(data))
    with open(journal, "r+b") as f:
        f.truncate(cut)
    return True


class PostgresOutage(Scenario):
    """PostgreSQL (our own on 15447) stopped for 10 s and restarted, twice,
    during ingest."""
    name = "postgres-outage"
    stores = ("postgres",)
    restarts = False

    def setup(self):
        self.pg = OwnPostgres(OWN_PG_PORT, self.dir)
        self.pg.init()
        self.pg.start()
        self.pg_dsn = self.pg.dsn
        self.publish_s = max(self.publish_s, 20.0)

    def inject(self):
        down = self.env.args.outage_s
        for i, mode in enumerate(("fast", "immediate")):
            time.sleep(self.rng.uniform(1.0, 3.0))
            self.pg.stop(mode)
            t_down = time.monotonic()
            time.sleep(down)
            self.pg.start()
            self.faults.append("postgres stopped (%s) for %.1f s" %
                               (mode, time.monotonic() - t_down))
        w = self.workers[0]
        m = w.metrics()
        outs = m.get('edr_outages_total{component="store"}', 0)
        self.notes.append("store outages counted by the worker: %d" % outs)

    def teardown(self):
        self.pg.destroy()


class RedisOutage(Scenario):
    """Redis (our own on 16395) stopped and restarted during a lookup
    load: lookups resume, ingest never stops."""
    name = "redis-outage"
    restarts = False

    def setup(self):
        self.redis = OwnRedis(OWN_REDIS_PORT, self.dir)
        self.redis.start()
        self.redis_url = self.redis.url
        self.down_s = min(self.env.args.outage_s, 4.0) \
            if self.env.args.size == "ci" else self.env.args.outage_s
        # Publishing must outlast both outages: ingest is checked in them.
        self.publish_s = max(self.publish_s, 2 * self.down_s + 8)

    def inject(self):
        w = self.workers[0]
        load_stop = threading.Event()
        stats = {"ok": 0, "err": 0, "last_ok": 0.0}

        def load():
            rpc = None
            while not load_stop.is_set():
                try:
                    if rpc is None:
                        rpc = Rpc(self.redis_url, "edrf:" + self.id)
                    rep = rpc.call("count", timeout=1)
                    if rep["status"] == "ok":
                        stats["ok"] += 1
                        stats["last_ok"] = time.monotonic()
                except Exception:
                    stats["err"] += 1
                    rpc = None
                    time.sleep(0.05)

        lt = threading.Thread(target=load, daemon=True)
        lt.start()
        time.sleep(self.publish_s * 0.25)
        for i in range(2):
            before = w.applied_total()
            self.redis.stop()
            t_down = time.monotonic()
            time.sleep(self.down_s)
            during = w.applied_total()
            self.redis.start()
            self.faults.append("redis stopped %.1f s" %
                               (time.monotonic() - t_down))
            if during <= before:
                raise Failure("ingest stopped while Redis was down "
                              "(applied %d -> %d)" % (before, during))
            try:
                wait_until(lambda: stats["last_ok"] > time.monotonic() - 0.5,
                           30, what="lookups after the Redis restart")
            except TimeoutError:
                raise Failure("lookups did not resume within 30 s of the "
                              "Redis restart")
            self.notes.append("lookups resumed %.1f s after restart %d" %
                              (stats["last_ok"] - t_down - self.down_s,
                               i + 1))
            time.sleep(self.publish_s * 0.2)
        load_stop.set()
        lt.join()
        self.notes.append("lookup load: %d ok, %d failed" % (stats["ok"],
                                                            stats["err"]))

    def teardown(self):
        self.redis.stop()


class KafkaOutage(Scenario):
    """The broker (our own on 19096) stopped and restarted during ingest;
    lookups keep being answered meanwhile."""
    name = "kafka-outage"
    restarts = False

    def setup(self):
        if self.env.own_kafka is None:
            k = OwnKafka(OWN_KAFKA_PORT, OWN_KAFKA_CPORT, self.env.workdir,
                         self.env.kafka_libs)
            k.init()
            k.start()
            self.env.own_kafka = k
        self.kafka = self.env.own_kafka
        self.brokers = self.kafka.brokers
        self.publish_s = max(self.publish_s, 10.0)

    def inject(self):
        w = self.workers[0]
        time.sleep(self.publish_s * 0.3)
        rpc = Rpc(self.redis_url, "edrf:" + self.id)
        t_down = time.monotonic()
        sig = signal.SIGKILL if self.rng.random() < 0.5 else signal.SIGTERM
        self.kafka.stop(sig)
        pings = 0
        t_end = time.monotonic() + self.env.args.outage_s
        while time.monotonic() < t_end:
            try:
                if rpc.call("ping", timeout=2)["status"] == "ok":
                    pings += 1
            except RpcError:
                pass
            time.sleep(0.2)
        self.kafka.start()
        rpc.close()
        self.faults.append("broker %s, down %.1f s" % (
            "SIGKILL" if sig == signal.SIGKILL else "SIGTERM",
            time.monotonic() - t_down))
        self.notes.append("%d pings answered during the broker outage" %
                          pings)
        if pings == 0:
            raise Failure("no lookup answered while the broker was down")
        if not w.alive():
            raise Failure("worker exited during the broker outage")


class DiskFull(Scenario):
    """File store on a small tmpfs that fills up, twice, then gets space
    back: the worker pauses and resumes, nothing lost. Falls back to the
    EDR_FAULT hook (stores/fault.h) where mount is not allowed."""
    name = "disk-full"
    stores = ("file",)
    restarts = False

    def setup(self):
        self.mnt = os.path.join(self.dir, "store")
        os.makedirs(self.mnt)
        self.mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs",
             self.mnt], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0
        self.publish_s = max(self.publish_s, 12.0)

    def worker_env(self):
        env = super().worker_env()
        env["EDR_FILE_COMPACT_MIN"] = "262144"  # compactions under ENOSPC
        if not getattr(self, "mounted", True):
            env["EDR_FAULT"] = "write:%d" % self.rng.randrange(20, 60)
        return env

    def fill(self, leave):
        st = os.statvfs(self.mnt)
        free = st.f_bavail * st.f_frsize
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "ab") as f:
            f.write(b"\0" * max(0, free - leave))
        return filler

    def inject(self):
        w = self.workers[0]
        rounds = 2
        for i in range(rounds):
            time.sleep(self.publish_s * 0.15)
            if self.mounted:
                filler = self.fill(self.rng.randrange(4096, 65536))
            elif i > 0:
                w.signal(signal.SIGUSR2)  # only one arm per process
                break
            t0 = time.monotonic()
            try:
                wait_until(lambda: w.metrics().get("edr_store_ok") == 0, 30,
                           what="the store to report the full disk")
            except TimeoutError:
                raise Failure("the worker never noticed the full disk")
            stalled = w.applied_total()
            time.sleep(2.0)
            if w.applied_total() != stalled:
                raise Failure("events applied while the disk was full")
            if not w.alive():
                raise Failure("worker exited on a full disk")
            if self.mounted:
                os.unlink(filler)
            else:
                w.signal(signal.SIGUSR2)
            self.faults.append("disk full %.1f s (%s)" % (
                time.monotonic() - t0,
                "tmpfs" if self.mounted else "EDR_FAULT write"))
            wait_until(lambda: w.metrics().get("edr_store_ok") == 1, 60,
                       what="the store to recover")

    def teardown(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.mnt])


class TwoWorkers(Scenario):
    """Postgres mode: two workers in one group; one killed, one added,
    during ingest. Every partition applied exactly once."""
    name = "group-kill-add"
    stores = ("postgres",)

    def start_workers(self):
        self.publish_s = max(self.publish_s, 20.0)
        self.new_worker("a")
        self.new_worker("b")

    def inject(self):
        a = self.workers[0]
        wait_until(lambda: has_partitions(a), 60, what="a's partitions")
        time.sleep(self.rng.uniform(1.0, 3.0))
        a.kill()
        self.faults.append("worker a SIGKILLed holding partitions")
        time.sleep(self.rng.uniform(6.0, 9.0))  # its session times out
        self.new_worker("c")
        self.faults.append("worker c added")

    def extra_checks(self):
        self.notes.append(assignment_summary(self.workers))


class Zombie(Scenario):
    """Postgres mode: a worker frozen (SIGSTOP) past its session timeout
    while it holds a batch, then resumed (SIGCONT): its partitions moved
    on meanwhile; what it still writes must not undo newer state."""
    name = "group-zombie"
    stores = ("postgres",)

    def start_workers(self):
        self.new_worker("a")
        self.new_worker("b")
        self.publish_s = max(self.publish_s, 16.0)

    def inject(self):
        a = self.workers[0]
        wait_until(lambda: has_partitions(a), 60, what="a's partitions")
        time.sleep(self.rng.uniform(1.0, 3.0))
        a.signal(signal.SIGSTOP)
        t = time.monotonic()
        time.sleep(10)  # session.timeout.ms is 6000
        a.signal(signal.SIGCONT)
        self.faults.append("worker a SIGSTOPped %.1f s, then SIGCONT" %
                           (time.monotonic() - t))

    def extra_checks(self):
        self.notes.append(assignment_summary(self.workers))


def has_partitions(w):
    """The worker's last assignment line names partitions."""
    try:
        with open(w.log_path, errors="replace") as f:
            lines = [ln for ln in f if "assigned partitions" in ln]
    except OSError:
        return False
    return bool(lines) and not lines[-1].rstrip().endswith(": none")


def assignment_summary(workers):
    out = []
    for w in workers:
        try:
            with open(w.log_path, errors="replace") as f:
                n = sum(1 for ln in f if "assigned partitions" in ln)
            out.append("%s: %d assignments" % (w.name, n))
        except OSError:
            pass
    return ", ".join(out)


# Scenarios in their own files import this module as `faults`.
sys.modules.setdefault("faults", sys.modules[__name__])
import recovery  # noqa: E402  (tests/fault/recovery.py)

SCENARIOS = [Kill20, FileCrashPoints, PostgresOutage, RedisOutage,
             KafkaOutage, DiskFull, TwoWorkers, Zombie] + recovery.SCENARIOS

# What the short CI run does (about 4-5 minutes on the 2-core machine).
CI_PLAN = [("sigkill-x20", "memory"), ("sigkill-x20", "file"),
           ("sigkill-x20", "postgres"), ("file-crash-points", "file"),
           ("postgres-outage", "postgres"), ("redis-outage", "memory"),
           ("redis-outage", "postgres"), ("kafka-outage", "file"),
           ("disk-full", "file"), ("group-kill-add", "postgres")
           ] + recovery.CI_PLAN


def plan(args):
    out = []
    for cls in SCENARIOS:
        for st in cls.stores:
            if args.only and cls.name not in args.only and \
                    "%s/%s" % (cls.name, st) not in args.only:
                continue
            if args.size == "ci" and not args.only and \
                    (cls.name, st) not in CI_PLAN:
                continue
            out.append((cls, st))
    return out


def print_table(results):
    print()
    print("%-18s %-9s %7s %-62s %-7s %6s" % ("scenario", "store", "events",
                                            "faults injected", "outcome",
                                            "secs"))
    print("-" * 116)
    for r in results:
        faults = "; ".join(r["faults"]) or "-"
        first = True
        while faults or first:
            chunk, faults = faults[:62], faults[62:]
            if first:
                print("%-18s %-9s %7d %-62s %-7s %6.1f" % (
                    r["scenario"], r["store"], r["events"], chunk,
                    r["outcome"], r["seconds"]))
            else:
                print("%-18s %-9s %7s %-62s" % ("", "", "", chunk))
            first = False
        for n in r["notes"]:
            print("%-36s   %s" % ("", n))
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--ci", dest="size", action="store_const", const="ci")
    g.add_argument("--long", dest="size", action="store_const", const="long")
    ap.set_defaults(size="ci")
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("EDR_FAULT_SEED", "0")) or
                    None)
    ap.add_argument("--only", default="",
                    help="comma-separated scenario or scenario/store names")
    ap.add_argument("--events", type=int, default=0,
                    help="events per scenario (default 3000 ci, 60000 long)")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--outage-s", type=float, default=10.0)
    ap.add_argument("--catch-up-timeout", type=float, default=300.0)
    ap.add_argument("--worker", default=os.path.join(
        os.environ.get("EDR_BUILD_DIR", os.path.join(ROOT, "build")),
        "edr-worker-test"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true",
                    help="keep topics, tables and the work dir")
    args = ap.parse_args()
    args.only = [s for s in args.only.split(",") if s]
    if args.size == "ci" and "--outage-s" not in sys.argv:
        args.outage_s = 10.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    todo = plan(args)
    if args.list:
        for cls, st in todo:
            print("%s/%s: %s" % (cls.name, st, cls.__doc__.split("\n")[0]))
        return 0
    if not os.access(args.worker, os.X_OK):
        log("no worker binary at %s (--worker or EDR_BUILD_DIR)" %
            args.worker)
        return 2
    args.workdir = args.workdir or os.path.join(
        ROOT, ".local", "faults", "run-%d" % os.getpid())
    os.makedirs(args.workdir, exist_ok=True)
    env = Env(args)
    log("seed %d (rerun: tests/fault/run.sh %s--seed %d), %d scenarios, "
        "work dir %s" % (args.seed, "--long " if args.size == "long" else "",
                         args.seed, len(todo), args.workdir))
    results = []
    try:
        for cls, st in todo:
            sc = cls(env, st, args.seed)
            log("%s/%s: start (%d events)" % (cls.name, st, sc.n_events))
            r = sc.run()
            log("%s/%s: %s in %.1f s; %s" % (cls.name, st, r["outcome"],
                                             r["seconds"],
                                             " | ".join(r["faults"] +
                                                        r["notes"])))
            results.append(r)
    finally:
        if env.own_kafka:
            env.own_kafka.stop()
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    failed = [r for r in results if r["outcome"] != "pass"]
    log("seed %d: %d passed, %d failed" % (args.seed,
                                          len(results) - len(failed),
                                          len(failed)))
    if not failed and not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
