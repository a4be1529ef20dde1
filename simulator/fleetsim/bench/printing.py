"""What the benchmark prints: progress lines on stderr while it runs, and the table of
figures at the end (docs/performance.md shows one)."""

from __future__ import annotations

import statistics
import sys
from typing import Any

from fleetsim.bench.assignments import assignment_lines
from fleetsim.bench.diagnosis import diagnosis_lines
from fleetsim.bench.http_stage import table_lines as http_table_lines


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def table(r: dict[str, Any]) -> str:
    def rate(v: float) -> str:
        return f"{v:>10,.0f} /s"

    d, rt = r["fleetdDrain"], r["ratios"]
    lines = [
        f"fleet-telemetry benchmark — {r['machine']['cpus']} CPUs, {r['machine']['platform']}, "
        f"N = {r['n']:,} readings (10,000 + 10,000 devices)",
        "",
        f"{'what':<58}{'figure':>16}",
        f"{'1 broker ceiling: mosquitto_sub drains N QoS 1':<58}{rate(r['brokerCeilingPerS'])}",
        f"{'  simulator publishing N at QoS 1 (2 connections)':<58}"
        f"{rate(r['simulatorPublishPerS'])}",
        f"{'2 database ceiling: COPY, 2 connections':<58}{rate(r['copyCeilingPerS'])}",
        f"{'  fleetd write path without MQTT (history+rollups+current)':<58}"
        f"{rate(r['dualWriteCeilingPerS'])}",
        f"{'    one 5,000-row batch in its transaction: p50 / max':<58}"
        f"{r['batchCommitMs']['p50']:>5.0f} / {r['batchCommitMs']['max']:.0f} ms",
        f"{'3 per-message baseline (txn per message, ack on arrival)':<58}"
        f"{rate(r['baselinePerS'])}",
        f"{'4 fleetd backlog drain (ack after commit)':<58}{rate(d['perS'])}",
        f"{'    / broker ceiling':<58}{rt['fleetdVsBrokerCeiling']:>12.2f} x",
        f"{'    / fleetd write path without MQTT':<58}{rt['fleetdVsDualWriteCeiling']:>12.2f} x",
        f"{'    / COPY ceiling':<58}{rt['fleetdVsCopyCeiling']:>12.2f} x",
        f"{'    / per-message baseline':<58}{rt['fleetdVsPerMessage']:>12.1f} x",
        f"{'    fleetd CPU per reading / peak RSS':<58}"
        f"{d['cpuUsPerReading']:>6.1f} µs {d['peakRssMb']:>5.0f} MB",
        f"{'    PostgreSQL CPU per reading (the whole server)':<58}"
        f"{d.get('pgCpuUsPerReading', float('nan')):>6.1f} µs",
    ]
    if r.get("ingestCost"):
        lines.extend(ingest_cost_lines(r["ingestCost"]))
    h = r.get("httpIngest")
    if h:
        lines += [
            f"{'  fleetd HTTP ingest: 50 clients, 500-reading batches':<58}{rate(h['perS'])}",
            f"{'    / MQTT backlog drain':<58}{h['perS'] / d['perS']:>12.2f} x",
            f"{'    one request, answered after commit: p50 / max':<58}"
            f"{h['requestP50Ms']:>5.0f} / {h['requestMaxMs']:.0f} ms",
            f"{'    fleetd CPU per reading / peak RSS':<58}"
            f"{h['cpuUsPerReading']:>6.1f} µs {h['peakRssMb']:>5.0f} MB",
        ]
    for label, name in (("nominal", "5 nominal 333/s"), ("tenX", "  10x nominal 3,333/s")):
        x = r[label]
        lines.append(
            f"{name + ': publish→commit p50 / p99 / max':<58}"
            f"{x['p50Ms']:>5.0f} / {x['p99Ms']:.0f} / {x['maxMs']:.0f} ms"
        )
        lines.append(
            f"{'    fleetd CPU (% of one core) / peak RSS':<58}"
            f"{x['cpuPercent']:>6.1f} % {x['peakRssMb']:>5.0f} MB"
        )
    w = r.get("windows")
    if w:
        for window, cases in w.items():
            line = f"{cases['idle']['perS']:>10,.0f} /s"
            if "noIdle" in cases:
                line += f"  (no idle flush: {cases['noIdle']['perS']:,.0f} /s)"
            lines.append(f"{'6 strict broker window ' + window + ': backlog drain':<58}{line}")
    else:
        lines.append("6 strict broker windows: skipped (no rabbitmq-server)")
    ab = r.get("ab")
    if ab:
        lines.append(f"  A/B against {ab['ref']} (median of {ab['rounds']} alternations):")
        for key in ab["runs"]["this"][0]:
            a = statistics.median(x[key] for x in ab["runs"]["this"])
            b = statistics.median(x[key] for x in ab["runs"]["ref"])
            lines.append(f"{'    ' + key + ': this / ref':<58}{a:>8,.1f} / {b:,.1f}")
    s = r["storage"]
    lines.append(
        f"{'7 bytes per reading: history heap + indexes (+ rollups)':<58}"
        f"{s['heapBytesPerReading']:.0f} + {s['indexBytesPerReading']:.0f} "
        f"(+ {s['rollupBytesPerReading']:.0f}) B"
    )
    for c in r.get("coldSizes") or ():
        n = c["devices"]
        lines.append(
            f"{f'  compacted day, {n:,}+{n:,} devices: 64 -> sized groups':<58}"
            f"{c['fixedBytesPerReading']:>5.2f} -> {c['sizedBytesPerReading']:.2f} B"
        )
        target = c["targetBytesPerReading"]
        if target:
            lines.append(f"{f'    / target {target:.0f} B':<58}{c['sizedVsTarget']:>12.2f} x")
        speed = c["speedSizedVsFixed"]
        lines.append(f"{'    compaction (fetch, split, encode), sized / 64':<58}{speed:>12.2f} x")
    lines.extend(query_lines(r.get("queries")))
    if r.get("http"):
        lines.extend(http_table_lines(r["http"]))
    if r.get("diagnosis"):
        lines.extend(diagnosis_lines(r["diagnosis"]))
    if r.get("assignments"):
        check = (r.get("queries") or {}).get("assignmentCheck")
        lines.extend(assignment_lines(r["assignments"], check))
    return "\n".join(lines)


