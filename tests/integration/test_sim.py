"""The simulator end to end: fleet-sim -> Mosquitto -> fleetd -> PostgreSQL equals the truth file,
and the direct backfill writes history plus exact rollups."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from fleet_harness.rows import COUNT_SQL
from fleetd.settings import Settings
from fleetdb.fold import LOCK_EXCLUSIVE, fold, marks
from fleetdb.rollups import LEVELS, rollup_tables
from fleetsim.direct import backfill_direct
from fleetsim.faults import FaultConfig, FaultInjector
from fleetsim.model import Fleet, FleetConfig, kwh_text
from fleetsim.runner import SimOptions, run_sim
from fleetsim.truth import Truth
from tests.conftest import assert_rollups_match_raw, running, total_readings, wait_for_count

pytestmark = pytest.mark.integration

BOTH = COUNT_SQL


async def _hour_sums(conn: asyncpg.Connection, table: str, id_col: str, kwh: str) -> dict:
    rows = await conn.fetch(
        f"SELECT {id_col} AS id, to_char(date_trunc('hour', ts, 'UTC'), "
        f"""'YYYY-MM-DD"T"HH24:00:00"Z"') AS hour, sum({kwh}) AS k, count(*) AS n """
        f"FROM {table} GROUP BY 1, 2"
    )
    return {(r["id"], r["hour"]): (r["k"], r["n"]) for r in rows}


async def test_sim_run_lands_exactly_the_truth(
    settings: Settings, mqtt_url: str, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    truth_path = tmp_path / "truth.json"
    options = SimOptions(
        meters=200,
        vehicles=200,
        seed=3,
        interval_s=60,
        speed=1200,  # 10 simulated minutes in 0.5 s
        sim_hours=10 / 60,
        qos=1,
        mqtt_url=mqtt_url,
        database_url=database_url,
        truth_path=str(truth_path),
        connections=2,
        invalid_rate=0.03,
        duplicate_rate=0.05,
        out_of_order_rate=0.05,
        clock_skew_s=30,
    )
    async with running(settings) as daemon:
        summary = await run_sim(options)
        assert summary.ticks == 10
        assert (
            summary.acked
            == summary.sent
            == (summary.meters + summary.vehicles + summary.invalid + summary.duplicates)
        )
        assert summary.invalid > 0
        assert summary.duplicates > 0
        valid = summary.meters + summary.vehicles
        assert valid + summary.invalid == 4000
        await wait_for_count(db, "SELECT count(*) FROM rejected_messages", summary.invalid, 30)
        await wait_for_count(db, BOTH, valid, 30)
        # Let fleetd see (and absorb) every duplicate before counting.
        for _ in range(100):
            if daemon.counters.received >= summary.sent and not len(daemon.batcher):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    assert await total_readings(db) == valid
    assert await db.fetchval("SELECT count(*) FROM rejected_messages") == summary.invalid
    assert daemon.counters.duplicates == summary.duplicates
    assert await db.fetchval("SELECT count(*) FROM vehicle_meter_assignments") == 200

    doc = json.loads(truth_path.read_text())
    assert doc["published"] == {
        "meters": summary.meters,
        "vehicles": summary.vehicles,
        "invalid": summary.invalid,
        "duplicates": summary.duplicates,
    }
    expected_v = {
        (vid, hour): (Decimal(h["dcKwh"]), h["readings"])
        for vid, v in doc["vehicles"].items()
        for hour, h in v["hours"].items()
    }
    expected_m = {
        (mid, hour): (Decimal(h["acKwh"]), h["readings"])
        for mid, m in doc["meters"].items()
        for hour, h in m["hours"].items()
    }
    assert await _hour_sums(db, "vehicle_readings", "vehicle_id", "kwh_delivered_dc") == expected_v
    assert await _hour_sums(db, "meter_readings", "meter_id", "kwh_consumed_ac") == expected_m
    await assert_rollups_match_raw(db)
    pairs = await db.fetch("SELECT vehicle_id, meter_id FROM vehicle_meter_assignments")
    assert {(r["vehicle_id"], r["meter_id"]) for r in pairs} == {
        (vid, v["meterId"]) for vid, v in doc["vehicles"].items()
    }


async def test_backfill_direct_writes_a_day_with_exact_rollups(
    database_url: str, db: asyncpg.Connection
) -> None:
    config = FleetConfig(meters=40, vehicles=40, seed=5)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = start + timedelta(days=1)
    summary = await backfill_direct(database_url, config, start, end)
    assert summary.meter_rows == summary.vehicle_rows == 40 * 1440
    assert summary.days == 1
    assert summary.assignments == 40
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 40 * 1440
    assert await db.fetchval("SELECT count(*) FROM vehicle_readings") == 40 * 1440
    assert await db.fetchval("SELECT count(*) FROM meter_hourly") == 40 * 24
    assert await db.fetchval("SELECT count(*) FROM vehicle_hourly") == 40 * 24
    await assert_rollups_match_raw(db)
    newest = end - timedelta(minutes=1)
    assert await db.fetchval("SELECT count(*) FROM meter_current WHERE ts = $1", newest) == 40
    assert await db.fetchval("SELECT count(*) FROM vehicle_current WHERE ts = $1", newest) == 40

    # The same model published through MQTT would carry exactly these sums.
    fleet = Fleet(config)
    truth = Truth(fleet)
    injector = FaultInjector(FaultConfig(), 5, truth, 80)
    for _ts, msgs in fleet.ticks(start, end):
        injector.apply(msgs)
    rows = await db.fetch(
        "SELECT vehicle_id, sum(kwh_sum) AS k FROM vehicle_hourly GROUP BY 1 ORDER BY 1"
    )
    assert [str(r["k"]) for r in rows] == [kwh_text(truth.vehicle_total(j)) for j in range(40)]

    with pytest.raises(ValueError, match="not empty"):
        await backfill_direct(database_url, config, start, end)


async def test_backfill_direct_in_ingest_order_stores_the_same_rows_and_rollups(
    database_url: str, db: asyncpg.Connection
) -> None:
    """ingest_order (each minute one flush through the rollup statements, as fleetd writes)
    stores what the COPY build stores: the same readings, every rollup level equal to its raw
    rows; across a midnight and a 4-hour boundary, from mid-hour."""
    config = FleetConfig(meters=30, vehicles=30, seed=7)
    end = datetime(2026, 11, 2, 1, 42, 30, tzinfo=UTC)
    start = end - timedelta(hours=3)
    summary = await backfill_direct(database_url, config, start, end, ingest_order=True)
    assert summary.meter_rows == summary.vehicle_rows > 30 * 170
    assert await db.fetchval("SELECT count(*) FROM vehicle_readings") == summary.vehicle_rows
    await assert_rollups_match_raw(db)
    digest = "SELECT md5(string_agg(r::text, ',' ORDER BY r::text)) FROM {} r"
    ingest = [await db.fetchval(digest.format(t)) for t in ("meter_readings", "vehicle_readings")]
    current = await db.fetch("SELECT vehicle_id, ts, soc FROM vehicle_current ORDER BY 1")
    await db.execute("TRUNCATE meter_readings, vehicle_readings, vehicle_meter_assignments")
    await db.execute("TRUNCATE meter_current, vehicle_current")
    for table in rollup_tables():
        await db.execute(f"TRUNCATE {table}")
    await backfill_direct(database_url, config, start, end)
    assert [
        await db.fetchval(digest.format(t)) for t in ("meter_readings", "vehicle_readings")
    ] == (ingest)
    assert await db.fetch("SELECT vehicle_id, ts, soc FROM vehicle_current ORDER BY 1") == current


async def test_backfill_direct_in_ingest_order_folds_as_buckets_close(
    database_url: str, db: asyncpg.Connection
) -> None:
    """With the watermarks at the range's start (a fleetd running since before it), the ticks
    write history only and the levels are folded as each 10-minute bucket closes: every level
    equals its raw rows, the watermarks past the range."""
    config = FleetConfig(meters=8, vehicles=8, seed=5)
    end = datetime(2026, 11, 3, 4, 42, 30, tzinfo=UTC)
    start = end - timedelta(hours=1, minutes=10)
    for level in LEVELS:
        await db.execute(
            f"UPDATE fleet_rollup_folded SET folded_to = {level.bucket('$1::timestamptz')}"
            " WHERE level = $2",
            start,
            level.name,
        )
    await backfill_direct(database_url, config, start, end, ingest_order=True)
    await assert_rollups_match_raw(db)
    assert (await marks(db))["4h"] >= end


async def test_backfill_direct_in_ingest_order_waits_for_a_fold_and_feeds_what_it_passed(
    database_url: str, db: asyncpg.Connection
) -> None:
    """Each tick takes the fold's lock (shared) and reads the watermarks after it, as fleetd's
    flushes: a tick committed in the middle of a fold that passes its buckets would be in no
    rollup of them."""
    config = FleetConfig(meters=5, vehicles=5, seed=3)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(minutes=5)
    for level in LEVELS:  # the range after every watermark, as on a live database
        await db.execute(
            f"UPDATE fleet_rollup_folded SET folded_to = {level.bucket('$1::timestamptz')}"
            " WHERE level = $2",
            start - timedelta(hours=4),
            level.name,
        )
    folder = await asyncpg.connect(database_url)
    try:
        async with folder.transaction():
            await folder.execute(LOCK_EXCLUSIVE)
            task = asyncio.create_task(
                backfill_direct(database_url, config, start, end, ingest_order=True)
            )
            for _ in range(200):
                waiting = await db.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE l.locktype = 'advisory' AND NOT l.granted"
                    " AND a.application_name = 'fleet-sim-direct'"
                )
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the backfill's ticks never waited for the fold"
            assert await db.fetchval("SELECT count(*) FROM meter_readings") == 0
            # The fold passes the whole range (it holds nothing of it yet).
            while (await fold(folder, end + timedelta(hours=4), timedelta(0))).spans:
                pass
            assert (await marks(folder))["10min"] > end
        await task
    finally:
        await folder.close()
    assert await db.fetchval("SELECT count(*) FROM meter_readings") > 0
    await assert_rollups_match_raw(db)
