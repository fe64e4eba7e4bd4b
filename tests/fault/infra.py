"""infra.py: processes the fault suite starts, stops and kills.

- Worker: one edr-worker process with its own HTTP port and log file.
- OwnRedis (port 16395), OwnPostgres (15447), OwnKafka (19096/19097):
  private servers that scenarios stop and restart. The shared stack of
  scripts/services.sh (19092, 16379, 15432) is never stopped.
- Rpc: the lookup client of schemas/README.md section 2 (many requests in flight
  on one reply list, matched by id).
"""

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid

import redis


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, step=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))


# ---------------------------------------------------------------- worker


class Worker:
    def __init__(self, binary, name, env, workdir, extra_args=()):
        self.binary, self.name = binary, name
        self.env = dict(env)
        self.port = free_port()
        self.env["EDR_HTTP_ADDR"] = "127.0.0.1:%d" % self.port
        self.env["EDR_WORKER_ID"] = name
        self.args = list(extra_args)
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.starts = 0
        self.kills = 0

    def start(self, extra_env=None):
        env = dict(os.environ)
        env.update(self.env)
        if extra_env:
            env.update(extra_env)
        log = open(self.log_path, "ab")
        log.write(b"---- start %d\n" % self.starts)
        log.flush()
        self.proc = subprocess.Popen([self.binary] + self.args, env=env,
                                     stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        self.starts += 1

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def last_errors(self, n=5):
        """The last n error/fatal lines of this worker's log (librdkafka's
        connect noise left out): what a CI report needs when it died."""
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return []
        keep = [l for l in lines
                if (" ERROR " in l or "FATAL" in l or "fatal" in l)
                and "Connection refused" not in l]
        return [l[:300] for l in keep[-n:]]

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=20):
        """SIGTERM; the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def http(self, path, timeout=2):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" %
                                        (self.port, path),
                                        timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return None, str(e)

    def metrics(self):
        code, text = self.http("/metrics")
        out = {}
        if code != 200:
            return out
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, val = line.rpartition(" ")
            try:
                out[name] = float(val)
            except ValueError:
                pass
        return out

    def applied_total(self):
        m = self.metrics()
        return sum(v for k, v in m.items()
                   if k.startswith("edr_events_applied_total"))


# ---------------------------------------------------------------- lookups


class RpcError(Exception):
    pass


class Rpc:
    def __init__(self, url, prefix):
        self.r = redis.Redis.from_url(url, socket_timeout=10,
                                      socket_connect_timeout=2)
        self.queue = prefix + ":requests"
        self.reply_to = "%s:reply:faults-%s" % (prefix, uuid.uuid4().hex)
        self.n = 0

    def call_many(self, reqs, timeout=20):
        """reqs: list of (op, args); returns the replies in that order
        (None for a request that got no reply in time)."""
        ids = []
        pipe = self.r.pipeline(transaction=False)
        for op, args in reqs:
            self.n += 1
            rid = "f%d" % self.n
            ids.append(rid)
            pipe.lpush(self.queue, json.dumps({
                "id": rid, "reply_to": self.reply_to, "op": op,
                "args": args or {}}))
        pipe.execute()
        got = {}
        deadline = time.monotonic() + timeout
        want = set(ids)
        while want and time.monotonic() < deadline:
            left = max(1, int(deadline - time.monotonic()))
            item = self.r.blpop(self.reply_to, timeout=min(left, 5))
            if item is None:
                continue
            rep = json.loads(item[1])
            if rep.get("id") in want:
                want.discard(rep["id"])
                got[rep["id"]] = rep
        return [got.get(i) for i in ids]

    def call(self, op, args=None, timeout=10):
        rep = self.call_many([(op, args)], timeout)[0]
        if rep is None:
            raise RpcError("no reply to %s within %s s" % (op, timeout))
        return rep

    def list_all(self, timeout=30):
        items, cursor = [], None
        while True:
            args = {"limit": 1000}
            if cursor:
                args["cursor"] = cursor
            rep = self.call("list_connections", args, timeout)
            if rep["status"] != "ok":
                raise RpcError("list_connections: %s" % rep)
            items.extend(rep["result"]["items"])
            cursor = rep["result"]["next_cursor"]
            if not cursor:
                return items

    def close(self):
        try:
            self.r.delete(self.reply_to)
            self.r.close()
        except redis.RedisError:
            pass


# ---------------------------------------------------------------- servers


class OwnRedis:
    def __init__(self, port, workdir):
        self.port, self.dir = port, os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.url = "redis://127.0.0.1:%d/0" % port

    def start(self):
        if port_open(self.port):
            raise RuntimeError("port %d is taken" % self.port)
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        r = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: self._ping(r), 20, what="own redis")

    @staticmethod
    def _ping(r):
        try:
            return r.ping()
        except redis.RedisError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


class OwnPostgres:
    """A private cluster (trust auth on loopback) run as the OS user
    postgres: PostgreSQL refuses to run as root."""

    def __init__(self, port, workdir):
        self.port = port
        self.bin = os.environ.get("EDR_PG_BIN") or "/usr/lib/postgresql/15/bin"
        self.dir = "/tmp/edr-faults-pg-%d" % os.getpid()
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(workdir, "postgres.log")
        self.dsn = "postgresql://postgres@127.0.0.1:%d/postgres" % port
        self.as_root = os.getuid() == 0

    def _run(self, *args, check=True):
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=check, cwd="/",
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def init(self):
        if port_open(self.port):
            raise RuntimeError("port %d is taken" % self.port)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir, mode=0o700)
        open(self.log, "a").close()
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chown(self.log, pw.pw_uid, pw.pw_gid)
        self._run(self.bin + "/initdb", "-D", self.data, "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--locale=C")
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write("listen_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nfsync = on\n"
                    "max_connections = 50\n" % (self.port, self.dir))

    def start(self):
        self._run(self.bin + "/pg_ctl", "start", "-D", self.data, "-l",
                  self.log, "-w", "-t", "60")

    def stop(self, mode="fast"):
        self._run(self.bin + "/pg_ctl", "stop", "-D", self.data, "-m", mode,
                  "-w", "-t", "60", check=False)

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnKafka:
    """A private single-node KRaft broker from the jars scripts/services.sh
    caches (.local/kafka-libs), with its own data folder."""

    def __init__(self, port, controller_port, workdir, libs):
        self.port, self.cport = port, controller_port
        self.dir = os.path.join(workdir, "kafka")
        self.libs = libs
        self.proc = None
        self.brokers = "127.0.0.1:%d" % port

    def init(self):
        if port_open(self.port) or port_open(self.cport):
            raise RuntimeError("port %d or %d is taken" % (self.port,
                                                           self.cport))
        if not glob.glob(os.path.join(self.libs, "kafka_2.13-*.jar")):
            raise RuntimeError("no Kafka jars in %s (run scripts/services.sh "
                               "up once)" % self.libs)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.props = os.path.join(self.dir, "server.properties")
        with open(self.props, "w") as f:
            f.write("""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{c}
listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}
advertised.listeners=PLAINTEXT://127.0.0.1:{p}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={d}/data
num.partitions=6
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
""".format(c=self.cport, p=self.port, d=self.dir))
        with open(os.path.join(self.dir, "log4j2.properties"), "w") as f:
            f.write("status = warn\nname = faults\n"
                    "appender.f.type = File\nappender.f.name = f\n"
                    "appender.f.fileName = ${sys:kafka.logs.dir}/server.log\n"
                    "appender.f.layout.type = PatternLayout\n"
                    "appender.f.layout.pattern = [%d] %p %m (%c)%n\n"
                    "rootLogger.level = INFO\n"
                    "rootLogger.appenderRef.f.ref = f\n")
        cid = uuid.uuid4().bytes
        import base64
        cid = base64.urlsafe_b64encode(cid).decode().rstrip("=")
        subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t",
                                  cid, "-c", self.props),
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def _java(self, *args, heap=()):
        return (["java"] + list(heap) +
                ["-Dkafka.logs.dir=" + os.path.join(self.dir, "logs"),
                 "-Dlog4j2.configurationFile=" +
                 os.path.join(self.dir, "log4j2.properties"),
                 "-cp", os.path.join(self.libs, "*")] + list(args))

    def start(self, timeout=120):
        out = open(os.path.join(self.dir, "logs", "stdout.log"), "ab")
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", self.props,
                       heap=("-Xms256m", "-Xmx512m", "-XX:+UseG1GC",
                             "-Djava.awt.headless=true")),
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True)
        out.close()
        from confluent_kafka.admin import AdminClient

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("own Kafka broker exited, see %s" %
                                   self.dir)
            if not port_open(self.port):
                return False
            try:
                md = AdminClient({"bootstrap.servers": self.brokers}
                                 ).list_topics(timeout=2)
                return len(md.brokers) == 1
            except Exception:
                return False

        wait_until(ready, timeout, step=0.3, what="own Kafka broker")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