def ingest_cost_lines(c: dict[str, Any]) -> list[str]:
    """The lines of fleetd against the batched baseline (fleetsim.bench.ingest_cost)."""
    lines = [
        f"4b fleetd against a batched history-only pipeline (N = {c['n']:,}, median of"
        f" {c['rounds']}):",
        f"{'    readings/s, PostgreSQL CPU / reading, own CPU / reading':<58}",
    ]
    names = {
        "baseline": "batched history-only, ack on arrival",
        "fleetd": "fleetd (ack after commit)",
    }
    for side, m in c["medians"].items():
        name = "    " + names.get(side, "fleetd of " + side)
        lines.append(
            f"{name:<58}{m['perS']:>8,.0f} /s {m['pgCpuUsPerReading']:>5.1f} µs"
            f" {m['cpuUsPerReading']:>5.1f} µs"
        )
    ratio = c["fleetdVsBaseline"]
    lines.append(f"{'    fleetd / batched baseline (readings/s)':<58}{ratio:>12.2f} x")
    fold = c.get("fold")
    if fold:
        drain = c["medians"]["fleetd"]["pgCpuUsPerReading"]
        total = drain + fold["pgCpuUsPerReading"]
        lines += [
            f"{'    + its fold, as fleetd folds closed buckets: PG CPU':<58}"
            f"{fold['pgCpuUsPerReading']:>12.1f} µs",
            f"{'    fleetd drain + fold, PG CPU / reading / target 15 µs':<58}"
            f"{total:>9.1f} µs {total / 15:>5.2f} x",
        ]
    return lines


def query_lines(q: dict[str, Any] | None) -> list[str]:
    """Sections 8-10: the query stage's timings (against their targets), the layouts, the
    cold tier and the charger diagnosis."""

    def rate(v: float) -> str:
        return f"{v:>10,.0f} /s"

    lines: list[str] = []
    if q:
        lines.append(f"8 queries on {q['days']} days ({q['readings']:,} readings), p50 / p99:")
        for name, v in q["timings"].items():
            line = f"{'    ' + name:<58}{v['p50Ms']:>7.1f} / {v['p99Ms']:.1f} ms"
            if v.get("targetMs"):
                line += f"  ({v['p50Ms'] / v['targetMs']:.2f}x of {v['targetMs']:g} ms)"
            lines.append(line)
        lay = q.get("layout")
        if lay:
            lines.append(
                f"8b fleet report on {lay['hours']} h laid out by fleetd's flushes / by COPY"
                " (alternated), p50:"
            )
            for name, v in lay["windows"].items():
                line = (
                    f"{'    ' + name:<58}{v['ingest']['p50Ms']:>7.1f} / "
                    f"{v['copy']['p50Ms']:.1f} ms = {v['ratio']:.2f}x"
                )
                if v["ingest"].get("targetMs"):
                    t = v["ingest"]["targetMs"]
                    line += f"  ({v['ingest']['p50Ms'] / t:.2f}x of {t:g} ms)"
                lines.append(line)
        c = q.get("cold")
        if c:
            lines.append("9 cold tier (compacted days against open days):")
            for state, s in (c["storage"] or {}).items():
                lines.append(
                    f"{'    ' + state + ' days: history + indexes (+ rollups) per reading':<58}"
                    f"{s['bytesPerReading']:>6.2f} (+ {s['rollupBytesPerReading']:.2f}) B"
                )
            if c["compactionReadingsPerSecond"]:
                lines.append(
                    f"{'    compaction speed':<58}{rate(c['compactionReadingsPerSecond'])}"
                )
            for key, name in (
                ("vehicleRatio", "vehicle 24 h"),
                ("fleetMidHourRatio", "fleet 24 h, mid-hour edges"),
                ("fleetAlignedRatio", "fleet 24 h, hour boundaries"),
            ):
                lines.append(f"{'    ' + name + ': compacted / open p50':<58}{c[key]:>12.2f} x")
        d = q.get("chargerDiagnosis")
        if d:
            lines.append(
                f"10 charger diagnosis, 24 h, {d['judged']:,} chargers that charged >= 2 h:"
            )
            lines.append(
                f"{'    |eta - truth| <= 0.01 / standby within 5 W':<58}"
                f"{d['etaWithin001']:>7.1%} / {d['standbyWithin5W']:.1%}"
            )
            lines.append(
                f"{'    degraded + critical: recall / precision':<58}"
                f"{d['recall']:>7.1%} / {d['precision']:.1%}"
            )
            lines.append(
                f"{'    95 % intervals: coverage of eta / standby':<58}"
                f"{d['etaCoverage'] or 0:>7.1%} / {d['standbyCoverage'] or 0:.1%}"
            )
    else:
        lines.append("8 queries: skipped (--quick or --no-queries)")
    return lines
