#!/usr/bin/python3
"""lint-containers.py: structural checks of Dockerfile, .dockerignore and
docker-compose.yml, for machines without a Docker engine.

It checks what `docker build` and `docker-compose up` would only reveal
late: stage layout, a non-root final user, no remote ADD, a health check,
runtime packages without -dev, files copied from the context present and
not ignored, and the compose stack's shape (KRaft Kafka, topic creation,
three PostgreSQL-backed workers, health checks, an edrctl example).

usage: lint-containers.py [--root DIR] [--binary build/edr-worker]
  --binary: also check that every shared library the built program links
  directly (its DT_NEEDED) comes from a package the runtime stage installs.

Runs with Debian's /usr/bin/python3 (python3-yaml comes with the
docker-compose package). Exit 0 when clean, 1 with one line per problem.
"""
import argparse
import fnmatch
import os
import re
import shlex
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # --root
RUNTIME_LIBS = {"librdkafka1", "libyajl2", "libpq5", "libhiredis0.14",
                "libmicrohttpd12", "ca-certificates"}
# In every Debian image already: need not be listed.
BASE_PKGS = {"libc6", "libgcc-s1"}

problems = []


def problem(msg):
    problems.append(msg)


# ------------------------------------------------------------- Dockerfile

def dockerfile_instructions(text):
    """(keyword, args) pairs, continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue  # a comment inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        kw, _, args = cur.partition(" ")
        out.append((kw.upper(), args.strip()))
        cur = ""
    return out


def apt_packages(run_args):
    """Package names of every `apt-get install` in one RUN."""
    pkgs = []
    for cmd in re.split(r"&&|;", run_args):
        words = shlex.split(cmd)
        if "apt-get" in words and "install" in words:
            pkgs += [w for w in words[words.index("install") + 1:]
                     if not w.startswith("-")]
    return pkgs


def dockerignore_patterns():
    path = os.path.join(ROOT, ".dockerignore")
    if not os.path.exists(path):
        problem(".dockerignore: missing (the build context would include "
                ".git, build trees and .local server state)")
        return []
    pats = [l.strip() for l in open(path) if l.strip() and
            not l.startswith("#")]
    for must in (".git", ".local", "build*"):
        if must not in pats:
            problem(f".dockerignore: does not exclude {must}")
    return pats


def ignored(path, pats):
    hit = False
    for p in pats:
        neg = p.startswith("!")
        p = p.lstrip("!").rstrip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, p) or fnmatch.fnmatch(
                    prefix, p.replace("**/", "")):
                hit = not neg
    return hit


def check_dockerfile():
    text = open(os.path.join(ROOT, "Dockerfile")).read()
    ins = dockerfile_instructions(text)
    pats = dockerignore_patterns()
    stages = []  # dicts: image, name, instructions
    for kw, args in ins:
        if kw == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and \
                words[1].upper() == "AS" else None
            stages.append({"image": words[0], "name": name, "ins": []})
        elif kw != "ARG" or stages:
            if not stages:
                problem(f"Dockerfile: {kw} before the first FROM")
                continue
            stages[-1]["ins"].append((kw, args))

    if len(stages) < 2:
        problem("Dockerfile: not multi-stage (want a build and a runtime "
                "stage)")
        return
    for st in stages:
        img = st["image"]
        if ":" not in img or img.endswith(":latest"):
            problem(f"Dockerfile: base image {img} is not pinned to a tag")
    if not stages[0]["image"].startswith("debian:bookworm"):
        problem("Dockerfile: build stage is not Debian bookworm")
    final = stages[-1]
    if final["image"] != "debian:bookworm-slim":
        problem(f"Dockerfile: final stage is {final['image']}, want "
                "debian:bookworm-slim")

    names = {s["name"] for s in stages if s["name"]}
    for st in stages:
        for kw, args in st["ins"]:
            if kw == "ADD":
                if re.search(r"(https?|ftp)://", args):
                    problem(f"Dockerfile: ADD of a URL ({args}): fetch in a "
                            "RUN with a checksum, or COPY")
                else:
                    problem(f"Dockerfile: ADD {args}: use COPY for local "
                            "files")
            if kw == "COPY":
                words = args.split()
                frm = [w for w in words if w.startswith("--from=")]
                srcs = [w for w in words if not w.startswith("--")][:-1]
                if frm:
                    ref = frm[0].split("=", 1)[1]
                    if ref not in names and not ref.isdigit():
                        problem(f"Dockerfile: COPY --from={ref}: no such "
                                "stage")
                    continue
                for src in srcs:
                    if src == ".":
                        continue
                    if not os.path.exists(os.path.join(ROOT, src)):
                        problem(f"Dockerfile: COPY {src}: not in the "
                                "context")
                    elif ignored(src, pats):
                        problem(f"Dockerfile: COPY {src}: excluded by "
                                ".dockerignore")
            if kw == "RUN" and "apt-get install" in args:
                if "--no-install-recommends" not in args:
                    problem("Dockerfile: apt-get install without "
                            "--no-install-recommends")
                if "rm -rf /var/lib/apt/lists" not in args:
                    problem("Dockerfile: apt lists not removed in the same "
                            "RUN as the install")
                if "apt-get update" not in args:
                    problem("Dockerfile: apt-get install without apt-get "
                            "update in the same RUN (stale cache layer)")

    kws = [kw for kw, _ in final["ins"]]
    users = [args for kw, args in final["ins"] if kw == "USER"]
    if not users:
        problem("Dockerfile: final stage has no USER (runs as root)")
    else:
        u = users[-1].split(":")[0]
        if u in ("root", "0"):
            problem("Dockerfile: final stage runs as root")
    for must in ("HEALTHCHECK", "EXPOSE", "ENTRYPOINT"):
        if must not in kws:
            problem(f"Dockerfile: final stage has no {must}")
    for kw, args in final["ins"]:
        if kw == "EXPOSE" and "9464" not in args.split():
            problem(f"Dockerfile: EXPOSE {args}, want 9464 (the HTTP "
                    "endpoints)")
        if kw == "ENTRYPOINT":
            if not args.startswith("["):
                problem("Dockerfile: ENTRYPOINT in shell form (SIGTERM "
                        "would not reach the worker)")
            elif "edr-worker" not in args:
                problem("Dockerfile: ENTRYPOINT does not run edr-worker")
        if kw == "HEALTHCHECK" and "CMD" not in args:
            problem("Dockerfile: HEALTHCHECK without CMD")
        if kw == "HEALTHCHECK":
            # The probe it runs must exist in the final image.
            m = re.search(r'CMD\s+\["([^"]+)"', args)
            if m and not any(kw2 == "COPY" and m.group(1) in a2
                             for kw2, a2 in final["ins"]):
                problem(f"Dockerfile: HEALTHCHECK runs {m.group(1)}, "
                        "which no COPY puts in the image")

    runtime = set()
    for kw, args in final["ins"]:
        if kw == "RUN":
            runtime |= set(apt_packages(args))
    dev = sorted(p for p in runtime if p.endswith("-dev") or p in (
        "build-essential", "cmake", "gcc", "clang", "pkg-config"))
    if dev:
        problem(f"Dockerfile: runtime stage installs build packages {dev}")
    missing = RUNTIME_LIBS - runtime
    if missing:
        problem(f"Dockerfile: runtime stage lacks {sorted(missing)}")
    return runtime


def check_binary(binary, runtime):
    """Each DT_NEEDED library of the built program must come from a
    package the runtime stage installs (or from the base image)."""
    out = subprocess.run(["readelf", "-d", binary], capture_output=True,
                         text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.+?)\]", out)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True,
                         check=True).stdout
    where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    for lib in needed:
        path = where.get(lib)
        if not path or path == "not":
            problem(f"{binary}: {lib} not found by ldd")
            continue
        real = os.path.realpath(path)
        pkg = None
        for cand in (path, real, real.replace("/usr/lib/", "/lib/", 1)):
            r = subprocess.run(["dpkg", "-S", cand], capture_output=True,
                               text=True)
            if r.returncode == 0:
                pkg = r.stdout.split(":")[0]
                break
        if pkg is None:
            problem(f"{binary}: {lib} ({real}) belongs to no Debian package")
        elif pkg not in runtime and pkg not in BASE_PKGS:
            problem(f"Dockerfile: {os.path.basename(binary)} needs {lib} "
                    f"from {pkg}, which the runtime stage does not install")


# ---------------------------------------------------------- docker-compose

def check_compose():
    r = subprocess.run(["docker-compose", "-f",
                        os.path.join(ROOT, "docker-compose.yml"), "config"],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        problem(f"docker-compose config: {r.stderr.strip()}")
        return
    cfg = yaml.safe_load(r.stdout)
    svcs = cfg.get("services", {})

    def env(s):
        e = s.get("environment") or {}
        if isinstance(e, list):
            e = dict(x.split("=", 1) for x in e)
        return {k: str(v) for k, v in e.items()}

    kafka = [n for n, s in svcs.items()
             if s.get("image", "").startswith("apache/kafka:") and
             "broker" in env(s).get("KAFKA_PROCESS_ROLES", "")]
    if len(kafka) != 1:
        problem("compose: want one apache/kafka broker service (KRaft, "
                "KAFKA_PROCESS_ROLES with broker,controller)")
    elif "controller" not in env(svcs[kafka[0]])["KAFKA_PROCESS_ROLES"]:
        problem("compose: Kafka is not a combined KRaft node")
    for img in ("postgres:", "redis:"):
        if not any(s.get("image", "").startswith(img) for s in svcs.values()):
            problem(f"compose: no {img.rstrip(':')} service")

    init = [n for n, s in svcs.items()
            if "kafka-topics.sh" in str(s.get("command", "")) +
            str(s.get("entrypoint", ""))]
    if not init:
        problem("compose: no topic-creation service")
    else:
        cmd = str(svcs[init[0]].get("command", ""))
        for t in ("edr.events", "edr.events.dlq"):
            if t not in cmd:
                problem(f"compose: topic creation does not create {t}")
        if "--if-not-exists" not in cmd:
            problem("compose: topic creation is not idempotent "
                    "(--if-not-exists)")

    workers = {n: s for n, s in svcs.items()
               if s.get("image", "").startswith("edr-worker") and
               "entrypoint" not in s}
    if len(workers) < 3:
        problem(f"compose: {len(workers)} edr-worker replicas, want 3")
    shared = set()
    ids = set()
    for n, s in workers.items():
        e = env(s)
        if e.get("EDR_STORE") != "postgres":
            problem(f"compose: {n}: EDR_STORE is not postgres")
        shared.add((e.get("EDR_PG_DSN"), e.get("EDR_PG_TABLE"),
                    e.get("EDR_GROUP_ID"), e.get("EDR_TOPIC")))
        ids.add(e.get("EDR_WORKER_ID"))
        if not e.get("EDR_HTTP_ADDR", "0.0.0.0").startswith("0.0.0.0"):
            problem(f"compose: {n}: EDR_HTTP_ADDR not reachable from "
                    "outside the container")
        dep = s.get("depends_on") or {}
        if isinstance(dep, list) or not dep:
            problem(f"compose: {n}: depends_on without conditions")
            continue
        for d, c in dep.items():
            want = ("service_completed_successfully" if d in init
                    else "service_healthy")
            if c.get("condition") != want:
                problem(f"compose: {n}: depends on {d} with "
                        f"{c.get('condition')}, want {want}")
        if init and init[0] not in dep:
            problem(f"compose: {n}: does not wait for topic creation")
    if len(shared) > 1:
        problem("compose: workers do not share one DSN/table/group/topic")
    if len(ids) != len(workers):
        problem("compose: workers lack distinct EDR_WORKER_ID")

    for n, s in svcs.items():
        hc = s.get("healthcheck")
        if not hc:
            problem(f"compose: {n}: no healthcheck")
        elif hc.get("disable"):
            # Allowed only for a client that runs and exits.
            if "tools" not in (s.get("profiles") or []):
                problem(f"compose: {n}: healthcheck disabled on a server")

    tools = [n for n, s in svcs.items() if "tools" in
             (s.get("profiles") or []) and "edrctl" in
             str(s.get("entrypoint", "")) + str(s.get("command", ""))]
    if not tools:
        problem("compose: no edrctl example under the 'tools' profile")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", action="append", default=[])
    ap.add_argument("--root", help="checkout to check (default: this one)")
    a = ap.parse_args()
    if a.root:
        global ROOT
        ROOT = os.path.abspath(a.root)
    runtime = check_dockerfile() or set()
    for b in a.binary:
        check_binary(b, runtime)
    check_compose()
    for p in problems:
        print(f"lint-containers: {p}")
    if not problems:
        print("lint-containers: Dockerfile, .dockerignore and "
              "docker-compose.yml OK" +
              (f" (runtime libraries checked against {', '.join(a.binary)})"
               if a.binary else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
