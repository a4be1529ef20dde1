"""`make bench` / `make bench-quick`: every figure measured in one run on the same machine.

Stages (see README "Performance"): broker ceiling, database ceilings, per-message baseline,
fleetd backlog drain, fleetd at nominal and 10x nominal load, fleetd behind small broker windows
(RabbitMQ's mqtt.prefetch), storage per reading, queries. `--ab-ref DIR` also runs the drain
and load stages against another checkout's code (A/B interleaved in this run).
Throughputs are backlog drains measured from the database's own clock: rows / (last commit
- first receive), with track_commit_timestamp on, so process start-up is not counted and the
three subscribers are timed the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from fleet_harness import MosquittoServer, PostgresServer
from fleet_harness.cleanup import unwind_on_sigterm
from fleet_harness.rabbitmq import INSTALL_HINT as RABBIT_HINT
from fleet_harness.rabbitmq import RabbitMqServer, RabbitMqStartError, find_rabbitmq
from fleet_harness.rows import wait_for_rows
from fleetd.ingest.writer import write_batch
from fleetd.messages import MeterReading, Rejected, VehicleReading, decode
from fleetdb.connect import connect
from fleetdb.migrate import migrate
from fleetdb.partitions import PartitionCache
from fleetdb.rollups import rollup_tables
from fleetsim.bench.baseline import drain_per_message
from fleetsim.bench.diagnosis import diagnosis_lines, diagnosis_stage
from fleetsim.bench.http_stage import http_stage
from fleetsim.bench.http_stage import table_lines as http_table_lines
from fleetsim.bench.mqtt_sessions import create_session, drop_session
from fleetsim.bench.query_bench import query_stage
from fleetsim.model import Fleet, FleetConfig
from fleetsim.publisher import MqttPublisher

BIN = Path(sys.executable).parent
PG_SETTINGS = {"track_commit_timestamp": "on", "shared_buffers": "1GB"}
DRAIN_SQL = """
SELECT count(*) AS n, min(received_at) AS first_rx, max(pg_xact_commit_timestamp(xmin)) AS last
  FROM (SELECT received_at, xmin FROM meter_readings
        UNION ALL SELECT received_at, xmin FROM vehicle_readings) r
"""


def _messages(n: int, start: datetime) -> list[tuple[str, bytes]]:
    """n readings of the 10,000 + 10,000 device fleet, one tick after another."""
    fleet = Fleet(FleetConfig())
    out: list[tuple[str, bytes]] = []
    ts = start
    while len(out) < n:
        out.extend((m[2], m[3]) for m in fleet.tick(ts))
        ts += timedelta(seconds=60)
    return out[:n]


def _db_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def _new_database(admin_url: str, name: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _db_url(admin_url, name)
    conn = await connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def _ensure_days(url: str, start: datetime, end: datetime) -> None:
    conn = await connect(url)
    try:
        day = start.date()
        while day <= end.date():
            await PartitionCache().ensure(conn, [day])
            day += timedelta(days=1)
    finally:
        await conn.close()


async def _drain_rate(url: str) -> tuple[int, float]:
    conn = await connect(url)
    try:
        row = await conn.fetchrow(DRAIN_SQL)
        assert row is not None
    finally:
        await conn.close()
    seconds = (row["last"] - row["first_rx"]).total_seconds()
    return row["n"], row["n"] / seconds if seconds > 0 else float("nan")


async def _publish(mqtt_url: str, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 with the simulator's fast publisher; returns messages/s (all acked)."""
    pub = MqttPublisher(mqtt_url, qos=1, connections=2, client_id_prefix="bench")
    await pub.connect()
    started = time.perf_counter()
    await pub.publish(messages)
    await pub.close()
    return len(messages) / (time.perf_counter() - started)


