#!/usr/bin/python3
"""check-metrics.py: every metric that the Grafana dashboard and the alert
rules query is one a live edr-worker exports.

usage: check-metrics.py --metrics FILE [--dashboard JSON]... [--rules YAML]...
  --metrics   a /metrics scrape of a running worker (Prometheus text format)
Metric names in V2_EXPECTED below are allowed although not exported yet;
each is reported as "expected".

Collects the PromQL of every dashboard target and templating query and of
every rule, takes each edr_* identifier (histogram series _bucket, _sum and
_count map to their family) and fails, naming the panel or rule, when the
scrape has no such family. Also checks the dashboard's shape: a uid, a
title, unique panel ids, a Prometheus datasource on every target.
Exit 0 when clean, 1 with one line per problem.
"""
import argparse
import json
import re
import sys

import yaml

# Queried already, exported by workers being merged: the state gaps of
# contract v2 (schemas/README.md §4) and the dropped lookup requests.
V2_EXPECTED = {"edr_state_gap_offsets", "edr_lookups_dropped_total"}
NAME = re.compile(r"\b(edr_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_sum", "_count")


def live_families(path):
    fams, samples = set(), set()
    with open(path) as f:
        for line in f:
            if line.startswith("# TYPE "):
                fams.add(line.split()[2])
            elif line.strip() and not line.startswith("#"):
                samples.add(re.split(r"[{ ]", line, 1)[0])
    return fams | samples


def family(name, live):
    for s in SUFFIXES:
        if name.endswith(s) and name[: -len(s)] in live:
            return name[: -len(s)]
    return name if name in live else None


def dashboard_exprs(path, problems):
    with open(path) as f:
        d = json.load(f)
    for key in ("uid", "title", "panels"):
        if not d.get(key):
            problems.append(f"{path}: no {key}")
    ids = set()

    def walk(panels):
        for p in panels:
            if p.get("id") in ids:
                problems.append(f"{path}: panel id {p.get('id')} twice")
            ids.add(p.get("id"))
            for t in p.get("targets", []):
                ds = (t.get("datasource") or p.get("datasource") or {}).get("type")
                if ds != "prometheus":
                    problems.append(f"{path}: panel '{p.get('title')}': datasource is not prometheus")
                yield f"panel '{p.get('title')}'", t.get("expr", "")
            yield from walk(p.get("panels", []))

    yield from walk(d.get("panels", []))
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        if v.get("type") == "query":
            yield f"variable '{v.get('name')}'", q or ""


def rules_exprs(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            yield f"rule {r.get('alert') or r.get('record')}", r.get("expr", "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--dashboard", action="append", default=[])
    ap.add_argument("--rules", action="append", default=[])
    a = ap.parse_args()
    live = live_families(a.metrics)
    if not any(n.startswith("edr_") for n in live):
        print(f"check-metrics: {a.metrics} holds no edr_* metric: not a worker's scrape")
        return 1
    problems, used, expected = [], set(), set()
    sources = [(p, dashboard_exprs(p, problems)) for p in a.dashboard]
    sources += [(p, rules_exprs(p)) for p in a.rules]
    n_exprs = 0
    for path, exprs in sources:
        for where, expr in exprs:
            n_exprs += 1
            for name in NAME.findall(expr):
                fam = family(name, live)
                if fam:
                    used.add(fam)
                elif name in V2_EXPECTED:
                    expected.add(name)
                else:
                    problems.append(f"{path}: {where}: {name} is not exported by the worker")
    for p in problems:
        print(f"check-metrics: {p}")
    unused = sorted(n for n in live if n.startswith("edr_") and family(n, live) == n
                    and n not in used and not n.endswith(SUFFIXES))
    print(f"check-metrics: {n_exprs} queries, {len(used)} exported metrics used"
          f"{', expected, not exported yet: ' + ', '.join(sorted(expected)) if expected else ''}"
          f"{'; exported but not shown: ' + ', '.join(unused) if unused else ''}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
