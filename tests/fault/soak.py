#!/usr/bin/env python3
"""soak.py: the soak of the fault suite (issue 19 part 3).

`tests/fault/run.sh --soak MINUTES` runs two workers (a memory store and a
postgres store, each in its own consumer group on one shared topic) for
MINUTES of wall time, setup included, against the suite's private servers
(Kafka 19096, Redis 16395, PostgreSQL 15447). A publisher produces the
model's seeded event mix (model.py) at a steady rate, an observer per
worker sends lookups at a steady rate and checks that no connection ever
goes back to an earlier state, and every few minutes a seeded fault is
injected: a worker SIGKILLed and restarted, Redis, the broker or
PostgreSQL stopped and restarted. After each fault, at a quiet point, the
publisher pauses, one sentinel per partition is produced, and each
worker's whole state is compared with the model (faults.py's checks:
list + get of every entry, the exact count, and for postgres the table
and its offsets). The same check runs at the end.

Every 10 s a sampler records each worker's RSS, open fds, threads and
consumer lag in samples.csv; the run fails on a monotonic rise past
warm-up (the leak rule, see leak_verdict and tests/fault/README.md) and
on any model mismatch. It writes samples.csv, events.csv, soak.png and
summary.md to --out.
"""

import argparse
import csv
import datetime
import json
import os
import random
import shutil
import signal
import statistics
import sys
import threading
import time
import traceback

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faults import (OWN_KAFKA_CPORT, OWN_KAFKA_PORT, OWN_PG_PORT,  # noqa
                    OWN_REDIS_PORT, PARTITIONS, ROOT, Env, Failure, Scenario)
from infra import OwnKafka, OwnPostgres, OwnRedis, Rpc, wait_until  # noqa
from model import Conn, Model, Record  # noqa: E402

# bench/results/2026-11-27-local/report.md: "ingest -> postgres, events/s"
# median 38,719, the slower of the soak's two stores. The soak publishes a
# fifth of it.
BENCH_MAX_RATE = 38719

METRICS = ("rss_kb", "fds", "threads")
# The leak rule's thresholds per metric: the fitted slope (per hour) and
# the rise of the last third's median over the first third's (absolute
# floor; the relative part is --leak-pct of the first third's median).
LEAK_SLOPE_PER_H = {"rss_kb": 8192.0, "fds": 4.0, "threads": 4.0}
LEAK_RISE_MIN = {"rss_kb": 2048.0, "fds": 2.0, "threads": 1.0}
KINDS = ("kill-memory", "kill-postgres", "redis-outage", "kafka-outage",
         "postgres-outage")