# --- process accounting --------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def _fleetd(
    mqtt_url: str, db_url: str, client_id: str, *, code: str | None = None, **extra_env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`fleetd run` as a process; `code` is another checkout whose daemon/ is imported instead."""
    env = os.environ | {
        "FLEET_MQTT_URL": mqtt_url,
        "FLEET_DATABASE_URL": db_url,
        "FLEET_CLIENT_ID": client_id,
        "FLEET_HTTP_ADDR": "off",
        "FLEET_LOG_LEVEL": "warning",
        "FLEET_MAX_PAST_DAYS": "30",
        **extra_env,
    }
    if code is not None:
        env["PYTHONPATH"] = f"{code}/daemon:{code}/simulator"
    proc = subprocess.Popen([str(BIN / "fleetd"), "run"], env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- stages --------------------------------------------------------------------------------


def _broker_ceiling(broker: MosquittoServer, n: int) -> float:
    """mosquitto_sub (C) draining n queued QoS 1 messages."""
    cmd = [
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        str(broker.port),
        "-c",
        "-i",
        "bench-sub",
        "-q",
        "1",
        "-t",
        "meters/+/telemetry",
        "-t",
        "vehicles/+/telemetry",
        "-C",
        str(n),
    ]
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, timeout=600)
    return n / (time.perf_counter() - started)


def _decoded(messages: list[tuple[str, bytes]]) -> tuple[list[Any], list[Any]]:
    now = datetime.now(UTC)
    meters: list[tuple[MeterReading, datetime]] = []
    vehicles: list[tuple[VehicleReading, datetime]] = []
    for topic, payload in messages:
        item = decode(
            topic, payload, now, max_future=timedelta(days=1), max_past=timedelta(days=30)
        )
        if isinstance(item, MeterReading):
            meters.append((item, now))
        elif isinstance(item, VehicleReading):
            vehicles.append((item, now))
        elif isinstance(item, Rejected):
            raise TypeError(f"benchmark reading rejected: {item.reason}")
    return meters, vehicles


async def _copy_ceiling(url: str, meters: list[Any], vehicles: list[Any]) -> float:
    """COPY into the history tables: the fastest plain write (no conflict handling)."""
    m_rows = [(m.meter_id, m.ts, m.kwh_consumed_ac, m.voltage, r) for m, r in meters]
    v_rows = [
        (v.vehicle_id, v.ts, v.soc, v.kwh_delivered_dc, v.battery_temp, r) for v, r in vehicles
    ]
    a, b = await connect(url), await connect(url)
    try:
        started = time.perf_counter()
        await asyncio.gather(
            a.copy_records_to_table(
                "meter_readings",
                records=m_rows,
                columns=["meter_id", "ts", "kwh_consumed_ac", "voltage", "received_at"],
            ),
            b.copy_records_to_table(
                "vehicle_readings",
                records=v_rows,
                columns=[
                    "vehicle_id",
                    "ts",
                    "soc",
                    "kwh_delivered_dc",
                    "battery_temp",
                    "received_at",
                ],
            ),
        )
        return (len(m_rows) + len(v_rows)) / (time.perf_counter() - started)
    finally:
        await a.close()
        await b.close()


async def _dual_write_ceiling(
    url: str, meters: list[Any], vehicles: list[Any], batch: int
) -> tuple[float, list[float]]:
    """fleetd's own write path (history + rollups + current, one transaction per batch) on two
    connections, without MQTT: the database side of the pipeline at full speed. Also each
    batch's seconds in its transaction (what fleetd's write timeout is sized on)."""
    conns = [await connect(url), await connect(url)]
    queue = [
        (meters[i : i + batch // 2], vehicles[i : i + batch // 2])
        for i in range(0, max(len(meters), len(vehicles)), batch // 2)
    ]
    seconds: list[float] = []

    async def worker(conn: asyncpg.Connection) -> None:
        while queue:
            m, v = queue.pop(0)
            began = time.perf_counter()
            await write_batch(conn, m, v, [])
            seconds.append(time.perf_counter() - began)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        return (len(meters) + len(vehicles)) / (time.perf_counter() - started), seconds
    finally:
        for c in conns:
            await c.close()


async def _latency(url: str, since: datetime) -> dict[str, float]:
    conn = await connect(url)
    try:
        row = await conn.fetchrow(
            """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lat) AS p50,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY lat) AS p99,
                      max(lat) AS max, count(*) AS n
                 FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts) AS lat
                         FROM meter_readings WHERE ts >= $1
                       UNION ALL
                       SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts)
                         FROM vehicle_readings WHERE ts >= $1) x""",
            since,
        )
        assert row is not None
    finally:
        await conn.close()
    return {
        "p50Ms": float(row["p50"]) * 1000,
        "p99Ms": float(row["p99"]) * 1000,
        "maxMs": float(row["max"]) * 1000,
        "rows": row["n"],
    }


async def _paced_load(mqtt_url: str, rate: float, seconds: float) -> int:
    """rate readings/s from 10,000 + 10,000 devices, each stamped with the time it is sent,
    spread evenly as real devices are (not in bursts)."""
    pub = MqttPublisher(mqtt_url, qos=1, connections=1, client_id_prefix="bench-load")
    await pub.connect()
    sent = 0
    started = time.perf_counter()
    step = 0.01  # publish every 10 ms what is due
    try:
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * rate) + 1 - sent
            now = datetime.now(UTC)
            stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
            batch = []
            for k in range(sent, sent + max(0, due)):
                i = k % 20_000
                if i < 10_000:
                    dev = f"METER-{i + 1:05d}"
                    body = (
                        f'{{"meterId":"{dev}","kwhConsumedAc":0.{k % 1000:03d},'
                        f'"voltage":230.1,"timestamp":"{stamp}"}}'
                    )
                    batch.append((f"meters/{dev}/telemetry", body.encode()))
                else:
                    dev = f"VEHICLE-{i - 9_999:05d}"
                    body = (
                        f'{{"vehicleId":"{dev}","soc":50.5,"kwhDeliveredDc":0.{k % 900:03d},'
                        f'"batteryTemp":25.5,"timestamp":"{stamp}"}}'
                    )
                    batch.append((f"vehicles/{dev}/telemetry", body.encode()))
            if batch:
                await pub.publish(batch)
                sent += len(batch)
            await asyncio.sleep(step)
    finally:
        await pub.close()
    return sent


async def _storage(url: str) -> dict[str, float]:
    conn = await connect(url)
    try:
        row = await conn.fetchrow(
            """SELECT
                 (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
                   WHERE inhparent IN ('meter_readings'::regclass, 'vehicle_readings'::regclass))
                   AS history,
                 (SELECT sum(pg_relation_size(inhrelid)) FROM pg_inherits
                   WHERE inhparent IN ('meter_readings'::regclass, 'vehicle_readings'::regclass))
                   AS heap,
                 (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
                   WHERE inhparent = ANY($1::regclass[])) AS rollups,
                 (SELECT count(*) FROM meter_readings) + (SELECT count(*) FROM vehicle_readings)
                   AS n""",
            list(rollup_tables()),
        )
        assert row is not None
    finally:
        await conn.close()
    # sum() of bigint sizes is numeric: as floats, so the JSON holds numbers.
    v = {k: float(x or 0) for k, x in row.items()}
    n = v["n"] or 1.0
    return {
        "historyBytesPerReading": v["history"] / n,
        "heapBytesPerReading": v["heap"] / n,
        "indexBytesPerReading": (v["history"] - v["heap"]) / n,
        "rollupBytesPerReading": v["rollups"] / n,
        "readings": v["n"],
    }


async def _drain_stage(
    admin_url: str,
    mqtt: str,
    messages: list[tuple[str, bytes]],
    start: datetime,
    name: str,
    *,
    code: str | None = None,
) -> dict[str, float]:
    """Queue every message for a durable session, then start fleetd and time the drain."""
    url = await _new_database(admin_url, f"bench_{name}")
    await _ensure_days(url, start, start + timedelta(days=3))
    create_session(mqtt, name, v5=True)
    await _publish(mqtt, messages)
    with _fleetd(mqtt, url, name, code=code) as proc:
        got = await wait_for_rows(url, len(messages), timeout_s=600, proc=proc)
        cpu = _cpu_seconds(proc.pid)
        rss = _peak_rss_mb(proc.pid)
    drop_session(mqtt, name)
    _, rate = await _drain_rate(url)
    return {
        "rows": got,
        "perS": rate,
        "cpuSeconds": cpu,
        "peakRssMb": rss,
        "cpuUsPerReading": cpu / max(1, got) * 1e6,
    }


async def _load_stage(
    admin_url: str, mqtt: str, label: str, rate_s: float, seconds: float, *, code: str | None = None
) -> dict[str, float]:
    """fleetd under paced live load: publish-to-commit latency and CPU."""
    name = f"fleetd-{label}-{'ref' if code else 'this'}"
    url = await _new_database(admin_url, f"bench_{label.lower()}")
    create_session(mqtt, name, v5=True)
    with _fleetd(mqtt, url, name, code=code) as proc:
        await asyncio.sleep(2.0)  # start-up and subscription, not measured
        cpu0, t0 = _cpu_seconds(proc.pid), time.perf_counter()
        since = datetime.now(UTC)
        sent = await _paced_load(mqtt, rate_s, seconds)
        got = await wait_for_rows(url, sent, timeout_s=60, proc=proc)
        cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0)
        rss = _peak_rss_mb(proc.pid)
    drop_session(mqtt, name)
    return {
        "ratePerS": rate_s,
        "sent": sent,
        "stored": got,
        "cpuPercent": cpu * 100,
        "peakRssMb": rss,
        **await _latency(url, since),
    }


async def _ab_stage(
    args: argparse.Namespace,
    admin_url: str,
    mqtt: str,
    messages: list[tuple[str, bytes]],
    start: datetime,
) -> dict[str, Any]:
    """Drain and 10x-nominal latency of this code (A) and the reference checkout (B),
    alternating A B A B so both see the same machine."""
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "ref": []}
    seconds = 10.0 if args.quick else 30.0
    for _ in range(args.ab_rounds):
        for side, code in (("this", None), ("ref", args.ab_ref)):
            drain = await _drain_stage(admin_url, mqtt, messages, start, f"ab_{side}", code=code)
            load = {
                label: await _load_stage(admin_url, mqtt, label, rate, seconds, code=code)
                for label, rate in (("nominal", 333.0), ("tenX", 3333.0))
            }
            figures = {"drainPerS": drain["perS"]}
            for label, x in load.items():
                figures |= {f"{label}P50Ms": x["p50Ms"], f"{label}P99Ms": x["p99Ms"],
                            f"{label}CpuPercent": x["cpuPercent"]}  # fmt: skip
            runs[side].append(figures)
            _say(f"    {side}: " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()))
    return {"ref": args.ab_ref, "rounds": args.ab_rounds, "runs": runs}


async def _window_stage(
    admin_url: str, windows: tuple[int, ...], start: datetime, *, quick: bool
) -> dict[str, Any] | None:
    """Backlog drain behind a RabbitMQ whose mqtt.prefetch is each window, with the idle flush
    and (window 10 only, a few windows' worth) without it, as before FLEET_FLUSH_IDLE_MS."""
    if find_rabbitmq() is None:
        _say(f"    skipped: rabbitmq-server is not installed ({RABBIT_HINT})")
        return None
    out: dict[str, Any] = {}
    try:
        for window in windows:
            await _one_window(admin_url, window, start, quick=quick, out=out)
    except RabbitMqStartError as exc:  # say so and keep the other stages' figures
        _say(f"    skipped: {str(exc)[:300]}")
        return None
    return out


async def _one_window(
    admin_url: str, window: int, start: datetime, *, quick: bool, out: dict[str, Any]
) -> None:
    """Backlog drains behind one RabbitMQ whose mqtt.prefetch is `window`, into `out`."""
    n = (200 if quick else 1_000) * max(1, min(window, 10))
    messages = _messages(n, start)
    cases: list[tuple[str, int, dict[str, str]]] = [("idle", n, {})]
    if window == 10:
        cases.append(("noIdle", 5 * window, {"FLEET_FLUSH_IDLE_MS": "0"}))
    with RabbitMqServer(prefetch=window) as rabbit:
        mqtt = rabbit.url()
        for case, count, env in cases:
            name = f"win{window}-{case}".lower()
            url = await _new_database(admin_url, f"bench_{name.replace('-', '_')}")
            await _ensure_days(url, start, start + timedelta(days=1))
            create_session(mqtt, name, v5=False)
            await _publish(mqtt, messages[:count])
            with _fleetd(mqtt, url, name, **env) as proc:
                got = await wait_for_rows(url, count, timeout_s=300, proc=proc)
            drop_session(mqtt, name)
            _, rate = await _drain_rate(url)
            out.setdefault(str(window), {})[case] = {"rows": got, "perS": rate}
            _say(f"    window {window}, {case}: {got:,} rows at {rate:,.0f}/s")


@dataclass
class Bench:
    """What the throughput stages share: servers, the readings, and the figures so far."""

    args: argparse.Namespace
    pg: PostgresServer
    broker: MosquittoServer
    start: datetime
    messages: list[tuple[str, bytes]]
    results: dict[str, Any]

    @property
    def mqtt(self) -> str:
        return self.broker.url()

    async def database(self, name: str, days: int = 1) -> str:
        """A fresh migrated database with partitions for the readings' days."""
        url = await _new_database(self.pg.url, name)
        await _ensure_days(url, self.start, self.start + timedelta(days=days))
        return url


async def broker_ceiling(b: Bench) -> None:
    """The simulator's publish rate, and mosquitto_sub (C) draining the same N readings."""
    create_session(b.mqtt, "bench-sub", v5=False)
    b.results["simulatorPublishPerS"] = await _publish(b.mqtt, b.messages)
    b.results["brokerCeilingPerS"] = _broker_ceiling(b.broker, len(b.messages))
    drop_session(b.mqtt, "bench-sub")


async def database_ceilings(b: Bench) -> None:
    """COPY, and fleetd's own write path without MQTT."""
    meters, vehicles = _decoded(b.messages)
    url = await b.database("bench_copy")
    b.results["copyCeilingPerS"] = await _copy_ceiling(url, meters, vehicles)
    url = await b.database("bench_dual")
    rate, seconds = await _dual_write_ceiling(url, meters, vehicles, 5000)
    b.results["dualWriteCeilingPerS"] = rate
    b.results["batchCommitMs"] = {
        "rows": 5000,
        "batches": len(seconds),
        "p50": statistics.median(seconds) * 1000,
        "max": max(seconds) * 1000,
    }


async def per_message_baseline(b: Bench) -> None:
    """The seed designs: ack on arrival, one transaction per message."""
    n_base = b.args.baseline_n
    url = await b.database("bench_base")
    create_session(b.mqtt, "bench-base", v5=False)
    await _publish(b.mqtt, b.messages[:n_base])
    await drain_per_message(b.mqtt, url, "bench-base", n_base)
    drop_session(b.mqtt, "bench-base")
    b.results["baselinePerS"] = (await _drain_rate(url))[1]


async def fleetd_drain(b: Bench) -> None:
    """N readings queued for fleetd's session, then fleetd started."""
    b.results["fleetdDrain"] = await _drain_stage(
        b.pg.url, b.mqtt, b.messages, b.start, "fleetd_bench"
    )


async def fleetd_load(b: Bench) -> None:
    """Live load at nominal (333/s) and 10x nominal (3,333/s): latency and CPU."""
    seconds = 10.0 if b.args.quick else 60.0
    for label, rate_s in (("nominal", 333.0), ("tenX", 3333.0)):
        b.results[label] = await _load_stage(b.pg.url, b.mqtt, label, rate_s, seconds)


async def ab_against_reference(b: Bench) -> None:
    """With --ab-ref: drain and load of this code and the reference, interleaved."""
    if b.args.ab_ref:
        b.results["ab"] = await _ab_stage(b.args, b.pg.url, b.mqtt, b.messages, b.start)


async def broker_windows(b: Bench) -> None:
    """fleetd behind strict broker windows (RabbitMQ's mqtt.prefetch)."""
    windows = (10,) if b.args.quick else (1, 10, 20)
    b.results["windows"] = await _window_stage(b.pg.url, windows, b.start, quick=b.args.quick)


async def http_front(b: Bench) -> None:
    """fleetctl serve's HTTP against uvicorn: 2,000 keep-alive clients, endless headers."""
    url = await b.database("bench_http")
    b.results["http"] = await http_stage(url, quick=b.args.quick, say=_say)


async def storage(b: Bench) -> None:
    """Bytes per reading in fleetd's database after the drain."""
    b.results["storage"] = await _storage(_db_url(b.pg.url, "bench_fleetd_bench"))


STAGES = (broker_ceiling, database_ceilings, per_message_baseline, fleetd_drain, fleetd_load,
          ab_against_reference, broker_windows, storage, http_front)  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every stage and return the figures."""
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "startedAt": datetime.now(UTC).isoformat(),
        "n": args.n,
        "baselineN": args.baseline_n,
        "quick": args.quick,
    }
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    messages = _messages(args.n, start)
    total = len(STAGES) + 1
    with PostgresServer(settings=PG_SETTINGS) as pg, MosquittoServer() as broker:
        bench = Bench(args, pg, broker, start, messages, results)
        for i, stage in enumerate(STAGES, 1):
            _say(f"[{i}/{total}] {(stage.__doc__ or stage.__name__).splitlines()[0].rstrip('.')}")
            await stage(bench)
    # After the throughput stages' servers are stopped, so their checkpoints don't share the CPU.
    if args.quick or args.no_queries:
        results["queries"] = None
    else:
        _say(f"[{total}/{total}] queries on {args.query_days} days x 10,000 + 10,000 devices")
        results["queries"] = await query_stage(args.query_days, Path(args.cache_dir), _say)
    _say("diagnosis: the charger fit on 3 h, 24 h (and 7 d) windows against the truth")
    results["diagnosis"] = diagnosis_stage(quick=args.quick, say=_say)
    drain = results["fleetdDrain"]["perS"]
    results["ratios"] = {
        "fleetdVsBrokerCeiling": drain / results["brokerCeilingPerS"],
        "fleetdVsDualWriteCeiling": drain / results["dualWriteCeilingPerS"],
        "fleetdVsCopyCeiling": drain / results["copyCeilingPerS"],
        "fleetdVsPerMessage": drain / results["baselinePerS"],
    }
    return results


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _table(r: dict[str, Any]) -> str:
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
    q = r.get("queries")
    if q:
        lines.append(f"8 queries on {q['days']} days ({q['readings']:,} readings), p50 / p99:")
        for name, v in q["timings"].items():
            lines.append(f"{'    ' + name:<58}{v['p50Ms']:>7.1f} / {v['p99Ms']:.1f} ms")
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
            for key, name in (("vehicleRatio", "vehicle 24 h"),
                              ("fleetMidHourRatio", "fleet 24 h, mid-hour edges"),
                              ("fleetAlignedRatio", "fleet 24 h, hour boundaries")):  # fmt: skip
                lines.append(f"{'    ' + name + ': compacted / open p50':<58}{c[key]:>12.2f} x")
        d = q.get("chargerDiagnosis")
        if d:
            lines.append(
                f"10 charger diagnosis, 24 h, {d['judged']:,} chargers that charged >= 2 h:"
            )
            lines.append(f"{'    |eta - truth| <= 0.01 / standby within 5 W':<58}"
                         f"{d['etaWithin001']:>7.1%} / {d['standbyWithin5W']:.1%}")  # fmt: skip
            lines.append(f"{'    degraded + critical: recall / precision':<58}"
                         f"{d['recall']:>7.1%} / {d['precision']:.1%}")  # fmt: skip
            lines.append(
                f"{'    95 % intervals: coverage of eta / standby':<58}"
                f"{d['etaCoverage'] or 0:>7.1%} / {d['standbyCoverage'] or 0:.1%}"
            )
    else:
        lines.append("8 queries: skipped (--quick or --no-queries)")
    if r.get("http"):
        lines.extend(http_table_lines(r["http"]))
    if r.get("diagnosis"):
        lines.extend(diagnosis_lines(r["diagnosis"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: python -m fleetsim.bench [--quick] [--json PATH]."""
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(prog="fleetsim.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, no 7-day query dataset")
    parser.add_argument("--json", help="also write the figures as JSON to this path")
    parser.add_argument("--n", type=int, help="readings per throughput stage")
    parser.add_argument("--baseline-n", type=int, help="readings for the per-message baseline")
    parser.add_argument("--query-days", type=int, default=7)
    parser.add_argument("--cache-dir", default=".bench-cache")
    parser.add_argument("--no-queries", action="store_true", help="skip the query stage")
    parser.add_argument("--ab-ref", help="another checkout: A/B its fleetd against this one")
    parser.add_argument("--ab-rounds", type=int, default=2)
    args = parser.parse_args(argv)
    args.n = args.n or (20_000 if args.quick else 200_000)
    args.baseline_n = args.baseline_n or (2_000 if args.quick else 10_000)
    started = time.perf_counter()
    results = asyncio.run(run(args))
    results["elapsedS"] = time.perf_counter() - started
    print(_table(results))
    print(f"\n(bench took {results['elapsedS']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0
