"""recovery.py: fault scenarios of the changelog and of state gaps
(schemas/README.md section 4, issue 14), registered by faults.py.

- gap-restore (memory, file): worker v is stopped mid-run, a keeper k (a
  memory worker with its own RPC prefix) goes on applying and writing the
  changelog; DeleteRecords then moves every partition's log start past v's
  position. v restarted with EDR_CHANGELOG_TOPIC=off must report the gap
  (/readyz 503 naming it, state_incomplete, edr_state_gap_offsets); a
  memory worker g without a changelog started with EDR_ACCEPT_GAP=1 must be
  ready; v restarted with the changelog restores from it, and the usual
  end-of-run checks (every entry, the count, the DLQ) hold on v exactly.
- changelog-zombie (memory, file): two workers a and b write the changelog
  (session timeout 6 s; a answers the lookups, b on its own prefix); a,
  owner of some changelog partitions, is frozen
  with SIGSTOP for 10 s while events flow, then resumed with SIGCONT. After
  the usual checks: the changelog's content (latest record per key,
  read_committed) equals the model; then a and b stop, the source's whole
  history is deleted (DeleteRecords to the end) and a fresh memory worker f
  restored from the changelog alone (a memory worker, or a file worker
  whose file is missing) must equal the model exactly.
"""

import json
import os
import signal
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError,
                             TopicPartition)
from confluent_kafka.admin import AdminClient

from faults import PARTITIONS, Failure, Scenario, model_key  # noqa: E402
from infra import Rpc, Worker, wait_until  # noqa: E402


