"""A device kind the project does not ship, registered by this test alone: a stationary battery
reporting energy discharged, its SoC, its cell temperature and its voltage. One registry entry
and the migration fleetdb.kind_tables prints for it are all it takes: fleetd ingests it over
MQTT (rollups of every level, the current row, rejects and conflicts), compaction encodes its
days into blocks and summaries and merges its late readings, retention drops its partitions.
The registry is passed in (fleetd, compaction, retention take `kinds`): nothing global changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import asyncpg
import pytest

from fleetd.settings import Settings
from fleetdb.cold import blocks, compact, summary_store
from fleetdb.cold.codec import Block
from fleetdb.cold.layout import day_start
from fleetdb.cold.stats import slice_stats
from fleetdb.cold.summary import Summary, hour_stats
from fleetdb.kind_tables import create_tables_sql
from fleetdb.kinds import REGISTRY, Column, DeviceKind
from fleetdb.retention import drop_older_than, list_partitions, rollup_parents
from fleetdb.rollups import LEVELS
from tests.conftest import publish_all, running, wait_for_count

pytestmark = pytest.mark.integration


@dataclass(frozen=True, slots=True)
class BatteryReading:
    battery_id: str
    ts: datetime
    kwh_discharged: float
    soc: float
    cell_temp: float
    voltage: float


BATTERY = DeviceKind(
    name="battery",
    topic="batteries",
    device="battery_id",
    id_wire="batteryId",
    columns=(
        Column("kwh_discharged", "kwhDischarged", "numeric(12,6)", ge=0, le=1000),
        Column("soc", "soc", role="edges", prefix="soc", ge=0, le=100),
        Column("cell_temp", "cellTemp", role="spread", prefix="cell", ge=-40, le=90),
        Column("voltage", "voltage", gt=0, le=1500),
    ),
    reading=BatteryReading,
)
KINDS = (*REGISTRY, BATTERY)
DEVICES = ("BAT-1", "BAT-2")
MINUTES = 120  # two whole hours, 10:00-11:59


def _message(device: str, ts: datetime, n: int, *, kwh: float = 0.125) -> tuple[str, bytes]:
    body = {
        "batteryId": device,
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        "kwhDischarged": kwh,
        "soc": 20 + n * 0.5,
        "cellTemp": 20 + (n % 8) * 0.25,
        "voltage": 800.0,
    }
    return f"batteries/{device}/telemetry", json.dumps(body).encode()


T = TypeVar("T", Block, Summary)


def _holding(device: str, by_group: dict[int, T]) -> T:
    """The block or summary of `device`'s group, of all loaded."""
    [found] = [b for b in by_group.values() if device in b.devices]
    return found


