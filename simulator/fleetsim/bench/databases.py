"""The benchmark's databases: a fresh migrated one per stage, and the figures read from the
database's own clock (track_commit_timestamp): drain rate, latency, bytes per reading."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from fleetdb.connect import connect
from fleetdb.migrate import migrate
from fleetdb.partitions import PartitionCache
from fleetdb.rollups import LEVELS, floor_to, rollup_tables

PG_SETTINGS = {"track_commit_timestamp": "on", "shared_buffers": "1GB"}


DRAIN_SQL = """
SELECT count(*) AS n, min(received_at) AS first_rx, max(pg_xact_commit_timestamp(xmin)) AS last
  FROM (SELECT received_at, xmin FROM meter_readings
        UNION ALL SELECT received_at, xmin FROM vehicle_readings) r
"""


def db_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def new_database(admin_url: str, name: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = db_url(admin_url, name)
    conn = await connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def folded_before(url: str, start: datetime) -> None:
    """Every rollup level's watermark (fleetdb.fold) at `start`'s bucket: a backlog queued
    while fleetd was stopped holds readings after its last fold. (A fresh database's
    watermarks are at its migration, after a backlog stamped before it: every reading would
    take the late path.)"""
    conn = await connect(url)
    try:
        for level in LEVELS:
            await conn.execute(
                "UPDATE fleet_rollup_folded SET folded_to = $2 WHERE level = $1",
                level.name,
                floor_to(start, level.width),
            )
    finally:
        await conn.close()


async def ensure_days(url: str, start: datetime, end: datetime) -> None:
    conn = await connect(url)
    try:
        day = start.date()
        while day <= end.date():
            await PartitionCache().ensure(conn, [day])
            day += timedelta(days=1)
    finally:
        await conn.close()


async def drain_rate(url: str) -> tuple[int, float]:
    conn = await connect(url)
    try:
        row = await conn.fetchrow(DRAIN_SQL)
        assert row is not None
    finally:
        await conn.close()
    seconds = (row["last"] - row["first_rx"]).total_seconds()
    return row["n"], row["n"] / seconds if seconds > 0 else float("nan")


async def latency(url: str, since: datetime) -> dict[str, float]:
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


async def storage_figures(url: str) -> dict[str, float]:
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