class ChangelogScenario(Scenario):
    """What both scenarios share: the changelog topic, the ownership
    group, DeleteRecords, and workers with their own settings."""
    stores = ("memory", "file")
    restarts = True

    @property
    def changelog(self):
        return self.topic + ".changelog"

    @property
    def owner_group(self):
        return "g_" + self.id + ".changelog"

    def worker(self, name, extra_env=None, args=(), start=True):
        env = self.worker_env()
        env["EDR_FILE_PATH"] = os.path.join(self.dir, "store-" + name,
                                            "edr.json")
        env.update(extra_env or {})
        w = Worker(self.env.binary, name, env, self.dir, list(args))
        self.workers.append(w)
        if start:
            w.start()
        return w

    def delete_topics(self):
        super().delete_topics()
        try:
            admin = AdminClient({"bootstrap.servers": self.brokers})
            for f in admin.delete_topics([self.changelog],
                                         operation_timeout=10).values():
                f.result()
        except Exception:
            pass

    def committed(self):
        """The source offsets committed for the ownership group (what the
        changelog reflects), per partition (-1: none)."""
        c = Consumer({"bootstrap.servers": self.brokers,
                      "group.id": self.owner_group,
                      "isolation.level": "read_committed",
                      "enable.auto.commit": False})
        try:
            tps = c.committed([TopicPartition(self.topic, p)
                               for p in range(PARTITIONS)], timeout=10)
            return {tp.partition: tp.offset for tp in tps}
        finally:
            c.close()

    def delete_records(self, before):
        admin = AdminClient({"bootstrap.servers": self.brokers})
        fs = admin.delete_records([TopicPartition(self.topic, p, o)
                                   for p, o in before.items()],
                                  operation_timeout=30)
        for f in fs.values():
            f.result()
        low = self.log_starts()
        if any(low[p] != o for p, o in before.items()):
            raise Failure("DeleteRecords: log starts %s, want %s" %
                          (low, before))

    def log_starts(self):
        c = Consumer({"bootstrap.servers": self.brokers,
                      "group.id": "faults-wm-" + self.id})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(self.topic, p),
                                               timeout=10)[0]
                    for p in range(PARTITIONS)}
        finally:
            c.close()

    def read_changelog(self):
        """Latest record per key of the changelog, read_committed, to the
        end: {connection key: decoded value or None (tombstone)}."""
        c = Consumer({"bootstrap.servers": self.brokers,
                      "group.id": "faults-cl-" + self.id,
                      "isolation.level": "read_committed",
                      "enable.auto.commit": False,
                      "enable.partition.eof": True})
        latest = {}
        try:
            c.assign([TopicPartition(self.changelog, p, OFFSET_BEGINNING)
                      for p in range(PARTITIONS)])
            left = set(range(PARTITIONS))
            deadline = time.monotonic() + 60
            while left and time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        left.discard(m.partition())
                    continue
                k = (m.key() or b"").decode("utf-8", "replace")
                latest[k] = json.loads(m.value()) if m.value() else None
            if left:
                raise Failure("changelog: partitions %s not read to the end"
                              % sorted(left))
        finally:
            c.close()
        return latest

    def changelog_problems(self, model):
        """What differs between the changelog's content and the model."""
        latest = self.read_changelog()
        live = {k: v for k, v in latest.items() if v is not None}
        exp = model.expected()
        problems = []
        missing = [k for k in exp if k not in live]
        extra = [k for k in live if k not in exp]
        wrong = [k for k in exp if k in live and
                 (live[k].get("edr") != exp[k][1] or
                  model_key(live[k]) != k)]
        if missing:
            problems.append("%d keys missing (e.g. %s...)" %
                            (len(missing), missing[0][:12]))
        if extra:
            problems.append("%d stale keys (e.g. %s...)" %
                            (len(extra), extra[0][:12]))
        if wrong:
            problems.append("%d stale values (e.g. %s...)" %
                            (len(wrong), wrong[0][:12]))
        return problems, len(latest)

    def wait_changelog_is_model(self, model, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            problems, n = self.changelog_problems(model)
            if not problems:
                return n
            if time.monotonic() >= deadline:
                raise Failure("changelog content: " + "; ".join(problems))
            time.sleep(1.0)

    def owned(self):
        """client.id -> changelog partitions it owns now."""
        admin = AdminClient({"bootstrap.servers": self.brokers})
        try:
            d = admin.describe_consumer_groups([self.owner_group],
                                               request_timeout=5)
            g = d[self.owner_group].result(10)
        except Exception:
            return {}
        out = {}
        for m in g.members:
            tps = m.assignment.topic_partitions if m.assignment else []
            out[m.client_id] = sorted(tp.partition for tp in tps)
        return out

    @staticmethod
    def log_has(w, text, since_start=None):
        try:
            with open(w.log_path, errors="replace") as f:
                body = f.read()
        except OSError:
            return False
        if since_start is not None:
            body = body.rpartition("---- start %d\n" % since_start)[2]
        return text in body


# ---------------------------------------------------------------- gaps


class GapRestore(ChangelogScenario):
    """A worker down while retention (DeleteRecords) passed its position:
    the gap is reported, accepted on request, and restored from the
    changelog another worker kept."""
    name = "gap-restore"

    def start_workers(self):
        self.publish_s = max(self.publish_s, 14.0)
        self.v = self.worker("v")
        self.k = self.worker("k", {"EDR_STORE": "memory",
                                   "EDR_RPC_PREFIX": "edrf:%s:k" % self.id})

    def wait_ready_state(self, w, code, what, timeout=60):
        try:
            wait_until(lambda: w.http("/readyz")[0] == code, timeout,
                       step=0.2, what=what)
        except TimeoutError:
            raise Failure("%s: /readyz %s" % (what, w.http("/readyz")))

    def inject(self):
        v, k = self.v, self.k
        time.sleep(self.publish_s * 0.25)
        with self.obs_lock:
            code = v.stop()
            self.state_lost()
        if code != 0:
            raise Failure("v exited %s on SIGTERM" % code)
        at_stop = self.high_watermarks()
        # Wait until k's changelog reflects more than v applied, then cut
        # the log there: every partition's start passes v's position.
        try:
            wait_until(lambda: all(c > at_stop[p] for p, c in
                                   self.committed().items()), 60, step=0.3,
                       what="the changelog to pass v's position")
        except TimeoutError:
            raise Failure("the changelog never passed v's position %s: %s"
                          % (at_stop, self.committed()))
        before = self.committed()
        self.delete_records(before)
        self.faults.append("v stopped; log start moved past it (%d events "
                           "deleted)" % sum(before.values()))

        # 1. v without a changelog: the gap is loud.
        v.start({"EDR_CHANGELOG_TOPIC": "off"})
        self.wait_ready_state(v, 503, "v's gap on /readyz")
        body = v.http("/readyz")[1]
        if "gap" not in body:
            raise Failure("/readyz 503 does not name the gap: %s" % body)
        rpc = Rpc(self.redis_url, "edrf:" + self.id)
        try:
            wait_until(lambda: rpc.call("count").get("code") ==
                       "state_incomplete", 30, what="state_incomplete")
        except TimeoutError:
            raise Failure("count did not answer state_incomplete: %s" %
                          rpc.call("count"))
        finally:
            rpc.close()
        gaps = sum(val for name, val in v.metrics().items()
                   if name.startswith("edr_state_gap_offsets{"))
        if gaps <= 0:
            raise Failure("edr_state_gap_offsets is 0 during the gap")
        if v.stop() != 0:
            raise Failure("v (gap) did not exit 0 on SIGTERM")
        self.notes.append("gap: /readyz 503, state_incomplete, %d missing "
                          "offsets" % gaps)

        # 2. a worker without a changelog accepts the loss on request.
        g = self.worker("g", {"EDR_STORE": "memory",
                              "EDR_CHANGELOG_TOPIC": "off",
                              "EDR_ACCEPT_GAP": "1",
                              "EDR_RPC_PREFIX": "edrf:%s:g" % self.id})
        self.wait_ready_state(g, 200, "g ready with EDR_ACCEPT_GAP=1")
        if not self.log_has(g, "state gap accepted"):
            raise Failure("g is ready but logged no accepted gap")
        if g.stop() != 0:
            raise Failure("g did not exit 0 on SIGTERM")
        self.faults.append("g: EDR_ACCEPT_GAP=1, ready")

        # 3. v with the changelog k kept: restored, then exact.
        with self.obs_lock:
            self.state_lost()
            v.start()
        try:
            wait_until(lambda: self.log_has(v, "restored ", v.starts - 1),
                       60, what="v's restore")
        except TimeoutError:
            raise Failure("v did not restore from the changelog")
        if self.store == "file" and not self.log_has(
                v, "restore: removed the ", v.starts - 1):
            raise Failure("the file store's state was not replaced")
        self.faults.append("v restarted: restored from the changelog")

    def extra_checks(self):
        if self.log_has(self.v, "state gap:", self.v.starts - 1):
            raise Failure("v reported a gap after its restore")


class GapAtRuntime(ChangelogScenario):
    """A running file worker whose position falls out of the log during a
    store outage restores from the changelog on the fly."""
    name = "gap-runtime"
    stores = ("file",)

    def start_workers(self):
        self.publish_s = max(self.publish_s, 14.0)
        self.v = self.worker("v", {
            "EDR_FAULT": "write:%d" % self.rng.randrange(10, 30)},
            args=["-X", "client.id=v"])
        self.k = self.worker("k", {"EDR_STORE": "memory",
                                   "EDR_RPC_PREFIX": "edrf:%s:k" % self.id},
                             args=["-X", "client.id=k"])

    def inject(self):
        v = self.v
        try:
            wait_until(lambda: v.metrics().get("edr_store_ok") == 0, 30,
                       what="v's store outage")
        except TimeoutError:
            raise Failure("the EDR_FAULT store outage never began")
        at_stall = self.high_watermarks()  # v's fetchers are paused
        # v keeps the writer role of its changelog partitions while its
        # store is down (it writes what it applies: nothing); the log is
        # cut where k's partitions are covered.
        try:
            wait_until(lambda: all(self.owned().get(n) for n in "kv"), 30,
                       step=0.5, what="k and v to share the changelog")
        except TimeoutError:
            raise Failure("the changelog partitions never shared: %s" %
                          self.owned())
        ks = self.owned().get("k") or []
        try:
            wait_until(lambda: all(self.committed()[p] > at_stall[p]
                                   for p in ks), 60, step=0.3,
                       what="the changelog to pass v's position")
        except TimeoutError:
            raise Failure("the changelog of %s never passed v's position"
                          % ks)
        c = self.committed()
        before = {p: c[p] for p in ks}
        self.delete_records(before)
        v.signal(signal.SIGUSR2)  # the store works again
        self.faults.append("v's store failed (EDR_FAULT write); meanwhile "
                           "the log start of k's partitions %s moved past "
                           "it (%d events deleted); then SIGUSR2" %
                           (ks, sum(before.values())))
        try:
            wait_until(lambda: self.log_has(v, "restore: removed the "), 60,
                       what="v's restore while running")
        except TimeoutError:
            raise Failure("v did not restore from the changelog while "
                          "running")
        self.faults.append("v restored from the changelog while running")


# ---------------------------------------------------------------- zombie


class ChangelogZombie(ChangelogScenario):
    """A changelog writer frozen past its session timeout and resumed
    writes nothing stale: the changelog and a restore from it alone equal
    the model."""
    name = "changelog-zombie"

    ARGS = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]

    def start_workers(self):
        self.publish_s = max(self.publish_s, 16.0)
        self.a = self.worker("a", args=self.ARGS + ["-X", "client.id=a"])
        # b answers on its own prefix: two workers each answer from their
        # own state, so the observer, which asks the main one, would see
        # a lagging worker's older answer after a newer one as a regression.
        self.b = self.worker("b", {"EDR_RPC_PREFIX": "edrf:%s:b" % self.id},
                             args=self.ARGS + ["-X", "client.id=b"])

    def inject(self):
        a = self.a
        try:
            wait_until(lambda: self.owned().get("a") and
                       self.owned().get("b"), 60, step=0.5,
                       what="a and b to share the changelog partitions")
        except TimeoutError:
            raise Failure("ownership never shared: %s" % self.owned())
        mine = self.owned().get("a")
        time.sleep(self.rng.uniform(1.0, 2.0))
        a.signal(signal.SIGSTOP)
        t = time.monotonic()
        time.sleep(10)  # session.timeout.ms is 6000
        took = self.owned().get("b")
        a.signal(signal.SIGCONT)
        self.faults.append("a (owner of %s) SIGSTOPped %.1f s, then SIGCONT"
                           % (mine, time.monotonic() - t))
        self.notes.append("while a was frozen b owned %s" % took)
        if took != list(range(PARTITIONS)):
            raise Failure("b did not take every changelog partition while a "
                          "was frozen: %s" % took)

    def extra_checks(self):
        n = self.wait_changelog_is_model(self.model)
        fenced = self.log_has(self.a, "lost the writer role")
        self.notes.append("changelog equals the model (%d keys read); a %s" %
                          (n, "was fenced" if fenced else
                           "logged no fenced write"))
        for w in (self.a, self.b):
            code = w.stop()
            if code != 0:
                raise Failure("%s exited %s on SIGTERM" % (w.name, code))
        hw = self.high_watermarks()
        self.delete_records(hw)
        f = self.worker("f")  # a fresh store: restored
        try:
            wait_until(lambda: f.http("/readyz")[0] == 200, 60,
                       what="f ready")
        except TimeoutError:
            raise Failure("f not ready: %s" % (f.http("/readyz"),))
        if not self.log_has(f, "restored "):
            raise Failure("f is ready but did not restore")
        self.verify_state(self.model)
        self.notes.append("history deleted (%d events); fresh f restored from "
                          "the changelog alone: exact" % sum(hw.values()))

    def run(self):
        # extra_checks needs the model run() builds: catch it on the way.
        orig = self.verify_state

        def keep(model):
            self.model = model
            return orig(model)
        self.verify_state = keep
        return super().run()


SCENARIOS = [GapRestore, GapAtRuntime, ChangelogZombie]
CI_PLAN = [("gap-restore", "file"), ("gap-runtime", "file"),
           ("changelog-zombie", "memory")]
