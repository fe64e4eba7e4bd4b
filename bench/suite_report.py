#!/usr/bin/env python3
"""suite_report.py: turns the raw outputs of bench/run.sh into results.json,
report.md and gnuplot PNG charts.

usage: suite_report.py RESULTS_DIR   (reads RESULTS_DIR/raw/, written by run.sh)

Every figure is reduced to median, min, max and n over the runs; ratios are
ratios of medians (and, for lookups, the median of the per-round ratios, as
each round runs the floor and the worker back to back). Standard library
only, so it runs under any python3.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

OUT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
if OUT is None:
    sys.exit("usage: suite_report.py RESULTS_DIR")
RAW = OUT / "raw"

figures: dict[str, dict[str, Any]] = {}
errors: list[dict[str, str]] = []
info: dict[str, Any] = {}


def add(fid: str, unit: str, values: list[float], **meta: Any) -> None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return
    f = figures.setdefault(fid, {"unit": unit, "values": []})
    f["values"].extend(vals)
    f.update(meta)


def finish() -> None:
    for f in figures.values():
        v = f["values"]
        f["median"] = statistics.median(v)
        f["min"] = min(v)
        f["max"] = max(v)
        f["n"] = len(v)


def med(fid: str) -> float | None:
    f = figures.get(fid)
    return statistics.median(f["values"]) if f else None


def read(name: str) -> str:
    p = RAW / name
    return p.read_text(errors="replace") if p.exists() else ""


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


# ------------------------------------------------------------------ inputs

machine: dict[str, str] = {}
for line in read("machine.txt").splitlines():
    if "=" in line:
        k, v = line.split("=", 1)
        machine[k] = v
RUNS = int(machine.get("runs", "0") or 0)

for line in read("errors.tsv").splitlines():
    if "\t" in line:
        what, msg = line.split("\t", 1)
        errors.append({"benchmark": what, "error": msg})

sections: dict[str, dict[str, Any]] = {}
for line in read("sections.txt").splitlines():
    p = line.split()
    if len(p) >= 6:
        s = sections.setdefault(p[0], {})
        s[p[1] + "_s"] = float(p[2])
        s["load_" + p[1]] = " ".join(p[3:6])
for s in sections.values():
    if "start_s" in s and "end_s" in s:
        s["seconds"] = round(s["end_s"] - s["start_s"], 1)

# store_bench: one file per run, one JSON line per figure
store_runs = sorted(RAW.glob("store_*.txt"))
for p in store_runs:
    for r in json_lines(p.read_text()):
        if r.get("bench") == "store":
            add(f"store.{r['backend']}.{r['metric']}", r["unit"], [r["value"]],
                entries=r.get("entries"), batch=r.get("batch"))

# sdk_bench.py: one JSON line per run and figure
sdk_versions: dict[str, str] = {}
sdk_printed: dict[str, int] = {}  # what the SDK itself printed (its errors)
sdk_errors: dict[str, str] = {}
for name in ("sdk_newest.jsonl", "sdk_pg.jsonl"):
    for r in json_lines(read(name)):
        if "error" in r:
            sdk_errors[f"{r.get('backend')} (tractusx-sdk {r.get('sdk_version')})"] = r["error"]
        elif "metric" in r:
            sdk_versions[r["backend"]] = r["sdk_version"]
            add(f"sdk.{r['backend']}.{r['metric']}", r["unit"], [r["value"]],
                entries=r.get("entries"), ops=r.get("ops"), sdk_version=r["sdk_version"])
        elif "stored_json_bytes_per_entry" in r:
            info["sdk_stored_json_bytes_per_entry"] = r["stored_json_bytes_per_entry"]
            info.setdefault("sdk_python", r.get("python"))
    for line in read(name).splitlines():
        line = line.strip()
        if line and not line.startswith("{"):
            sdk_printed[line] = sdk_printed.get(line, 0) + 1
    err = read(name.replace(".jsonl", ".err")).strip()
    if err:
        info.setdefault("sdk_stderr", {})[name] = err[-2000:]

# decode_bench: text lines
DECODE_RE = re.compile(
    r"(\d+)-byte events \(mean (\d+) B\): decode\+handle\s+(\d+) ev/s.*?"
    r"yajl_tree_parse\+fields\s+(\d+) ev/s, ratio ([\d.]+)x")
decode_runs = sorted(RAW.glob("decode_*.txt"))
for p in decode_runs:
    for m in DECODE_RE.finditer(p.read_text()):
        size = int(m.group(1))
        add(f"decode.{size}.decode_handle_events_per_s", "events/s", [int(m.group(3))],
            mean_event_bytes=int(m.group(2)))
        add(f"decode.{size}.yajl_tree_events_per_s", "events/s", [int(m.group(4))],
            mean_event_bytes=int(m.group(2)))
        add(f"decode.{size}.ratio_decode_over_tree", "ratio", [float(m.group(5))])

# ingest_bench: one JSON line per store and run
m = re.search(r"prefill: (\d+) events \(avg (\d+) bytes\) in ([\d.]+) s", read("ingest_1.err"))
if m:
    info["ingest_topic_events"] = int(m.group(1))
    info["ingest_event_bytes"] = int(m.group(2))
    info["ingest_prefill_seconds"] = float(m.group(3))
ingest_runs = sorted(RAW.glob("ingest_*.txt"))
for p in ingest_runs:
    for r in json_lines(p.read_text()):
        st, w = r.get("store"), r.get("worker")
        if not w:
            errors.append({"benchmark": f"ingest {st}", "error": f"worker failed in {p.name}"})
            continue
        add(f"ingest.{st}.events_per_s", "events/s", [w["events_per_s"]], applied=w["applied"],
            dead_lettered=w["dead_lettered"])
        add(f"ingest.{st}.seconds", "s", [w["seconds"]])
        if st == "memory":
            add("ingest.memory.rebuild_seconds", "s", [w["seconds"]])

# lookup_bench --verbose: one row per responder, client count and round
ROW_RE = re.compile(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
rows: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
lookup_text = read("lookup.txt")
head = lookup_text.split("medians over")[0]
for line in head.splitlines():
    m = ROW_RE.match(line)
    if m:
        key = (m.group(1), int(m.group(2)))
        rows.setdefault(key, []).append(tuple(float(m.group(i)) for i in (3, 4, 5, 6)))
        if int(m.group(7)):
            errors.append({"benchmark": f"lookup {key[0]} x{key[1]}",
                           "error": f"{m.group(7)} failed round trips"})
m = re.search(r"(\d+) responder threads", lookup_text)
if m:
    info["lookup_responder_threads"] = int(m.group(1))
targets = sorted({t for t, _ in rows}, key=lambda t: ["floor", "memory", "postgres"].index(t)
                 if t in ("floor", "memory", "postgres") else 9)
clients = sorted({c for _, c in rows})
for (t, c), rs in rows.items():
    add(f"lookup.{t}.c{c}.lookups_per_s", "lookups/s", [r[0] for r in rs])
    add(f"lookup.{t}.c{c}.p50_us", "us", [r[1] for r in rs])
    add(f"lookup.{t}.c{c}.p99_us", "us", [r[2] for r in rs])
    add(f"lookup.{t}.c{c}.p999_us", "us", [r[3] for r in rs])
for t in targets:
    if t == "floor":
        continue
    for c in clients:
        a, f = rows.get((t, c), []), rows.get(("floor", c), [])
        n = min(len(a), len(f))
        if not n:
            continue
        add(f"lookup.{t}.c{c}.throughput_ratio_to_floor", "ratio",
            [a[i][0] / f[i][0] for i in range(n) if f[i][0]])
        add(f"lookup.{t}.c{c}.p50_ratio_to_floor", "ratio",
            [a[i][1] / f[i][1] for i in range(n) if f[i][1]])
        add(f"lookup.{t}.c{c}.p99_ratio_to_floor", "ratio",
            [a[i][2] / f[i][2] for i in range(n) if f[i][2]])

# adapter_bench.py --json: per run and size, both sides' latency/throughput
adapter_sizes: set[int] = set()
for p in sorted(RAW.glob("adapter_*.json")):
    try:
        r = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        continue
    info["adapter_sdk_version"] = r.get("sdk_version")
    info["adapter_threads"] = r.get("threads")
    info["adapter_lookups"] = r.get("lookups")
    info["adapter_duration_s"] = r.get("duration_s")
    for size, row in r.get("sizes", {}).items():
        adapter_sizes.add(int(size))
        for side in ("sdk", "adapter"):
            add(f"adapter.{size}.{side}.p50_ms", "ms", [row[side]["p50_ms"]])
            add(f"adapter.{size}.{side}.p99_ms", "ms", [row[side]["p99_ms"]])
            add(f"adapter.{size}.{side}.ops_per_s", "lookups/s", [row[side]["ops_per_s"]])
        add(f"adapter.{size}.p50_ratio_sdk_over_adapter", "ratio",
            [row["latency_p50_ratio_sdk_over_adapter"]])
        add(f"adapter.{size}.p99_ratio_sdk_over_adapter", "ratio",
            [row["latency_p99_ratio_sdk_over_adapter"]])
        add(f"adapter.{size}.throughput_ratio_adapter_over_sdk", "ratio",
            [row["throughput_ratio_adapter_over_sdk"]])

# lookup_bench --quantiles: per row, latency at q1..q99, q99.5, q99.9
QS = [q / 100 for q in range(1, 100)] + [0.995, 0.999]
quant: dict[tuple[str, int], list[list[float]]] = {}
for line in read("lookup_quantiles.txt").splitlines():
    p = line.split()
    if len(p) == 3 + len(QS):
        quant.setdefault((p[0], int(p[1])), []).append([float(x) for x in p[3:]])

for prefix, what in (("store.", "store_bench (raw/store_*.txt)"),
                     ("sdk.", "sdk_bench.py (raw/sdk_*.jsonl)"),
                     ("decode.", "decode_bench (raw/decode_*.txt)"),
                     ("ingest.", "ingest_bench (raw/ingest_*.txt, *.err)"),
                     ("lookup.", "lookup_bench (raw/lookup.txt, lookup.err)"),
                     ("adapter.", "adapter_bench.py (raw/adapter_*.txt)")):
    if not any(k.startswith(prefix) for k in figures):
        errors.append({"benchmark": prefix.rstrip("."), "error": f"no figures from {what}"})
finish()

# ------------------------------------------------------------------ comparisons

comparisons = []
for backend in ("memory", "file", "postgres"):
    for op in ("put", "get", "delete"):
        e, s = med(f"store.{backend}.{op}_ops_per_s"), med(f"sdk.{backend}.{op}_ops_per_s")
        comparisons.append({
            "backend": backend, "operation": op, "edr_worker_ops_per_s": e, "sdk_ops_per_s": s,
            "ratio_edr_worker_over_sdk": (e / s) if e and s else None,
            "sdk_version": sdk_versions.get(backend)})
e, s = med("store.file.reopen_entries_per_s"), med("sdk.file.reopen_entries_per_s")
comparisons.append({"backend": "file", "operation": "reopen (load all entries)",
                    "edr_worker_ops_per_s": e, "sdk_ops_per_s": s,
                    "ratio_edr_worker_over_sdk": (e / s) if e and s else None,
                    "sdk_version": sdk_versions.get("file")})

# ------------------------------------------------------------------ charts

GP = shutil.which("gnuplot")
CHART_DIR = RAW / "charts"
CHART_DIR.mkdir(exist_ok=True)
charts: dict[str, str] = {}


def terminal() -> str:
    # pngcairo is nicer; gnuplot-nox builds may only have the libgd "png"
    probe = subprocess.run([GP, "-e", "set terminal pngcairo"], capture_output=True, text=True)
    if probe.returncode == 0 and not probe.stderr.strip():
        return "set terminal pngcairo size 820,440 font ',10' noenhanced"
    return "set terminal png size 820,440 small noenhanced"


def fmt(v: float | None) -> str:
    return "NaN" if v is None else f"{v:.6g}"


def trio(fid: str) -> str:
    f = figures.get(fid)
    if not f:
        return "NaN NaN NaN"
    return f"{fmt(f['median'])} {fmt(f['min'])} {fmt(f['max'])}"


def plot(name: str, data: str, script: str) -> None:
    if not GP:
        return
    (CHART_DIR / f"{name}.dat").write_text(data)
    gp = (f"{TERM}\nset output '../../{name}.png'\n"
          f"set datafile missing 'NaN'\nset key top right\nset grid ytics\n{script}\n")
    (CHART_DIR / f"{name}.gp").write_text(gp)
    r = subprocess.run([GP, str(CHART_DIR / f"{name}.gp")], capture_output=True, text=True,
                       cwd=CHART_DIR)
    if r.returncode == 0 and (OUT / f"{name}.png").exists():
        charts[name] = f"{name}.png"
    else:
        errors.append({"benchmark": f"chart {name}", "error": r.stderr.strip()[-300:]})


HIST = ("set style data histogram\nset style histogram errorbars gap 2 lw 1\n"
        "set style fill solid 0.85 border -1\nset boxwidth 0.9\n")
if GP:
    TERM = terminal()
    # store operations per second, edr-worker next to the SDK
    lines = []
    for backend in ("memory", "file", "postgres"):
        for op in ("put", "get", "delete"):
            lines.append(f'"{backend} {op}" {trio(f"store.{backend}.{op}_ops_per_s")} '
                         f'{trio(f"sdk.{backend}.{op}_ops_per_s")}')
    plot("store_ops", "\n".join(lines) + "\n",
         HIST + "set logscale y\nset yrange [10:*]\nset ylabel 'operations/s (log)'\n"
         "set title 'Store operations per second (median, bars: min-max)'\n"
         "set xtics rotate by -30\n"
         "plot 'store_ops.dat' using 2:3:4:xtic(1) title 'edr-worker' lc rgb '#1f77b4', "
         "'' using 5:6:7 title 'Tractus-X SDK manager' lc rgb '#ff7f0e'")
    # decode
    lines = [f'"{lbl}" {trio(f"decode.{s}.decode_handle_events_per_s")} '
             f'{trio(f"decode.{s}.yajl_tree_events_per_s")}'
             for s, lbl in ((600, "600-byte events"), (16384, "16 KiB events"))]
    plot("decode", "\n".join(lines) + "\n",
         HIST + "set logscale y\nset ylabel 'events per CPU-second (log)'\n"
         "set title 'Decode + handle vs yajl tree parser, one core'\n"
         "plot 'decode.dat' using 2:3:4:xtic(1) title 'event_decode + handler' lc rgb '#1f77b4', "
         "'' using 5:6:7 title 'yajl_tree_parse + fields' lc rgb '#7f7f7f'")
    # ingest
    lines = [f'"{st}" {trio(f"ingest.{st}.events_per_s")}'
             for st in ("memory", "file", "postgres") if f"ingest.{st}.events_per_s" in figures]
    if lines:
        ev = info.get("ingest_topic_events", 0)
        plot("ingest", "\n".join(lines) + "\n",
             HIST + "set yrange [0:*]\nset ylabel 'events/s'\nset key off\n"
             f"set title 'End-to-end ingest per store, {ev:,} pre-filled events, one worker'\n"
             "plot 'ingest.dat' using 2:3:4:xtic(1) lc rgb '#2ca02c', "
             "'' using 0:2:(sprintf('%.0f', $2)) with labels offset 4,0.6 notitle")
    # lookup throughput
    lines = []
    for c in clients:
        lines.append(f"{c} " + " ".join(trio(f"lookup.{t}.c{c}.lookups_per_s") for t in targets))
    if lines:
        series = ", ".join(
            f"'' using {2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}{':xtic(1)' if i == 0 else ''} "
            f"title '{t}{' (bare Redis)' if t == 'floor' else ''}'"
            for i, t in enumerate(targets))
        plot("lookup_throughput", "\n".join(lines) + "\n",
             HIST + "set yrange [0:*]\nset ylabel 'lookups/s'\nset xlabel 'concurrent clients'\n"
             "set title 'Lookup throughput (median, bars: min-max)'\n"
             f"plot 'lookup_throughput.dat' {series[3:]}")
    # lookup latency distribution against the floor
    if quant:
        panels = []
        for c in [c for c in (1, 8) if any((t, c) in quant for t in targets)]:
            plots = []
            for t in targets:
                qs = quant.get((t, c))
                if not qs:
                    continue
                m = [statistics.median(col) for col in zip(*qs)]
                (CHART_DIR / f"lat_{t}_{c}.dat").write_text(
                    "".join(f"{-math.log10(1 - q):.4f} {v}\n" for q, v in zip(QS, m) if v > 0))
                style = "lw 3 dt 2 lc rgb '#000000'" if t == "floor" else "lw 2"
                title = "floor (bare Redis)" if t == "floor" else f"edr-worker, {t} store"
                plots.append(f"'lat_{t}_{c}.dat' using 1:2 with lines {style} title '{title}'")
            panels.append(
                f"set title 'Lookup round trip, {c} client{'s' if c > 1 else ''}'\n"
                "plot " + ", ".join(plots))
        if panels:
            plot("lookup_latency", "",
                 "set logscale y\nset ylabel 'latency (us, log)'\nset xlabel 'percentile'\n"
                 "set xtics ('p0' 0, 'p50' 0.301, 'p90' 1, 'p99' 2, 'p99.9' 3)\n"
                 "set xrange [0:3]\nset key top left Left reverse\n"
                 f"set multiplot layout 1,{len(panels)}\n" + "\n".join(panels) +
                 "\nunset multiplot")

# ------------------------------------------------------------------ results.json

results = {
    "suite": "edr-worker bench/run.sh",
    "mode": machine.get("mode"),
    "command": "bench/run.sh" + (" --quick" if machine.get("mode") == "quick" else ""),
    "started": machine.get("started"),
    "wall_seconds_benchmarks": float(machine.get("wall_seconds", "nan")),
    "runs": RUNS,
    "parameters": {k: machine.get(k) for k in (
        "entries", "events", "lookup_entries", "lookup_seconds", "decode_seconds",
        "sdk_pg_put_sample", "sdk_pg_get_sample")},
    "machine": {k: machine.get(k) for k in (
        "cpu_model", "cores", "mem_total", "kernel", "os", "compiler", "build", "librdkafka",
        "hiredis", "yajl", "libpq", "kafka", "postgresql", "redis", "python_sdk", "git")},
    "load": {"before": machine.get("load_before"), "after": machine.get("load_after"),
             "sections": sections},
    "sdk_versions": sdk_versions,
    "sdk_errors": sdk_errors,
    "sdk_printed": sdk_printed,
    "info": info,
    "figures": {k: {kk: vv for kk, vv in v.items()} for k, v in sorted(figures.items())},
    "comparisons": comparisons,
    "errors": errors,
    "charts": charts,
}
(OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")

# ------------------------------------------------------------------ report.md


def num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if unit == "ratio":
        return f"{v:.2f}x"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def cell(fid: str) -> str:
    f = figures.get(fid)
    if not f:
        return "n/a"
    u = f["unit"]
    return f"**{num(f['median'], u)}** ({num(f['min'], u)}–{num(f['max'], u)})"


md: list[str] = []
w = md.append
mode = machine.get("mode", "?")
w(f"# edr-worker benchmark report ({mode})\n")
w(f"Command: `{results['command']}` · started {machine.get('started')} · "
  f"benchmarks took {machine.get('wall_seconds')} s · **{RUNS} runs** per figure; "
  "each cell is **median** (min–max) over the runs.\n")
w("## Machine\n")
w("| | |\n|---|---|")
for k, lbl in (("cpu_model", "CPU"), ("cores", "cores"), ("mem_total", "memory"),
               ("kernel", "kernel"), ("os", "OS"), ("compiler", "compiler"), ("build", "build"),
               ("librdkafka", "librdkafka"), ("kafka", "Kafka (broker)"),
               ("postgresql", "PostgreSQL"), ("redis", "Redis"), ("hiredis", "hiredis"),
               ("yajl", "yajl"), ("libpq", "libpq"), ("python_sdk", "Python (SDK side)"),
               ("git", "source")):
    w(f"| {lbl} | {machine.get(k, '?')} |")
w(f"| load average (1/5/15 min) | before {machine.get('load_before')}, "
  f"after {machine.get('load_after')} |")
w("")
w("The machine is shared: Kafka, PostgreSQL and Redis run on the same cores as the "
  "benchmarks (and, while this ran, possibly other work). Load per benchmark:\n")
w("| benchmark | seconds | load at start | load at end |\n|---|---|---|---|")
for name, s in sections.items():
    w(f"| {name} | {s.get('seconds', '?')} | {s.get('load_start', '?')} | "
      f"{s.get('load_end', '?')} |")
w("")

# headline
w("## Headlines\n")
w("| figure | median (min–max) |\n|---|---|")
for fid, lbl in (
        ("store.memory.put_ops_per_s", "memory store puts/s"),
        ("store.memory.get_ops_per_s", "memory store gets/s"),
        ("store.memory.bytes_per_entry", "memory store bytes per entry"),
        ("store.file.put_ops_per_s", "file store puts/s (batches of 500, fsync each)"),
        ("store.postgres.put_ops_per_s", "postgres store puts/s (batches of 500)"),
        ("decode.600.decode_handle_events_per_s", "decode+handle, 600-byte events/s"),
        ("decode.600.ratio_decode_over_tree", "… vs yajl tree parser"),
        ("ingest.memory.events_per_s", "ingest → memory, events/s"),
        ("ingest.file.events_per_s", "ingest → file, events/s"),
        ("ingest.postgres.events_per_s", "ingest → postgres, events/s"),
        ("ingest.memory.rebuild_seconds", "memory store rebuild from the topic, s"),
        ("lookup.memory.c1.p50_us", "lookup p50, 1 client, memory store (µs)"),
        ("lookup.floor.c1.p50_us", "… bare-Redis floor p50 (µs)"),
        ("lookup.memory.c8.lookups_per_s", "lookups/s, 8 clients, memory store"),
        ("lookup.floor.c8.lookups_per_s", "… bare-Redis floor, 8 clients"),
        ("lookup.memory.c1.p50_ratio_to_floor", "lookup p50 memory / floor, 1 client"),
        ("lookup.memory.c1.p99_ratio_to_floor", "lookup p99 memory / floor, 1 client"),
        ("lookup.memory.c8.throughput_ratio_to_floor", "lookups/s memory / floor, 8 clients"),
        ("lookup.memory.c32.throughput_ratio_to_floor", "lookups/s memory / floor, 32 clients")):
    w(f"| {lbl} | {cell(fid)} |")
for c in comparisons:
    if c["ratio_edr_worker_over_sdk"] and c["operation"] in ("put", "get"):
        w(f"| {c['backend']} {c['operation']}s: edr-worker / SDK "
          f"{c['backend']} manager ({c['sdk_version']}) | "
          f"**{c['ratio_edr_worker_over_sdk']:.1f}x** (ratio of medians) |")
for size in sorted(adapter_sizes):
    w(f"| Python get_connection at {size:,} entries: adapter / SDK Postgres manager, "
      f"lookups/s | {cell(f'adapter.{size}.throughput_ratio_adapter_over_sdk')} |")
w("")

# stores
n_entries = machine.get("entries")
w(f"## Store operations ({n_entries} entries of ~600-byte EDR JSON, store_bench)\n")
w("One thread. memory: one operation per call. file and postgres: puts and deletes in "
  "batches of 500 through `apply()` (file: journal appended and fsynced once per batch; "
  "postgres: one transaction per batch, with the offsets row); gets one by one, each a "
  "full copy of the entry.\n")
w("| backend | put ops/s | get ops/s | delete ops/s | reopen entries/s |\n|---|---|---|---|---|")
for b in ("memory", "file", "postgres"):
    w(f"| {b} | {cell(f'store.{b}.put_ops_per_s')} | {cell(f'store.{b}.get_ops_per_s')} | "
      f"{cell(f'store.{b}.delete_ops_per_s')} | "
      f"{cell(f'store.{b}.reopen_entries_per_s') if b == 'file' else '–'} |")
w("")
w(f"Memory per stored entry (memory store, heap incl. malloc overhead, mallinfo2): "
  f"{cell('store.memory.bytes_per_entry')} bytes for {cell('store.memory.json_bytes_per_entry')} "
  f"bytes of JSON, i.e. {cell('store.memory.bytes_per_json_byte')} bytes per JSON byte.\n")
if "store_ops" in charts:
    w("![store operations per second](store_ops.png)\n")

# SDK
w("## Side by side with the Tractus-X SDK's connection managers\n")
w(f"`bench/sdk_bench.py` drives the SDK's managers with the same {n_entries} keys and the "
  "same entries as store_bench (byte for byte, plus `@type`, `@context` and `providerId`, "
  "which the SDK removes before storing, so both sides store the same JSON). Python "
  f"{info.get('sdk_python', '?')}, tractusx-sdk "
  + ", ".join(f"{v} ({b})" for b, v in sorted(sdk_versions.items())) + ".\n")
w("| backend | operation | edr-worker ops/s | SDK ops/s | edr-worker / SDK |\n"
  "|---|---|---|---|---|")
for c in comparisons:
    b, op = c["backend"], c["operation"]
    key = "reopen_entries_per_s" if op.startswith("reopen") else f"{op}_ops_per_s"
    ratio = c["ratio_edr_worker_over_sdk"]
    w(f"| {b} | {op} | {cell(f'store.{b}.{key}')} | {cell(f'sdk.{b}.{key}')} | "
      f"{'**%.1fx**' % ratio if ratio else 'n/a'} |")
w("")
if "sdk.file.full_save_s" in figures:
    w(f"The SDK's file manager persists by rewriting the whole JSON file in place every "
      f"`persist_interval` (5 s) from a background thread: one such save of {n_entries} "
      f"entries took {cell('sdk.file.full_save_s')} s "
      f"({num(med('sdk.file.file_bytes'))} bytes, no fsync, no rename).\n")
for k, e in sdk_errors.items():
    b = k.split(" ")[0]
    alt = sdk_versions.get(b)
    if alt and f"tractusx-sdk {alt})" in k:
        w(f"- **{k}: failed** — `{e}`")
        continue
    w(f"- **{k}: cannot be constructed** — `{e}`" +
      (f"; the {b} figures above are from tractusx-sdk {alt}, the newest release where it can."
       if alt else "; not measured."))
if sdk_errors:
    w("")
if sdk_printed:
    w("Printed by the SDK's managers during this run (they catch and print their own errors; "
      "count in brackets):\n")
    for line, n in sorted(sdk_printed.items(), key=lambda x: -x[1])[:10]:
        w(f"- `{line[:200]}` ({n})")
    w("")
    if any("Error saving" in ln for ln in sdk_printed):
        w("'Error saving': FileSystemConnectionManager's background thread serialises the "
          "dicts without holding the manager's lock while the benchmark thread changes them; "
          "that save is lost and retried `persist_interval` later.")
    if any("Error loading" in ln for ln in sdk_printed):
        w("'Error loading': the manager truncates and rewrites its file in place, so its own "
          "periodic reload read a half-written file (a crash at that moment would leave it "
          "corrupt).")
    w("")
w("What each side measures (fairness):\n")
w("- **memory**: both in-process, one thread, one call per operation. The SDK's "
  "`get_connection` returns its live internal dict (no copy); edr-worker's `get` returns "
  "a copy of the entry. The SDK's `add_connection` deep-copies the entry and walks four "
  "nested dicts; edr-worker hashes the four keys into one table.")
w("- **file**: the SDK's puts/gets/deletes only touch its in-memory dicts (it is the memory "
  "manager plus a background thread that rewrites the file every 5 s); a crash loses up to "
  "5 s of changes and a crash during the rewrite can corrupt the file. edr-worker's file "
  "store puts are durable when `apply()` returns: journal append + fsync per batch of 500. "
  "So the SDK figure is an in-memory figure and edr-worker's includes durability. "
  "'reopen' = constructing a manager/store on the saved file, entries loaded per second.")
w("- **postgres**: edr-worker writes batches of 500 in one transaction (how the worker "
  "applies a Kafka poll); the SDK's interface has no batch: every `add_connection` is its "
  "own session (primary-key probe, INSERT, COMMIT) through SQLAlchemy. The SDK's puts are "
  f"timed on the first {machine.get('sdk_pg_put_sample')} entries (its cost per put does not "
  "depend on the table size); the rest are bulk-inserted untimed through its own table "
  f"model so the table holds all {n_entries} rows; its gets and deletes are timed on "
  f"{machine.get('sdk_pg_get_sample')} random entries, because the SDK has no index on the "
  "four lookup columns and every lookup scans the whole table. edr-worker's get is one "
  "primary-key lookup (connection key) over libpq. Same PostgreSQL server for both.")
w("")

# decode
w("## Decode + handle (decode_bench)\n")
w(f"Events per CPU-second of one thread (CLOCK_THREAD_CPUTIME_ID, so other load on the machine "
  f"counts less), both variants interleaved in 5 ms slices, {machine.get('decode_seconds')} s "
  "per variant per run.\n")
w("| events | decode+handle events/s | yajl_tree_parse + fields events/s | ratio |\n"
  "|---|---|---|---|")
for s, lbl in ((600, "600 B"), (16384, "16 KiB")):
    w(f"| {lbl} | {cell(f'decode.{s}.decode_handle_events_per_s')} | "
      f"{cell(f'decode.{s}.yajl_tree_events_per_s')} | "
      f"{cell(f'decode.{s}.ratio_decode_over_tree')} |")
w("")
if "decode" in charts:
    w("![decode](decode.png)\n")

# ingest
ev = info.get("ingest_topic_events")
w("## End-to-end ingest (ingest_bench)\n")
w(f"One pre-filled topic of {ev if ev is None else f'{ev:,}'} events (6 partitions, "
  f"~{info.get('ingest_event_bytes', '?')} bytes each: negotiations, renewals, every 8th an "
  f"expiry; pre-filled in {info.get('ingest_prefill_seconds', '?')} s), consumed from the "
  "beginning by one `edr-worker-test --exit-when-caught-up` (the test build; the code is the release's) per store and run; the time is from "
  "process start to the last event applied (so it includes start-up, connecting and, for "
  "postgres, joining the consumer group). The broker runs on the same two cores.\n")
w("| store | events/s | seconds |\n|---|---|---|")
for st in ("memory", "file", "postgres"):
    w(f"| {st} | {cell(f'ingest.{st}.events_per_s')} | {cell(f'ingest.{st}.seconds')} |")
w("")
w(f"Memory-store rebuild from the whole topic (the memory run): "
  f"{cell('ingest.memory.rebuild_seconds')} s.\n")
if "ingest" in charts:
    w("![ingest](ingest.png)\n")

# lookups
w("## Lookups through Redis (lookup_bench)\n")
w(f"`get_connection` round trips (request LPUSH + reply BLPOP, one connection per client) "
  f"against one responder process ({info.get('lookup_responder_threads', '?')} responder "
  f"threads) over a store of {machine.get('lookup_entries')} entries, "
  f"{machine.get('lookup_seconds')} s per row; the floor is a trivial responder (BRPOP, fixed "
  "reply, LPUSH + EXPIRE) through the same Redis in the same run. Rows interleave floor / "
  "memory / postgres each round, so load drifts hit them alike; ratios are medians of the "
  "per-round ratios.\n")
w("| responder | clients | lookups/s | p50 µs | p99 µs | p99.9 µs | throughput vs floor | "
  "p50 vs floor | p99 vs floor |\n|---|---|---|---|---|---|---|---|---|")
for t in targets:
    for c in clients:
        rt = (f"{cell(f'lookup.{t}.c{c}.throughput_ratio_to_floor')} | "
              f"{cell(f'lookup.{t}.c{c}.p50_ratio_to_floor')} | "
              f"{cell(f'lookup.{t}.c{c}.p99_ratio_to_floor')}") if t != "floor" else "– | – | –"
        w(f"| {t} | {c} | {cell(f'lookup.{t}.c{c}.lookups_per_s')} | "
          f"{cell(f'lookup.{t}.c{c}.p50_us')} | {cell(f'lookup.{t}.c{c}.p99_us')} | "
          f"{cell(f'lookup.{t}.c{c}.p999_us')} | {rt} |")
w("")
if "lookup_latency" in charts:
    w("![lookup latency percentiles against the floor](lookup_latency.png)\n")
if "lookup_throughput" in charts:
    w("![lookup throughput](lookup_throughput.png)\n")

# adapter
if adapter_sizes:
    w("## Python adapter vs the SDK's PostgresConnectionManager (adapter_bench.py)\n")
    w(f"`get_connection` from Python: the edr-worker adapter (`clients/python`, Kafka + Redis "
      f"to an edr-worker with the postgres store) against the SDK's PostgresConnectionManager "
      f"(tractusx-sdk {info.get('adapter_sdk_version')}) on the same PostgreSQL and the same "
      f"entries; latency over {info.get('adapter_lookups')} lookups on one thread, throughput "
      f"with {info.get('adapter_threads')} threads for {info.get('adapter_duration_s')} s. "
      "Ratios > 1 favour the adapter.\n")
    w("| stored entries | side | p50 ms | p99 ms | lookups/s |\n|---|---|---|---|---|")
    for size in sorted(adapter_sizes):
        for side, lbl in (("sdk", "SDK PostgresConnectionManager"), ("adapter", "edr-worker adapter")):
            w(f"| {size:,} | {lbl} | {cell(f'adapter.{size}.{side}.p50_ms')} | "
              f"{cell(f'adapter.{size}.{side}.p99_ms')} | {cell(f'adapter.{size}.{side}.ops_per_s')} |")
    w("")
    w("| stored entries | p50 SDK/adapter | p99 SDK/adapter | throughput adapter/SDK |\n"
      "|---|---|---|---|")
    for size in sorted(adapter_sizes):
        w(f"| {size:,} | {cell(f'adapter.{size}.p50_ratio_sdk_over_adapter')} | "
          f"{cell(f'adapter.{size}.p99_ratio_sdk_over_adapter')} | "
          f"{cell(f'adapter.{size}.throughput_ratio_adapter_over_sdk')} |")
    w("")

# gaps
w("## Not measured / failures\n")
if not errors and not sdk_errors:
    w("Nothing failed in this run.\n")
for e in errors:
    w(f"- {e['benchmark']}: {e['error']}")
for k, e in sdk_errors.items():
    alt = sdk_versions.get(k.split(" ")[0])
    w(f"- SDK {k}: `{e}`" + (f" (measured with tractusx-sdk {alt} instead)" if alt else ""))
w("")
w("Raw outputs of every run are in `raw/`; `results.json` holds every figure with its "
  "values, median, min, max, n and unit.\n")
(OUT / "report.md").write_text("\n".join(md))
print(f"suite_report: {len(figures)} figures, {len(charts)} charts, {len(errors)} errors -> {OUT}")
