"""The benchmark's stages, in the order they run: each a function of the shared `Bench` that
measures one thing and stores its figures under its own keys. A new stage is one function
here (or in a module of its own) and one line in STAGES."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fleet_harness import MosquittoServer, PostgresServer
from fleetsim.bench.baseline import drain_per_message
from fleetsim.bench.ceilings import broker_ceiling_rate, copy_ceiling, dual_write_ceiling
from fleetsim.bench.cold_sizes import cold_size_stage
from fleetsim.bench.databases import db_url, drain_rate, ensure_days, new_database, storage_figures
from fleetsim.bench.fleetd_runs import ab_stage, drain_stage, load_stage
from fleetsim.bench.http_ingest import http_ingest_stage
from fleetsim.bench.http_stage import http_stage
from fleetsim.bench.ingest_cost import ingest_cost_stage
from fleetsim.bench.mqtt_sessions import create_session, drop_session
from fleetsim.bench.printing import say
from fleetsim.bench.readings import decoded, publish
from fleetsim.bench.windows import window_stage


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
        url = await new_database(self.pg.url, name)
        await ensure_days(url, self.start, self.start + timedelta(days=days))
        return url


async def broker_ceiling(b: Bench) -> None:
    """The simulator's publish rate, and mosquitto_sub (C) draining the same N readings."""
    create_session(b.mqtt, "bench-sub", v5=False)
    b.results["simulatorPublishPerS"] = await publish(b.mqtt, b.messages)
    b.results["brokerCeilingPerS"] = broker_ceiling_rate(b.broker, len(b.messages))
    drop_session(b.mqtt, "bench-sub")


async def database_ceilings(b: Bench) -> None:
    """COPY, and fleetd's own write path without MQTT."""
    meters, vehicles = decoded(b.messages)
    url = await b.database("bench_copy")
    b.results["copyCeilingPerS"] = await copy_ceiling(url, meters, vehicles)
    url = await b.database("bench_dual")
    rate, seconds = await dual_write_ceiling(url, meters, vehicles, 5000)
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
    await publish(b.mqtt, b.messages[:n_base])
    await drain_per_message(b.mqtt, url, "bench-base", n_base)
    drop_session(b.mqtt, "bench-base")
    b.results["baselinePerS"] = (await drain_rate(url))[1]


async def fleetd_drain(b: Bench) -> None:
    """N readings queued for fleetd's session, then fleetd started."""
    b.results["fleetdDrain"] = await drain_stage(
        b.pg.url, b.mqtt, b.messages, b.start, "fleetd_bench", pg_dir=b.pg.data_dir
    )


async def batched_baseline(b: Bench) -> None:
    """fleetd against a batched history-only pipeline (ack on arrival), interleaved.

    Up to 100,000 readings per drain (the issue's figures), rounds of baseline then fleetd."""
    b.results["ingestCost"] = await ingest_cost_stage(
        b.pg.url,
        b.pg.data_dir,
        b.mqtt,
        b.messages[:100_000],
        b.start,
        rounds=1 if b.args.quick else 3,
        say=say,
    )


async def fleetd_http_ingest(b: Bench) -> None:
    """The same N readings posted to fleetd over HTTP, 50 clients, 500-reading batches.

    Each answer is waited for (sent after commit); printed beside the MQTT drain above."""
    b.results["httpIngest"] = await http_ingest_stage(b.pg.url, b.mqtt, b.messages, b.start)


async def fleetd_load(b: Bench) -> None:
    """Live load at nominal (333/s) and 10x nominal (3,333/s): latency and CPU."""
    seconds = 10.0 if b.args.quick else 60.0
    for label, rate_s in (("nominal", 333.0), ("tenX", 3333.0)):
        b.results[label] = await load_stage(b.pg.url, b.mqtt, label, rate_s, seconds)


async def ab_against_reference(b: Bench) -> None:
    """With --ab-ref: drain and load of this code and the reference, interleaved."""
    if b.args.ab_ref:
        b.results["ab"] = await ab_stage(b.args, b.pg.url, b.mqtt, b.messages, b.start)


async def broker_windows(b: Bench) -> None:
    """fleetd behind strict broker windows (RabbitMQ's mqtt.prefetch)."""
    windows = (10,) if b.args.quick else (1, 10, 20)
    b.results["windows"] = await window_stage(b.pg.url, windows, b.start, quick=b.args.quick)


async def storage(b: Bench) -> None:
    """Bytes per reading after the drain, and of a compacted day by fleet size (cold_sizes).

    The first line is the bench's progress line: fleetd's database after the drain, then
    fleetsim.bench.cold_sizes."""
    b.results["storage"] = await storage_figures(db_url(b.pg.url, "bench_fleetd_bench"))
    b.results["coldSizes"] = await cold_size_stage(b.pg.url, quick=b.args.quick, say=say)


async def http_front(b: Bench) -> None:
    """fleetctl serve's HTTP against uvicorn: 2,000 keep-alive clients, endless headers."""
    url = await b.database("bench_http")
    b.results["http"] = await http_stage(url, quick=b.args.quick, say=say)


STAGES = (
    broker_ceiling,
    database_ceilings,
    per_message_baseline,
    fleetd_drain,
    batched_baseline,
    fleetd_http_ingest,
    fleetd_load,
    ab_against_reference,
    broker_windows,
    storage,
    http_front,
)