async def _wait(cond: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(what)


async def test_a_registered_kind_is_ingested_rolled_up_compacted_merged_and_retained(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    await db.execute(create_tables_sql(BATTERY))  # the kind's migration
    day: date = datetime.now(UTC).date() - timedelta(days=3)
    t10 = day_start(day) + timedelta(hours=10)
    msgs = [_message(d, t10 + n * timedelta(minutes=1), n) for d in DEVICES for n in range(MINUTES)]
    topic, body = _message("BAT-1", t10 + timedelta(hours=3), 0)
    bad = topic, body.replace(b'"soc": 20.0', b'"soc": 120.0')
    total = len(DEVICES) * MINUTES

    # Ingest: fleetd takes the kind's topic, validates its payload, writes every table.
    async with running(settings, kinds=KINDS) as daemon:
        await publish_all(mqtt_url, [*msgs, bad, msgs[0]])
        await wait_for_count(db, "SELECT count(*) FROM battery_readings", total)
        await wait_for_count(db, "SELECT count(*) FROM rejected_messages", 1)
        await _wait(lambda: daemon.counters.duplicates == 1, "the redelivery counted")
    reject = await db.fetchrow("SELECT topic, field FROM rejected_messages")
    assert (reject["topic"], reject["field"]) == ("batteries/BAT-1/telemetry", "soc")

    # Rollups: every level holds what the raw readings give.
    for level in LEVELS:
        rows = await db.fetch(
            f"SELECT sum(kwh_sum) AS k, sum(readings)::int AS n, min(cell_min) AS lo,"
            f" max(cell_max) AS hi, sum(cell_sum) AS s FROM {level.table(BATTERY)}"
        )
        assert (rows[0]["k"], rows[0]["n"]) == (total * 0.125, total), level.name
        assert (rows[0]["lo"], rows[0]["hi"]) == (20.0, 21.75), level.name
        assert rows[0]["s"] == pytest.approx(len(DEVICES) * MINUTES / 8 * (8 * 20 + 7 * 0.25 * 4))
    hour = await db.fetchrow(
        "SELECT soc_first, soc_first_ts, soc_last, soc_last_ts, readings FROM battery_hourly"
        " WHERE battery_id = 'BAT-1' AND hour = $1",
        t10 + timedelta(hours=1),
    )
    assert (hour["soc_first"], hour["soc_last"], hour["readings"]) == (50.0, 79.5, 60)
    assert hour["soc_last_ts"] - hour["soc_first_ts"] == timedelta(minutes=59)
    current = await db.fetchrow("SELECT ts, soc FROM battery_current WHERE battery_id = 'BAT-1'")
    assert (current["ts"], current["soc"]) == (t10 + timedelta(minutes=MINUTES - 1), 79.5)

    # Compaction: blocks and summaries of the kind, its raw and rollup partitions dropped.
    done = await compact.run(db, datetime.now(UTC).date() - timedelta(days=1), kinds=KINDS)
    assert day in done.days_done
    assert done.readings == total
    suffix = f"_p{day:%Y%m%d}"
    for table in (BATTERY.history, *BATTERY.rollups):
        assert await db.fetchval("SELECT to_regclass($1)", table + suffix) is None, table
    block = _holding("BAT-1", await blocks.load(db, BATTERY, day, 10))
    a, e = block.spans()["BAT-1"]
    from_block = slice_stats(block, a, e, t10, kind=BATTERY)
    summary = _holding("BAT-1", await summary_store.load(db, BATTERY, day))
    row = summary.devices.index("BAT-1")
    from_summary = hour_stats(summary, row, 10, day_start(day), kind=BATTERY)
    assert from_block == from_summary
    assert (from_summary.n, from_summary.kwh_u) == (60, 7_500_000)
    assert (from_summary.soc_first, from_summary.soc_last) == (20.0, 49.5)
    assert (from_summary.temp_min, from_summary.temp_max) == (20.0, 21.75)

    # Late data: a new reading of the compacted day waits in battery_late, a repeat of a
    # compacted one is a duplicate, a different one a conflict; the next run merges.
    late = _message("BAT-1", t10 + timedelta(hours=2, minutes=30), 150)
    other = _message("BAT-1", t10, 0, kwh=0.5)
    async with running(settings, kinds=KINDS) as daemon:
        await publish_all(mqtt_url, [late, msgs[0], other])
        await wait_for_count(db, "SELECT count(*) FROM battery_late", 1)
        await wait_for_count(
            db, "SELECT count(*) FROM rejected_messages WHERE stored IS NOT NULL", 1
        )
        await _wait(lambda: daemon.counters.duplicates == 1, "the repeat counted")
    conflict = await db.fetchrow(
        "SELECT topic, field FROM rejected_messages WHERE stored IS NOT NULL"
    )
    assert (conflict["topic"], conflict["field"]) == ("batteries/BAT-1/telemetry", "kwhDischarged")
    merged = await compact.run(db, datetime.now(UTC).date() - timedelta(days=1), kinds=KINDS)
    assert merged.late_merged == 1
    assert await db.fetchval("SELECT count(*) FROM battery_late") == 0
    assert await db.fetchval("SELECT sum(readings) FROM battery_cold") == total + 1
    summary = _holding("BAT-1", await summary_store.load(db, BATTERY, day))
    at12 = hour_stats(summary, summary.devices.index("BAT-1"), 12, day_start(day), kind=BATTERY)
    assert (at12.n, at12.soc_first, at12.temp_min) == (1, 95.0, 21.5)

    # Retention: the kind's compacted day goes with the others'.
    parents = {p.parent for p in await list_partitions(db, KINDS) if p.day == day}
    assert {BATTERY.cold, BATTERY.hours} <= parents
    assert BATTERY.cold + suffix in await drop_older_than(db, 2, kinds=KINDS)
    dropped = await drop_older_than(db, 2, rollup_parents(KINDS), kinds=KINDS)
    assert BATTERY.hours + suffix in dropped
    assert {p.parent for p in await list_partitions(db, KINDS) if p.day == day} == set()
