#!/usr/bin/env python3
"""cluster.py: the fault suite against a three-node Kafka cluster (issue 19).

`tests/fault/run.sh --cluster` runs this file against the cluster of
`scripts/services.sh up --cluster` (brokers 19192-19194, controllers
19292-19294, default.replication.factor=3, min.insync.replicas=2). Every
scenario reuses the model check of faults.py (every entry, the exact count,
the dead-letter topic, no state moving backwards, /healthz, exit 0) with
its topics at replication factor 3 (source, dead-letter and the changelog
the worker creates with the source's factor), and adds:

- producers: each worker's log must show its dead-letter producer (and,
  for memory and file, its changelog producer) running with acks=-1 (all)
  and enable.idempotence=true, as rd_kafka_conf_get reports them;
- replication: the source, dead-letter and changelog topics have 3
  replicas;
- resume time: at the end of each fault (and where it says so, at its
  start) one probe event per partition is published; the time until the
  worker serves all of them is the resume (failover) time in the notes.
  Probes are model events, so the final check covers them too.

Scenarios: leader-kill, rolling-restart, broker-freeze, two-down,
quorum-leader (tests/fault/README.md, "Cluster scenarios").

usage: cluster.py [--ci | --long] [--seed N] [--only NAME[/STORE],...]
                  [--list] [--events N] [--outage-s S] [--keep] [--json F]
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

from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import PARTITIONS, Env, Failure, Scenario  # noqa: E402
from infra import Rpc, wait_until  # noqa: E402

ROOT = faults.ROOT
SERVICES = os.path.join(ROOT, "scripts", "services.sh")
NODES = 3


def log(msg):
    print("cluster: %s" % msg, flush=True)


# ---------------------------------------------------------------- the cluster


class Cluster:
    """The nodes of `services.sh up --cluster`: their pid files, signals,
    the controller quorum's leader, partition leaders."""

    def __init__(self, cdir, brokers):
        self.dir = cdir
        self.brokers = brokers
        self.ports = [int(b.rsplit(":", 1)[1]) for b in brokers.split(",")]

    def node_dir(self, n):
        return os.path.join(self.dir, "node%d" % n)

    def pid(self, n):
        try:
            with open(os.path.join(self.node_dir(n), "kafka.pid")) as f:
                pid = int(f.read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"node%d/server.properties" % n not in f.read():
                    return None
            return pid
        except (OSError, ValueError):
            return None

    def alive(self, n):
        return self.pid(n) is not None

    def send(self, n, sig):
        pid = self.pid(n)
        if pid is None:
            raise Failure("kafka node %d is not running" % n)
        os.kill(pid, sig)
        return pid

    def kill(self, n, sig=signal.SIGKILL, timeout=60):
        """Sends sig and waits until the JVM is gone; the seconds it took."""
        t0 = time.monotonic()
        pid = self.send(n, sig)
        try:
            wait_until(lambda: not os.path.exists("/proc/%d" % pid), timeout,
                       step=0.05, what="kafka node %d to exit" % n)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not os.path.exists("/proc/%d" % pid), 20,
                       step=0.05, what="kafka node %d to die" % n)
            raise Failure("kafka node %d ignored %s for %d s" %
                          (n, signal.Signals(sig).name, timeout))
        return time.monotonic() - t0

    def up(self, timeout=180):
        """services.sh up --cluster: starts the nodes that are down, waits
        for the quorum, the brokers and every partition's full ISR.
        Returns the seconds it took."""
        t0 = time.monotonic()
        env = dict(os.environ, EDR_KAFKA_TIMEOUT=str(int(timeout)))
        r = subprocess.run([SERVICES, "up", "--cluster"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=timeout + 60)
        if r.returncode != 0:
            raise Failure("services.sh up --cluster: %s" %
                          r.stderr.strip().splitlines()[-1:])
        return time.monotonic() - t0

    def quorum_state(self, n):
        path = os.path.join(self.node_dir(n), "data", "__cluster_metadata-0",
                            "quorum-state")
        try:
            with open(path) as f:
                st = json.load(f)
            return st.get("leaderId", -1), st.get("leaderEpoch", -1)
        except (OSError, ValueError):
            return -1, -1

    def quorum_leader(self):
        """(leader node, epoch) that a majority of the live voters name,
        or (None, None)."""
        votes = {}
        for n in range(1, NODES + 1):
            if self.alive(n):
                st = self.quorum_state(n)
                if st[0] >= 1:
                    votes[st] = votes.get(st, 0) + 1
        for st, v in votes.items():
            if v >= NODES // 2 + 1 and self.alive(st[0]):
                return st
        return None, None

    def leaders(self, topic):
        """{partition: (leader, replicas, isrs)} from the metadata."""
        admin = AdminClient({"bootstrap.servers": self.brokers})
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        if t is None or t.error is not None:
            return {}
        return {p: (m.leader, list(m.replicas), list(m.isrs))
                for p, m in t.partitions.items()}

    def rss_mb(self):
        out = {}
        for n in range(1, NODES + 1):
            pid = self.pid(n)
            if pid is None:
                continue
            try:
                with open("/proc/%d/status" % pid) as f:
                    for ln in f:
                        if ln.startswith("VmRSS:"):
                            out[n] = int(ln.split()[1]) // 1024
            except OSError:
                pass
        return out


# ---------------------------------------------------------------- scenarios


class ClusterScenario(Scenario):
    stores = ("file", "postgres")
    # A dead-letter copy whose produce request timed out (10 s
    # message.timeout.ms of the worker's DLQ producer) while the broker had
    # appended it is written again when the worker retries: worker/dlq.c
    # takes a duplicate over a loss. Copies are counted in the notes.
    restarts = True
    publish_min_s = 20.0

    def __init__(self, env, store, seed):
        super().__init__(env, store, seed)
        self.cluster = env.cluster
        self.publish_s = max(self.publish_s, self.publish_min_s)
        self.probes = 0
        self.resume_times = []
        self.producer_lines = []
        self.reopened = 0

    # The driver publishes model.records from a thread; probes appended to
    # that list meanwhile must not be published twice.
    def publish(self, records, duration):
        super().publish(list(records), duration)

    def create_topics(self):
        admin = AdminClient({"bootstrap.servers": self.brokers})
        fs = admin.create_topics([NewTopic(self.topic, PARTITIONS, 3),
                                  NewTopic(self.dlq, 1, 3)],
                                 operation_timeout=30)
        for f in fs.values():
            f.result()

        def ready():
            for t, n in ((self.topic, PARTITIONS), (self.dlq, 1)):
                md = self.cluster.leaders(t)
                if len(md) != n or any(ld < 0 or len(isr) < 3
                                       for ld, _, isr in md.values()):
                    return False
            return True

        wait_until(ready, 60, step=0.3, what="RF-3 topics with full ISR")

    def delete_topics(self):
        try:
            admin = AdminClient({"bootstrap.servers": self.brokers})
            for f in admin.delete_topics(
                    [self.topic, self.dlq, self.topic + ".changelog"],
                    operation_timeout=20).values():
                try:
                    f.result()
                except Exception:
                    pass
        except Exception:
            pass

    def teardown(self):
        # A scenario that failed half-way may leave nodes down or frozen.
        for n in range(1, NODES + 1):
            if self.cluster.alive(n):
                self.cluster.send(n, signal.SIGCONT)
        self.cluster.up()

    # ---- probes: the resume time ----

    def probe(self, label, t_ref, serve_timeout=180):
        """Publishes one model event per partition now and waits until the
        worker serves all of them; notes the time from t_ref (the fault's
        end, or start) to the last one served. Returns that time."""
        rs = self.model.add_sentinels(PARTITIONS)
        for r in rs:
            r.kind = "probe"
        self.probes += len(rs)
        t_pub = time.monotonic()
        super().publish(rs, 0)
        published = time.monotonic() - t_pub
        rpc = Rpc(self.redis_url, "edrf:" + self.id)
        want = {r.key: self.model.current[r.key] for r in rs}
        deadline = time.monotonic() + serve_timeout
        try:
            while True:
                reps = rpc.call_many(
                    [("get_connection", self.model.by_key[k].fields())
                     for k in want], timeout=3)
                if all(rep and rep["status"] == "ok" and
                       rep["result"] == want[k]
                       for k, rep in zip(want, reps)):
                    break
                if not self.live_workers():
                    raise Failure("%s: the worker exited (code %s)" % (
                        label, [w.proc.returncode for w in self.workers]))
                if time.monotonic() > deadline:
                    raise Failure("%s: probes not served within %.0f s" %
                                  (label, serve_timeout))
                time.sleep(0.05)
        finally:
            rpc.close()
        took = time.monotonic() - t_ref
        self.notes.append("%s: ingest resumed in %.1f s (probe publish %.1f s)"
                          % (label, took, published))
        self.resume_times.append((label, round(took, 1)))
        return took

    def busiest_leader(self):
        """The node leading the most source partitions."""
        md = self.cluster.leaders(self.topic)
        count = {}
        for ld, _, _ in md.values():
            if ld >= 1:
                count[ld] = count.get(ld, 0) + 1
        if not count:
            raise Failure("no partition of %s has a leader" % self.topic)
        return max(sorted(count), key=lambda n: count[n]), count

    def wait_ingesting(self, timeout=60):
        w = self.workers[0]
        wait_until(lambda: w.applied_total() > 0, timeout, step=0.1,
                   what="the worker to apply events")

    def rejoin(self, label):
        took = self.cluster.up()
        self.notes.append("%s: rejoined with full ISR in %.1f s" %
                          (label, took))

    # ---- checks every cluster scenario adds ----

    def extra_checks(self):
        problems = []
        for w in self.workers:
            try:
                with open(w.log_path, errors="replace") as f:
                    lines = [ln for ln in f if "producer: acks=" in ln]
            except OSError:
                lines = []
            kinds = {"dlq"}
            if self.store in ("memory", "file"):
                kinds.add("changelog")
            for k in sorted(kinds):
                mine = [ln for ln in lines if "kafka %s producer:" % k in ln]
                if not mine:
                    problems.append("%s: no '%s producer' configuration line"
                                    % (w.name, k))
                for ln in mine:
                    if "acks=-1 " not in ln and "acks=all " not in ln or \
                            "enable.idempotence=true" not in ln:
                        problems.append("%s: %s" % (w.name, ln.strip()))
            for ln in lines:
                what = ln.split("kafka ", 1)[-1].strip()
                if what not in self.producer_lines:
                    self.producer_lines.append(what)
            try:
                with open(w.log_path, errors="replace") as f:
                    self.reopened += sum(1 for ln in f
                                         if "opening a new writer" in ln)
            except OSError:
                pass
        topics = [self.topic, self.dlq]
        if self.store in ("memory", "file"):
            topics.append(self.topic + ".changelog")
        for t in topics:
            md = self.cluster.leaders(t)
            if not md or any(len(rep) != 3 for _, rep, _ in md.values()):
                problems.append("topic %s: replicas %s (want 3 each)" %
                                (t, sorted({len(r) for _, r, _ in
                                            md.values()})))
        if problems:
            raise Failure("cluster: " + "; ".join(problems[:4]))
        self.notes.append("producers: %s" % "; ".join(self.producer_lines))
        self.notes.append("topics %s at RF 3; %d probes; changelog writer "
                          "reopened %d x after a fatal producer error" %
                          ("+".join(("source", "dlq", "changelog")
                                    [:len(topics)]), self.probes,
                           self.reopened))

    def setup(self):
        self.resume_times = []


class LeaderKill(ClusterScenario):
    """SIGKILL the broker leading the most source partitions during ingest,
    restart it, wait for its ISR."""
    name = "leader-kill"
    stores = ("file", "postgres")

    def inject(self):
        self.wait_ingesting()
        time.sleep(self.rng.uniform(1.0, 3.0))
        n, count = self.busiest_leader()
        self.cluster.kill(n, signal.SIGKILL)
        t = time.monotonic()
        self.faults.append("SIGKILL node %d (leader of %d/%d partitions)" %
                           (n, count[n], PARTITIONS))
        self.probe("node %d killed (leader election)" % n, t)
        time.sleep(self.rng.uniform(2.0, 4.0))
        self.rejoin("node %d" % n)
        self.probe("after node %d rejoined" % n, time.monotonic())


class RollingRestart(ClusterScenario):
    """SIGTERM each broker in turn during ingest and a lookup load; wait
    for it to rejoin and the ISR to recover before the next."""
    name = "rolling-restart"
    stores = ("memory", "postgres")
    publish_min_s = 45.0

    def inject(self):
        self.wait_ingesting()
        stop = threading.Event()
        stats = {"ok": 0, "err": 0, "gap": 0.0}

        def load():
            rpc = Rpc(self.redis_url, "edrf:" + self.id)
            last = time.monotonic()
            while not stop.is_set():
                try:
                    if rpc.call("count", timeout=2)["status"] == "ok":
                        stats["ok"] += 1
                        now = time.monotonic()
                        stats["gap"] = max(stats["gap"], now - last)
                        last = now
                        continue
                except Exception:
                    pass
                stats["err"] += 1
                time.sleep(0.05)
            rpc.close()

        lt = threading.Thread(target=load, daemon=True)
        lt.start()
        order = list(range(1, NODES + 1))
        self.rng.shuffle(order)
        try:
            for n in order:
                time.sleep(self.rng.uniform(0.5, 2.0))
                took = self.cluster.kill(n, signal.SIGTERM)
                t = time.monotonic()
                self.faults.append("SIGTERM node %d (%.1f s)" % (n, took))
                self.probe("node %d stopped" % n, t)
                self.rejoin("node %d" % n)
        finally:
            stop.set()
            lt.join(10)
        self.notes.append("lookup load: %d ok, %d failed, longest gap "
                          "%.1f s" % (stats["ok"], stats["err"], stats["gap"]))
        if stats["gap"] > 5.0:
            raise Failure("lookups stalled %.1f s during the rolling restart"
                          % stats["gap"])


class BrokerFreeze(ClusterScenario):
    """SIGSTOP the busiest leader past its session timeout
    (broker.session.timeout.ms 9 s), then SIGCONT."""
    name = "broker-freeze"
    stores = ("file",)

    def inject(self):
        self.wait_ingesting()
        time.sleep(self.rng.uniform(1.0, 3.0))
        n, count = self.busiest_leader()
        self.cluster.send(n, signal.SIGSTOP)
        t0 = time.monotonic()
        frozen_s = 9.0 + self.env.args.outage_s / 2
        res = {}

        def frozen_probe():
            try:
                res["t"] = self.probe("node %d frozen (probe published at "
                                      "SIGSTOP)" % n, t0)
            except Exception as e:
                res["err"] = e

        pt = threading.Thread(target=frozen_probe, daemon=True)
        try:
            pt.start()
            time.sleep(frozen_s)
        finally:
            self.cluster.send(n, signal.SIGCONT)
        t1 = time.monotonic()
        self.faults.append("SIGSTOP node %d (leader of %d partitions) %.1f s,"
                           " SIGCONT" % (n, count[n], t1 - t0))
        pt.join(300)
        if "err" in res:
            raise res["err"]
        self.notes.append("probe published at SIGSTOP served %s" % (
            "while frozen" if res["t"] < t1 - t0 else
            "%.1f s after SIGCONT" % (res["t"] - (t1 - t0))))
        self.probe("node %d resumed" % n, t1)
        self.rejoin("node %d" % n)


class TwoDown(ClusterScenario):
    """SIGKILL two of the three nodes during ingest: every partition below
    min.insync.replicas and the controller quorum lost. Producers (the test
    publisher, edrctl publish, the worker's dead letters and changelog) must
    wait or fail loudly; the worker holds, then resumes."""
    name = "two-down"
    stores = ("file", "postgres")

    def edrctl(self, record, timeout_ms):
        path = os.path.join(self.dir, "edrctl-%d.json" % record.idx)
        with open(path, "wb") as f:
            f.write(record.value)
        env = dict(os.environ, EDR_KAFKA_BROKERS=self.brokers,
                   EDR_TOPIC=self.topic, EDR_TIMEOUT_MS=str(timeout_ms))
        edrctl = os.path.join(os.path.dirname(self.env.binary), "edrctl")
        return subprocess.run([edrctl, "publish", "--raw", "@" + path,
                               "--key", record.key,
                               "--header",
                               "content-type=application/cloudevents+json"],
                              env=env, capture_output=True, text=True,
                              timeout=timeout_ms / 1000 + 30)

    def inject(self):
        w = self.workers[0]
        self.wait_ingesting()
        time.sleep(self.rng.uniform(1.0, 3.0))
        down = sorted(self.rng.sample(range(1, NODES + 1), 2))
        for n in down:
            self.cluster.kill(n, signal.SIGKILL)
        t0 = time.monotonic()
        # A probe published now must wait (the test publisher's
        # message.timeout.ms is 10 minutes) and arrive after the restart.
        res = {}

        def waiting_probe():
            try:
                res["t"] = self.probe("probe published while 2 nodes down",
                                      t0)
            except Exception as e:
                res["err"] = e

        # edrctl publish with a short timeout must fail loudly (exit 3).
        rec = self.model.add_sentinels(1)[0]
        rec.kind = "probe"
        self.probes += 1
        pt = threading.Thread(target=waiting_probe, daemon=True)
        pt.start()
        time.sleep(2.0)
        r = self.edrctl(rec, 4000)
        if r.returncode == 0:
            self.notes.append("edrctl publish during the outage was "
                              "acknowledged: %s" % r.stdout.strip())
        elif r.returncode != 3 or "edrctl publish:" not in r.stderr:
            raise Failure("edrctl publish during the outage: exit %d, %r" %
                          (r.returncode, r.stderr.strip()))
        else:
            self.notes.append("edrctl publish while down: exit 3 (%s)" %
                              r.stderr.strip().splitlines()[-1])
        applied0 = w.applied_total()
        left = t0 + max(12.0, self.env.args.outage_s + 5) - time.monotonic()
        if left > 0:
            time.sleep(left)
        if not w.alive():
            raise Failure("worker exited with two nodes down")
        held = w.applied_total() - applied0
        code, _ = w.http("/healthz")
        self.notes.append("while down: %d events applied (from the live "
                          "node's high watermark), /healthz %s" %
                          (held, code))
        t1 = time.monotonic()
        took = self.cluster.up()
        self.faults.append("SIGKILL nodes %s, down %.1f s, back with full "
                           "ISR in %.1f s" % (down, t1 - t0, took))
        pt.join(300)
        if "err" in res:
            raise res["err"]
        if "t" not in res:
            raise Failure("the waiting probe never completed")
        self.notes.append("waiting probe served %.1f s after the restart "
                          "began" % (res["t"] - (t1 - t0)))
        # The retry of the edrctl event: acknowledged now, so it must be
        # applied (the model expects it).
        r = self.edrctl(rec, 60000)
        if r.returncode != 0:
            raise Failure("edrctl publish after the restart: exit %d, %r" %
                          (r.returncode, r.stderr.strip()))
        pos = json.loads(r.stdout)
        rec.delivered = (pos["partition"], pos["offset"])
        self.probe("after restart", time.monotonic())


class QuorumLeader(ClusterScenario):
    """SIGKILL the node that is the controller quorum's leader during
    ingest; a new leader must be elected; then restart the node."""
    name = "quorum-leader"
    stores = ("memory",)

    def inject(self):
        self.wait_ingesting()
        time.sleep(self.rng.uniform(1.0, 3.0))
        n, epoch = self.cluster.quorum_leader()
        if n is None:
            raise Failure("no controller quorum leader before the fault")
        t0 = time.monotonic()  # the election starts with the signal
        self.cluster.kill(n, signal.SIGKILL)
        try:
            wait_until(lambda: self.cluster.quorum_leader()[0] not in
                       (None, n), 60, step=0.05,
                       what="a new controller quorum leader")
        except TimeoutError:
            raise Failure("no new quorum leader within 60 s of killing "
                          "node %d" % n)
        new = self.cluster.quorum_leader()
        self.faults.append("SIGKILL quorum leader node %d (epoch %d); node "
                           "%d leads epoch %d after %.1f s" %
                           (n, epoch, new[0], new[1],
                            time.monotonic() - t0))
        self.probe("quorum leader node %d killed" % n, t0)
        time.sleep(self.rng.uniform(1.0, 3.0))
        self.rejoin("node %d" % n)
        self.probe("after node %d rejoined" % n, time.monotonic())


SCENARIOS = [LeaderKill, RollingRestart, BrokerFreeze, TwoDown, QuorumLeader]
# The short form: one store each.
CI_PLAN = [("leader-kill", "file"), ("rolling-restart", "postgres"),
           ("broker-freeze", "file"), ("two-down", "file"),
           ("quorum-leader", "memory")]


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--ci", dest="size", action="store_const", const="ci")
    g.add_argument("--long", dest="size", action="store_const", const="long")
    g.add_argument("--full", dest="size", action="store_const", const="full",
                   help="every scenario x store, CI-sized events")
    ap.set_defaults(size="full")
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("EDR_FAULT_SEED", "0")) or
                    None)
    ap.add_argument("--only", default="")
    ap.add_argument("--events", type=int, default=0)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--outage-s", type=float, default=10.0)
    ap.add_argument("--catch-up-timeout", type=float, default=300.0)
    ap.add_argument("--worker", default=os.path.join(
        os.environ.get("EDR_BUILD_DIR", os.path.join(ROOT, "build")),
        "edr-worker-test"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.only = [s for s in args.only.split(",") if s]
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    todo = plan(args)
    if args.list:
        for cls, st in todo:
            print("%s/%s: %s" % (cls.name, st, cls.__doc__.split("\n")[0]))
        return 0
    if not os.access(args.worker, os.X_OK):
        log("no worker binary at %s" % args.worker)
        return 2
    cdir = os.environ.get("EDR_KAFKA_CLUSTER_DIR")
    if not cdir:
        log("EDR_KAFKA_CLUSTER_DIR is not set (run through "
            "tests/fault/run.sh --cluster)")
        return 2
    args.workdir = args.workdir or os.path.join(
        ROOT, ".local", "faults", "cluster-%d" % os.getpid())
    os.makedirs(args.workdir, exist_ok=True)
    # Env's "ci" size is faults.py's 3,000 events; --long 60,000.
    size = args.size
    args.size = "long" if size == "long" else "ci"
    env = Env(args)
    env.cluster = Cluster(cdir, env.brokers)
    rss0 = env.cluster.rss_mb()
    log("seed %d (rerun: tests/fault/run.sh --cluster %s--seed %d), %d "
        "scenarios, brokers %s, node RSS %s MB, work dir %s" %
        (args.seed, "" if size == "full" else "--%s " % size, args.seed,
         len(todo), env.brokers, rss0, args.workdir))
    results = []
    rss_max = dict(rss0)
    t_all = time.monotonic()
    for cls, st in todo:
        sc = cls(env, st, args.seed)
        log("%s/%s: start (%d events)" % (cls.name, st, sc.n_events))
        r = sc.run()
        r["resume"] = getattr(sc, "resume_times", [])
        for n, mb in env.cluster.rss_mb().items():
            rss_max[n] = max(rss_max.get(n, 0), mb)
        log("%s/%s: %s in %.1f s; %s" % (cls.name, st, r["outcome"],
                                         r["seconds"],
                                         " | ".join(r["faults"] +
                                                    r["notes"])))
        results.append(r)
    faults.print_table(results)
    log("node RSS at the start %s MB, highest seen after a scenario %s MB; "
        "total %.0f s" % (rss0, rss_max, time.monotonic() - t_all))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": args.seed, "rss_start_mb": rss0,
                       "rss_max_mb": rss_max, "results": results}, f,
                      indent=1)
    failed = [r for r in results if r["outcome"] != "pass"]
    log("seed %d: %d passed, %d failed" % (args.seed,
                                          len(results) - len(failed),
                                          len(failed)))
    if not failed and not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