def log(msg):
    print("soak: %s %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def fingerprint(entry):
    """What the observer compares: the event that wrote the entry."""
    if entry is None:
        return None
    return (entry.get("seq"), entry.get("transferProcessId"))


# ---------------------------------------------------------------- model


class SoakModel(Model):
    """The model of model.py, generated on demand without bound: records
    are kept in a window (duplicates replay one of them), state lists
    hold fingerprints and are cut to the current state at quiet points,
    so memory stays flat however long the soak runs. The connection set
    is fixed, so the store's size is bounded too."""

    WINDOW = 20000

    def __init__(self, seed, n_conns, run_tag):
        self.total = 0
        super().__init__(seed, 0, n_conns, run_tag)
        self.base = list(self.conns)
        self.hot = self.base[: max(1, len(self.base) // 10)]

    def _add(self, key, value, kind, good, conn, partition=None,
             dup_of=None):
        r = Record(self.total, key, value, kind, good, conn, partition,
                   dup_of)
        self.total += 1
        self.records.append(r)
        if len(self.records) > 2 * self.WINDOW:
            del self.records[: -self.WINDOW]
        self.kind_counts[kind] = self.kind_counts.get(kind, 0) + 1
        return r

    def _apply(self, conn, etype, edr, tpid, has_tpid):
        super()._apply(conn, etype, edr, tpid, has_tpid)
        st = self.states[conn.key]
        st[-1] = fingerprint(st[-1])

    def _duplicate(self, idx):
        goods = [r for r in self.records[-50:] if r.good and
                 r.kind != "sentinel"]
        if not goods:
            return self._good(self.rng.choice(self.base), "edr.negotiated",
                              idx)
        if self.rng.random() < 0.5:
            orig = goods[-1]
        else:
            orig = self.rng.choice(self.records)
            while not orig.good or orig.kind == "sentinel":
                orig = self.rng.choice(self.records)
        ev = json.loads(orig.value)
        data = ev["data"]
        self._apply(orig.conn, ev["type"], data.get("edr"),
                    data.get("transfer_process_id"),
                    "transfer_process_id" in data)
        return self._add(orig.key, orig.value, "duplicate", True, orig.conn,
                         dup_of=orig.idx)

    def generate(self, n):
        out = []
        rng = self.rng
        for _ in range(n):
            idx = self.total
            conn = rng.choice(self.hot) if rng.random() < 0.5 else \
                rng.choice(self.base)
            x = rng.random()
            if x < 0.30:
                r = self._good(conn, "edr.negotiated", idx)
            elif x < 0.52:
                r = self._good(conn, "edr.renewed", idx)
            elif x < 0.78:
                r = self._good(conn, "edr.expired", idx)
            elif x < 0.92:
                r = self._duplicate(idx)
            else:
                r = self._malformed(conn, idx)
            out.append(r)
        return out

    def sentinels(self):
        out = []
        for p in range(PARTITIONS):
            conn = Conn("SENTINEL-%s-%d-%d" % (self.run_tag, self.total, p),
                        "https://sentinel.example.com/%d" % p,
                        self._hex(64), self._hex(64))
            self.conns.append(conn)
            self.by_key[conn.key] = conn
            self.states[conn.key] = [None]
            self.current[conn.key] = None
            r = self._good(conn, "edr.negotiated", self.total)
            r.partition = p
            r.kind = "sentinel"
            out.append(r)
        return out

    def cut_states(self):
        """At a quiet point every worker serves the current state: the
        history before it is no longer needed."""
        for k, st in self.states.items():
            if len(st) > 1:
                self.states[k] = [st[-1]]


# ---------------------------------------------------------------- lanes


class Lane(Scenario):
    """One worker of the soak, with the suite's checks (wait_caught_up,
    verify_state, verify_postgres, verify_health, stop_workers)."""
    name = "soak"

    def __init__(self, env, store, seed, topic, servers):
        super().__init__(env, store, seed)
        self.topic = topic
        self.dlq = "%s_dlq_%s" % (topic, store)
        kafka, redis, pg = servers
        self.brokers = kafka.brokers
        self.redis_url = redis.url
        self.pg_dsn = pg.dsn
        self.observing = True
        self.lookups_ok = 0
        self.lookups_failed = 0
        self.observed = 0

    def worker_env(self):
        env = super().worker_env()
        # Two workers on one topic: each its own changelog.
        env["EDR_CHANGELOG_TOPIC"] = "%s.changelog-%s" % (self.topic,
                                                          self.store)
        return env

    @property
    def worker(self):
        return self.workers[0]

    def start_workers(self):
        w = self.new_worker(self.store, start=False)
        if self.store == "postgres":
            # Static membership: a restarted worker gets its partitions
            # back at once (as sigkill-x20/postgres).
            w.args += ["-X", "group.instance.id=" + self.id]
        w.start()


# ---------------------------------------------------------------- soak


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.deadline = self.t0 + args.minutes * 60.0
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.env = Env(args)
        self.tag = self.env.tag
        self.topic = "soak_" + self.tag
        self.events = []  # (t, kind, text)
        self.failures = []
        self.violations = []
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.obs_lock = threading.Lock()
        self.published = 0
        self.pub_errors = []
        self.behind_s = 0.0
        self.samples = []
        self.csv_lock = threading.Lock()
        self.quiet = []

    def t(self):
        return time.monotonic() - self.t0

    def event(self, kind, text):
        self.events.append((round(self.t(), 1), kind, text))
        log("%s: %s" % (kind, text))

    # ---- setup ----

    def setup(self):
        a = self.args
        wd = a.workdir
        # A copy of the binary: a rebuild during the soak must not change
        # what the restarts run.
        binary = os.path.join(wd, "edr-worker-test")
        shutil.copy2(a.worker, binary)
        self.env.binary = binary
        self.kafka = OwnKafka(OWN_KAFKA_PORT, OWN_KAFKA_CPORT, wd,
                              self.env.kafka_libs)
        self.redis = OwnRedis(OWN_REDIS_PORT, wd)
        self.pg = OwnPostgres(OWN_PG_PORT, wd)
        self.kafka.init()
        self.pg.init()
        self.redis.start()
        self.pg.start()
        self.kafka.start()
        servers = (self.kafka, self.redis, self.pg)
        self.lanes = [Lane(self.env, st, a.seed, self.topic, servers)
                      for st in a.stores]
        admin = AdminClient({"bootstrap.servers": self.kafka.brokers})
        topics = [NewTopic(self.topic, PARTITIONS, 1)] + \
            [NewTopic(ln.dlq, 1, 1) for ln in self.lanes]
        for f in admin.create_topics(topics, operation_timeout=30).values():
            f.result()

        def ready():
            t = admin.list_topics(self.topic, timeout=5).topics.get(
                self.topic)
            return (t is not None and t.error is None and
                    len(t.partitions) == PARTITIONS and
                    all(p.leader >= 0 for p in t.partitions.values()))

        wait_until(ready, 30, what="topic metadata")
        self.model = SoakModel(a.seed, a.conns, self.tag[-16:])
        for ln in self.lanes:
            ln.start_workers()
        self.event("setup", "servers and %d workers up in %.1f s" %
                   (len(self.lanes), self.t()))

    # ---- threads ----

    def publisher(self):
        p = Producer({"bootstrap.servers": self.kafka.brokers,
                      "enable.idempotence": True, "linger.ms": 5,
                      "message.timeout.ms": 900000,
                      "queue.buffering.max.messages": 2000000})

        def report(err, msg):
            if err:
                self.pub_errors.append(str(err))

        rate = self.args.rate
        chunk = max(1, int(rate / 20))
        t_next = time.monotonic()
        while not self.stop.is_set():
            if self.pause.is_set():
                left = p.flush(900)
                if left:
                    self.pub_errors.append("%d undelivered" % left)
                self.paused.set()
                while not self.resume.wait(0.5):
                    if self.stop.is_set():
                        return
                self.resume.clear()
                self.paused.clear()
                t_next = time.monotonic()
                continue
            for r in self.model.generate(chunk):
                while True:
                    try:
                        p.produce(self.topic, r.value, r.key.encode(),
                                  headers=[("content-type",
                                            b"application/cloudevents+json")],
                                  on_delivery=report)
                        break
                    except BufferError:
                        p.poll(0.1)
            p.poll(0)
            self.published += chunk
            t_next += chunk / rate
            ahead = t_next - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            elif ahead < -1.0:
                # Fell behind (the broker is down, or no CPU): keep the
                # rate, do not burst to catch up.
                self.behind_s += -ahead
                t_next = time.monotonic()
        p.flush(60)

    def observer(self, lane):
        """Steady lookups (--lookup-rate per worker, in rounds of 20) that
        check every connection only moves forward along its states."""
        keys = [c.key for c in self.model.base]
        rng = random.Random("%d/obs/%s" % (self.args.seed, lane.store))
        pos = {}
        rpc = None
        per_round = 20
        period = per_round / self.args.lookup_rate
        t_next = time.monotonic()
        while not self.stop.is_set():
            t_next += period
            sample = rng.sample(keys, per_round)
            with self.obs_lock:
                if getattr(lane, "reset_positions", False):
                    pos.clear()
                    lane.reset_positions = False
                try:
                    if rpc is None:
                        rpc = Rpc(lane.redis_url, "edrf:" + lane.id)
                    reps = rpc.call_many(
                        [("get_connection", self.model.by_key[k].fields())
                         for k in sample], timeout=2)
                except Exception:
                    reps = [None] * per_round
                    rpc = None
                for k, rep in zip(sample, reps):
                    if rep is None or rep["status"] not in ("ok",
                                                            "not_found"):
                        lane.lookups_failed += 1
                        continue
                    lane.lookups_ok += 1
                    if not lane.observing:
                        continue
                    val = rep["result"] if rep["status"] == "ok" else None
                    fp = fingerprint(val)
                    states = self.model.states[k]
                    at = pos.get(k, 0)
                    nxt = -1
                    for i in range(at, len(states)):
                        if states[i] == fp:
                            nxt = i
                            break
                    lane.observed += 1
                    if nxt < 0:
                        self.violations.append(
                            "%s at %.0f s: connection %s... went back from "
                            "state %d (seq %s)" % (
                                lane.store, self.t(), k[:12], at,
                                (val or {}).get("seq")))
                    else:
                        pos[k] = nxt
            ahead = t_next - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            else:
                t_next = time.monotonic()
        if rpc:
            rpc.close()

    def sampler(self):
        f = open(os.path.join(self.out, "samples.csv"), "w", newline="")
        cols = ["t_s", "utc", "worker", "series", "pid", "alive", "rss_kb",
                "fds", "threads", "lag", "applied_total", "lookups_ok",
                "lookups_failed", "published"]
        wr = csv.writer(f)
        wr.writerow(cols)
        n = 0
        while not self.stop.is_set():
            for ln in self.lanes:
                row = self.sample(ln)
                self.samples.append(row)
                wr.writerow([row[c] for c in cols])
            f.flush()
            n += 1
            wait = self.t0 + self.setup_s + n * self.args.sample_s - \
                time.monotonic()
            if wait > 0:
                self.stop.wait(wait)
        f.close()

    def sample(self, ln):
        w = ln.worker
        row = {"t_s": round(self.t(), 1),
               "utc": datetime.datetime.utcnow().strftime("%H:%M:%S"),
               "worker": ln.store, "series": w.starts, "pid": "",
               "alive": 0, "rss_kb": "", "fds": "", "threads": "",
               "lag": "", "applied_total": "", "lookups_ok": ln.lookups_ok,
               "lookups_failed": ln.lookups_failed,
               "published": self.published}
        if not w.alive():
            return row
        pid = w.proc.pid
        row["pid"] = pid
        try:
            with open("/proc/%d/status" % pid) as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        row["rss_kb"] = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        row["threads"] = int(line.split()[1])
            row["fds"] = len(os.listdir("/proc/%d/fd" % pid))
            row["alive"] = 1
        except OSError:
            return row
        m = w.metrics()
        if m:
            row["lag"] = int(sum(v for k, v in m.items()
                                 if k.startswith("edr_consumer_lag")))
            row["applied_total"] = int(sum(
                v for k, v in m.items()
                if k.startswith("edr_events_applied_total")))
        return row

    # ---- faults ----

    def inject(self, kind):
        a = self.args
        t = time.monotonic()
        if kind.startswith("kill-"):
            ln = [x for x in self.lanes if x.store == kind[5:]]
            if not ln:
                return
            ln = ln[0]
            with self.obs_lock:
                ln.worker.kill()
                if ln.store == "memory":
                    # It restores from the changelog: until the next quiet
                    # point it may serve any past state.
                    ln.observing = False
            time.sleep(self.rng.choice((0, 0, 0.2)))
            ln.worker.start()
            self.event("fault", "%s: SIGKILL + restart (series %d)" %
                       (kind, ln.worker.starts))
        elif kind == "redis-outage":
            self.redis.stop()
            time.sleep(a.outage_s)
            self.redis.start()
            self.event("fault", "redis-outage: down %.1f s" %
                       (time.monotonic() - t))
        elif kind == "kafka-outage":
            sig = signal.SIGKILL if self.rng.random() < 0.5 else \
                signal.SIGTERM
            self.kafka.stop(sig)
            time.sleep(a.outage_s)
            self.kafka.start()
            self.event("fault", "kafka-outage: broker %s, down %.1f s" % (
                "SIGKILL" if sig == signal.SIGKILL else "SIGTERM",
                time.monotonic() - t))
        elif kind == "postgres-outage":
            mode = self.rng.choice(("fast", "immediate"))
            self.pg.stop(mode)
            time.sleep(a.outage_s)
            self.pg.start()
            self.event("fault", "postgres-outage: stopped (%s) %.1f s" %
                       (mode, time.monotonic() - t))
        for ln in self.lanes:
            if not ln.worker.alive():
                raise Failure("%s worker exited during %s (code %s)" %
                              (ln.store, kind, ln.worker.proc.returncode))

    def fault_plan(self):
        """Seeded: each block of five faults is a permutation of the five
        kinds, so every kind comes up in a long run."""
        while True:
            block = list(KINDS)
            self.rng.shuffle(block)
            for k in block:
                yield k

    # ---- quiet points ----

    def quiet_check(self, label):
        t = time.monotonic()
        self.pause.set()
        while not self.paused.wait(1.0):
            if self.pub_errors:
                break
        if self.pub_errors:
            raise Failure("publisher: %s" % self.pub_errors[:3])
        sentinels = self.model.sentinels()
        p = Producer({"bootstrap.servers": self.kafka.brokers,
                      "enable.idempotence": True})
        for r in sentinels:
            p.produce(self.topic, r.value, r.key.encode(),
                      partition=r.partition,
                      headers=[("content-type",
                                b"application/cloudevents+json")])
        if p.flush(120):
            raise Failure("sentinels not delivered")
        res = {"t_s": round(self.t(), 1), "label": label,
               "events": self.model.total}
        problems = []
        for ln in self.lanes:
            t1 = time.monotonic()
            try:
                ln.wait_caught_up(self.model, sentinels,
                                  self.args.catch_up_timeout)
                res[ln.store + "_catch_up_s"] = round(time.monotonic() - t1,
                                                      1)
                n = ln.verify_state(self.model)
                ln.verify_postgres(self.model)
                res[ln.store + "_entries"] = n
            except (Failure, TimeoutError) as e:
                problems.append("%s: %s" % (ln.store, e))
        with self.obs_lock:
            self.model.cut_states()
            for ln in self.lanes:
                ln.reset_positions = True
                ln.observing = True
        res["outcome"] = "FAIL: " + "; ".join(problems) if problems \
            else "pass"
        res["seconds"] = round(time.monotonic() - t, 1)
        self.quiet.append(res)
        self.event("check", "%s: %s in %.1f s (%d events so far)" % (
            label, res["outcome"], res["seconds"], self.model.total))
        if problems:
            self.failures.append("model check %s: %s" %
                                 (label, "; ".join(problems)))
        self.pause.clear()
        self.resume.set()

    # ---- the run ----

    def run(self):
        a = self.args
        self.setup_s = 0.0
        try:
            self.setup()
            self.setup_s = self.t()
            threads = [threading.Thread(target=self.publisher, daemon=True),
                       threading.Thread(target=self.sampler, daemon=True)]
            threads += [threading.Thread(target=self.observer, args=(ln,),
                                         daemon=True) for ln in self.lanes]
            for th in threads:
                th.start()
            budget = self.deadline - time.monotonic() - a.final_reserve_s
            period = min(a.fault_every, max(40.0, budget / 2))
            n_cycles = max(1, int(budget // period))
            plan = self.fault_plan()
            log("seed %d, %.0f events/s, %d workers (%s), %d faults, one "
                "every %.0f s" % (a.seed, a.rate, len(self.lanes),
                                  ",".join(a.stores), n_cycles, period))
            start = time.monotonic()
            for i in range(n_cycles):
                c0 = start + i * period
                at = c0 + period * self.rng.uniform(0.15, 0.35)
                time.sleep(max(0, at - time.monotonic()))
                self.inject(next(plan))
                time.sleep(max(0, c0 + 0.7 * period - time.monotonic()))
                self.quiet_check("after fault %d" % (i + 1))
            time.sleep(max(0, self.deadline - a.final_reserve_s -
                           time.monotonic()))
            self.quiet_check("final")
            self.stop.set()
            for th in threads:
                th.join(30)
            if self.violations:
                self.failures.append("observer: %d regressions, first: %s" %
                                     (len(self.violations),
                                      self.violations[0]))
            for ln in self.lanes:
                ln.verify_health()
                ln.stop_workers()
        except Exception as e:
            if not isinstance(e, (Failure, TimeoutError)):
                traceback.print_exc()
            self.failures.append("%s: %s" % (type(e).__name__, e))
        finally:
            self.stop.set()
            self.resume.set()
            for ln in getattr(self, "lanes", []):
                for w in ln.workers:
                    if w.alive():
                        w.kill()
            for srv in ("kafka", "redis"):
                if hasattr(self, srv):
                    try:
                        getattr(self, srv).stop()
                    except Exception:
                        pass
            if hasattr(self, "pg"):
                self.pg.destroy()
        self.leaks = leak_verdicts(self.samples, a)
        for v in self.leaks:
            if v["verdict"] == "LEAK":
                self.failures.append(
                    "monotonic rise: %s series %d %s: slope %.1f/h, first-"
                    "third median %.0f, last-third median %.0f" % (
                        v["worker"], v["series"], v["metric"], v["slope_h"],
                        v["m1"], v["m3"]))
        self.write_events()
        write_summary(self)
        try:
            plot(self)
        except Exception as e:
            log("plot failed: %s" % e)
        return 0 if not self.failures else 1

    def write_events(self):
        with open(os.path.join(self.out, "events.csv"), "w",
                  newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["t_s", "kind", "text"])
            for e in self.events:
                wr.writerow(e)


# ---------------------------------------------------------------- leaks


def fit_slope(ts, vs):
    n = len(ts)
    mt, mv = sum(ts) / n, sum(vs) / n
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / den


def leak_verdicts(samples, args):
    """The leak rule. A series is one incarnation of a worker (a restart
    starts a new one). Its post-warm-up samples are those from the first
    sample at least --warmup-s after the series' first sample at which the
    worker's consumer lag is at most max(1000, --rate), a second of
    events (it caught up). With fewer than
    --min-samples of them the series is not judged. A metric (rss_kb,
    fds, threads) rises monotonically when ALL of
      - the least-squares slope over the post-warm-up samples exceeds
        LEAK_SLOPE_PER_H (8 MiB/h, 4 fds/h, 4 threads/h),
      - the median of the last third exceeds the median of the first
        third by more than max(LEAK_RISE_MIN, --leak-pct % of it)
        (2 MiB, 2 fds, 1 thread; 10 %),
      - and the medians of the three thirds increase, each by more than
        a quarter of that limit (first < middle < last): a single step that then stays flat (the
        allocator's high-water mark after a catch-up burst) is reported
        as a step, not a leak; a leak that grows in steps at every fault
        still rises through all three thirds."""
    caught_up = max(1000.0, args.rate)
    series = {}
    for r in samples:
        if r["alive"]:
            series.setdefault((r["worker"], r["series"]), []).append(r)
    out = []
    for (wname, s), rows in sorted(series.items()):
        t_first = rows[0]["t_s"]
        start = None
        for i, r in enumerate(rows):
            if r["t_s"] - t_first >= args.warmup_s and \
                    r["lag"] != "" and r["lag"] <= caught_up:
                start = i
                break
        post = rows[start:] if start is not None else []
        for m in METRICS:
            pts = [(r["t_s"], r[m]) for r in post if r[m] != ""]
            v = {"worker": wname, "series": s, "metric": m,
                 "samples": len(pts), "slope_h": 0.0, "m1": 0.0, "m2": 0.0,
                 "m3": 0.0,
                 "first": rows[0][m], "last": rows[-1][m],
                 "max": max((r[m] for r in rows if r[m] != ""), default=0)}
            if len(pts) < args.min_samples:
                v["verdict"] = "not judged (%d samples)" % len(pts)
                out.append(v)
                continue
            ts = [p[0] for p in pts]
            vs = [p[1] for p in pts]
            third = max(1, len(vs) // 3)
            v["slope_h"] = fit_slope(ts, vs) * 3600.0
            v["m1"] = statistics.median(vs[:third])
            v["m2"] = statistics.median(vs[third:len(vs) - third])
            v["m3"] = statistics.median(vs[-third:])
            rise = v["m3"] - v["m1"]
            limit = max(LEAK_RISE_MIN[m], v["m1"] * args.leak_pct / 100.0)
            if v["slope_h"] > LEAK_SLOPE_PER_H[m] and rise > limit and \
                    v["m2"] - v["m1"] > limit / 4 and \
                    v["m3"] - v["m2"] > limit / 4:
                v["verdict"] = "LEAK"
            elif v["slope_h"] > LEAK_SLOPE_PER_H[m] and rise > limit:
                v["verdict"] = "step (no rise after it)"
            else:
                v["verdict"] = "flat"
            out.append(v)
    return out


def leak_self_test(args):
    """The leak rule on synthetic series: it must flag a slow steady rise
    in each metric and pass a flat series with noise, a single step (an
    outage's reconnect) and a warm-up ramp. Runs before every soak."""
    rng = random.Random(1)

    def series(name, f):
        rows = []
        for i in range(60):  # 10 minutes at 10 s
            t = 10.0 * i
            rss, fds, thr = f(t)
            rows.append({"t_s": t, "worker": name, "series": 1, "alive": 1,
                         "rss_kb": int(rss), "fds": int(fds),
                         "threads": int(thr), "lag": 0})
        return rows

    base = lambda t: (30000 + rng.uniform(-300, 300),  # noqa: E731
                      28 + rng.choice((0, 0, 1)), 15)
    cases = {
        "flat": (base, set()),
        "step": (lambda t: (base(t)[0] + (1500 if t > 200 else 0),
                            28 + (1 if t > 200 else 0), 15), set()),
        "ramp": (lambda t: (base(t)[0] + 20000 * min(1.0, t / 60.0), 28,
                            15), set()),
        "big-step": (lambda t: (base(t)[0] + (90000 if t > 330 else 0),
                                28, 15), set()),
        "fd-staircase": (lambda t: (30000, 28 + t // 100, 15), {"fds"}),
        "rss-leak": (lambda t: (base(t)[0] + 12.0 * t, 28, 15),
                     {"rss_kb"}),
        "fd-leak": (lambda t: (30000, 28 + t // 60, 15), {"fds"}),
        "thread-leak": (lambda t: (30000, 28, 15 + t // 120),
                        {"threads"}),
    }
    saved = (args.warmup_s, args.min_samples)
    args.warmup_s, args.min_samples = 120.0, 18
    try:
        for name, (f, want) in cases.items():
            got = {v["metric"] for v in leak_verdicts(series(name, f), args)
                   if v["verdict"] == "LEAK"}
            if got != want:
                raise AssertionError("leak rule on %s: flagged %s, want %s" %
                                     (name, sorted(got), sorted(want)))
    finally:
        args.warmup_s, args.min_samples = saved


# ---------------------------------------------------------------- output


def leak_table(add, leaks):
    add("| worker | series | metric | samples | slope /h | median of "
        "thirds (first / middle / last) | verdict |")
    add("|---|---|---|---|---|---|---|")
    for v in leaks:
        add("| %s | %d | %s | %d | %.1f | %.0f / %.0f / %.0f | %s |" % (
            v["worker"], v["series"], v["metric"], v["samples"],
            v["slope_h"], v["m1"], v["m2"], v["m3"], v["verdict"]))


def write_summary(s):
    a = s.args
    lines = []
    add = lines.append
    started = datetime.datetime.utcfromtimestamp(s.wall0)
    add("# Soak %s UTC, %g minutes\n" % (started.strftime("%Y-%m-%d %H:%M"),
                                         a.minutes))
    add("Command: `tests/fault/run.sh --soak %g --seed %d` (rate %.0f "
        "events/s = a fifth of %d, bench/results/2026-11-27-local "
        "ingest -> postgres; lookups %.0f/s per worker; %d connections; "
        "samples every %.0f s).\n" % (a.minutes, a.seed, a.rate,
                                      BENCH_MAX_RATE, a.lookup_rate,
                                      a.conns, a.sample_s))
    add("**Outcome: %s**\n" % ("pass" if not s.failures else "FAIL"))
    for f in s.failures:
        add("- %s" % f)
    add("")
    pub_s = max(1.0, s.t() - s.setup_s)
    add("Events published: %d (%.0f/s over the run including the pauses at "
        "quiet points; publisher behind schedule %.0f s in total). Observer "
        "lookups checked: %s; regressions: %d.\n" % (
            s.model.total if hasattr(s, "model") else 0,
            (s.model.total if hasattr(s, "model") else 0) / pub_s,
            s.behind_s,
            ", ".join("%s %d" % (ln.store, ln.observed)
                      for ln in getattr(s, "lanes", [])),
            len(s.violations)))
    add("## Per worker\n")
    add("| worker | restarts | RSS first / last / max (MiB) | fds first / "
        "last / max | threads first / last / max | max lag | lookups ok / "
        "failed |")
    add("|---|---|---|---|---|---|---|")
    for ln in getattr(s, "lanes", []):
        rows = [r for r in s.samples if r["worker"] == ln.store and
                r["alive"]]
        if not rows:
            continue

        def trio(m, scale=1.0):
            vals = [r[m] for r in rows if r[m] != ""]
            return "%s / %s / %s" % tuple(
                ("%.1f" % (x / scale)) if scale != 1.0 else str(x)
                for x in (vals[0], vals[-1], max(vals)))

        lags = [r["lag"] for r in rows if r["lag"] != ""]
        add("| %s | %d | %s | %s | %s | %s | %d / %d |" % (
            ln.store, ln.worker.starts - 1, trio("rss_kb", 1024.0),
            trio("fds"), trio("threads"), max(lags) if lags else "-",
            ln.lookups_ok, ln.lookups_failed))
    add("\n## Leak rule per series (post-warm-up samples)\n")
    leak_table(add, getattr(s, "leaks", []))
    add("\n## Faults and checks\n")
    add("| t (s) | kind | what |")
    add("|---|---|---|")
    for t, k, text in s.events:
        add("| %.0f | %s | %s |" % (t, k, text))
    add("")
    with open(os.path.join(s.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(s):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(4, 1, figsize=(12, 11), sharex=True)
    specs = [("rss_kb", "RSS (MiB)", 1024.0), ("fds", "open fds", 1.0),
             ("threads", "threads", 1.0), ("lag", "consumer lag", 1.0)]
    colors = {"memory": "tab:blue", "postgres": "tab:orange",
              "file": "tab:green"}
    for ax, (m, label, scale) in zip(axes, specs):
        seen = set()
        keys = sorted({(r["worker"], r["series"]) for r in s.samples})
        for wname, ser in keys:
            pts = [(r["t_s"] / 60.0, r[m] / scale) for r in s.samples
                   if r["worker"] == wname and r["series"] == ser and
                   r["alive"] and r[m] != ""]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts],
                    color=colors.get(wname, "k"), lw=1.2,
                    label=wname if wname not in seen else None)
            seen.add(wname)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if m == "lag":
            ax.set_yscale("symlog", linthresh=100)
        for t, k, text in s.events:
            if k == "fault":
                ax.axvline(t / 60.0, color="red", alpha=0.4, lw=0.8)
            elif k == "check":
                ax.axvline(t / 60.0, color="green", alpha=0.25, lw=0.8,
                           ls="--")
    for t, k, text in s.events:
        if k == "fault":
            axes[0].text(t / 60.0, 1.0, text.split(":")[0], rotation=90,
                         fontsize=6, va="bottom", ha="center",
                         transform=axes[0].get_xaxis_transform())
    axes[0].legend(loc="upper left")
    axes[-1].set_xlabel("minutes (red: fault, green dashed: model check)")
    fig.suptitle("edr-worker soak, seed %d, %.0f events/s: %s" % (
        s.args.seed, s.args.rate, "pass" if not s.failures else "FAIL"),
        y=0.995)
    fig.tight_layout()
    fig.savefig(os.path.join(s.out, "soak.png"), dpi=110)
    plt.close(fig)


def replot(d, args):
    """--replot DIR: soak.png and the leak table again from DIR's CSVs."""
    class Saved:
        pass
    s = Saved()
    s.out, s.args = d, args
    s.samples, s.events = [], []
    with open(os.path.join(d, "samples.csv")) as f:
        for r in csv.DictReader(f):
            for k in ("t_s",):
                r[k] = float(r[k])
            for k in ("series", "alive", "rss_kb", "fds", "threads", "lag"):
                r[k] = int(r[k]) if r[k] != "" else ""
            s.samples.append(r)
    ev = os.path.join(d, "events.csv")  # written at the end of a run
    if os.path.exists(ev):
        with open(ev) as f:
            for r in csv.DictReader(f):
                s.events.append((float(r["t_s"]), r["kind"], r["text"]))
    s.failures = [e for e in s.events
                  if e[1] == "check" and ": pass in " not in e[2]]
    leaks = leak_verdicts(s.samples, args)
    s.failures += [v for v in leaks if v["verdict"] == "LEAK"]
    for v in leaks:
        print("%-8s %2d %-7s %3d samples slope %10.1f/h medians %.0f / %.0f "
              "/ %.0f %s" % (v["worker"], v["series"], v["metric"],
                             v["samples"], v["slope_h"], v["m1"], v["m2"],
                             v["m3"], v["verdict"]))
    path = os.path.join(d, "summary.md")
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        a, b = "## Leak rule per series", "## Faults and checks"
        if a in text and b in text:
            lines = []
            leak_table(lines.append, leaks)
            text = (text[:text.index(a)] +
                    a + " (post-warm-up samples; recomputed by --replot)"
                    "\n\n" + "\n".join(lines) + "\n\n" +
                    text[text.index(b):])
            # The outcome: the run's failures other than leaks, plus the
            # leaks of this rule.
            head, _, rest = text.partition("**Outcome: ")
            outcome, _, rest = rest.partition("\n")
            bullets, rest = [], rest.lstrip("\n")
            while rest.startswith("- "):
                line, _, rest = rest.partition("\n")
                if not line.startswith("- monotonic rise"):
                    bullets.append(line)
            bullets += ["- monotonic rise: %s series %d %s: slope %.1f/h, "
                        "medians %.0f / %.0f / %.0f" % (
                            v["worker"], v["series"], v["metric"],
                            v["slope_h"], v["m1"], v["m2"], v["m3"])
                        for v in leaks if v["verdict"] == "LEAK"]
            text = (head + "**Outcome: %s**\n\n" %
                    ("FAIL" if bullets else "pass") +
                    "".join(b_ + "\n" for b_ in bullets) +
                    ("\n" if bullets else "") + rest)
            with open(path, "w") as f:
                f.write(text)
    plot(s)
    return 1 if s.failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("minutes", type=float)
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("EDR_FAULT_SEED", "0")) or
                    None)
    ap.add_argument("--rate", type=float, default=BENCH_MAX_RATE / 5.0,
                    help="events/s (default a fifth of %d)" % BENCH_MAX_RATE)
    ap.add_argument("--lookup-rate", type=float, default=200.0,
                    help="lookups/s per worker")
    ap.add_argument("--conns", type=int, default=20000)
    ap.add_argument("--stores", default="memory,postgres")
    ap.add_argument("--fault-every", type=float, default=180.0)
    ap.add_argument("--outage-s", type=float, default=10.0)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--warmup-s", type=float, default=None,
                    help="default 120 (40 for runs under 10 minutes)")
    ap.add_argument("--min-samples", type=int, default=None,
                    help="default 18 (6 for runs under 10 minutes)")
    ap.add_argument("--leak-pct", type=float, default=10.0)
    ap.add_argument("--catch-up-timeout", type=float, default=300.0)
    ap.add_argument("--final-reserve-s", type=float, default=None)
    ap.add_argument("--worker", default=os.path.join(
        os.environ.get("EDR_BUILD_DIR", os.path.join(ROOT, "build")),
        "edr-worker-test"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--replot", default=None, metavar="DIR",
                    help="redraw DIR/soak.png from DIR's CSVs (give "
                    "MINUTES, --seed and --rate as in the run)")
    ap.add_argument("--out", default=None,
                    help="where samples.csv, events.csv, soak.png and "
                    "summary.md go (default the work dir)")
    args = ap.parse_args()
    short = args.minutes < 10
    if args.warmup_s is None:
        args.warmup_s = 40.0 if short else 120.0
    if args.min_samples is None:
        args.min_samples = 6 if short else 18
    if args.final_reserve_s is None:
        args.final_reserve_s = 25.0 if short else 60.0
    args.stores = [s for s in args.stores.split(",") if s]
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    leak_self_test(args)
    if args.replot:
        return replot(args.replot, args)
    # What faults.Env and Scenario read.
    args.size, args.events, args.keep = "ci", 1, False
    if not os.access(args.worker, os.X_OK):
        log("no worker binary at %s (--worker or EDR_BUILD_DIR)" %
            args.worker)
        return 2
    args.workdir = args.workdir or os.path.join(
        ROOT, ".local", "faults", "soak-%d" % os.getpid())
    os.makedirs(args.workdir, exist_ok=True)
    args.out = args.out or args.workdir
    log("seed %d (rerun: tests/fault/run.sh --soak %g --seed %d), work dir "
        "%s" % (args.seed, args.minutes, args.seed, args.workdir))
    s = Soak(args)
    rc = s.run()
    for f in s.failures:
        log("FAIL: %s" % f)
    log("%s in %.0f s; summary %s" % ("pass" if rc == 0 else "FAIL", s.t(),
                                      os.path.join(args.out, "summary.md")))
    if rc == 0 and args.out != args.workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)
    else:
        # The broker's data is the bulk; the logs stay.
        shutil.rmtree(os.path.join(args.workdir, "kafka", "data"),
                      ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
