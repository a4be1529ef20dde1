"""Folding the rollup levels (fleetdb.fold, issue 27): ingest adds only readings of folded
buckets to a level, the fold aggregates the others later; every reading counts once per level,
a late reading after a fold included, and a fold killed half-way leaves nothing behind.
Written as fleetd writes (a fleet_ingest login)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from fleetctl.analytics.energy import fleet_energy
from fleetd.settings import Settings
from fleetdb.connect import connect
from fleetdb.fold import LOCK_EXCLUSIVE, FoldRefusedError, fold, fold_until, marks
from fleetdb.ingest.messages import MeterReading, VehicleReading
from fleetdb.ingest.writer import write_batch
from fleetdb.retention import drop_older_than
from fleetdb.rollups import LEVELS
from tests.conftest import assert_rollups_match_raw, running

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def ingest(ingest_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(ingest_url)
    for d in {(NOW - timedelta(days=1)).date(), NOW.date(), (NOW + timedelta(days=1)).date()}:
        await conn.execute("SELECT fleet_ensure_day($1)", d)
    try:
        yield conn
    finally:
        await conn.close()


async def _set_marks(db: asyncpg.Connection, to: datetime) -> None:
    """Every level's watermark at `to`'s bucket (as if folded there long ago)."""
    for level in LEVELS:
        await db.execute(
            f"UPDATE fleet_rollup_folded SET folded_to = {level.bucket('$1::timestamptz')}"
            " WHERE level = $2",
            to,
            level.name,
        )


def _readings(t0: datetime, n: int, kwh: float = 0.5) -> tuple[list[object], list[object]]:
    meters = [
        (MeterReading(f"M-{i % 3}", t0 + timedelta(minutes=i), kwh, 230.0), NOW) for i in range(n)
    ]
    vehicles = [
        (
            VehicleReading(
                f"V-{i % 3}", t0 + timedelta(minutes=i), 40.0 + i % 7, kwh, 20.0 + i % 5
            ),
            NOW,
        )
        for i in range(n)
    ]
    return meters, vehicles


async def _raw_kwh(db: asyncpg.Connection) -> Decimal:
    return Decimal(
        await db.fetchval("SELECT coalesce(sum(kwh_consumed_ac), 0) FROM meter_readings")
    )


async def _report_kwh(db: asyncpg.Connection, start: datetime, end: datetime) -> Decimal:
    async with db.transaction(isolation="repeatable_read", readonly=True):
        got = await fleet_energy(db, "meter", start, end)
    return sum((Decimal(k).scaleb(-6) for k, _ in got.values()), Decimal(0))


async def _repeatable_read_by_default(url: str, name: str) -> asyncpg.Connection:
    """A login whose transactions default to REPEATABLE READ, as after `ALTER ROLE ... SET
    default_transaction_isolation = 'repeatable read'` by an operator."""
    conn = await connect(url, application_name=name)
    await conn.execute("SET default_transaction_isolation = 'repeatable read'")
    return conn


async def _wait_for_fold_lock(db: asyncpg.Connection, name: str) -> None:
    """Until the session `name` waits for the fold's advisory lock."""
    for _ in range(200):
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = $1",
            name,
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never waited for the fold lock")


async def test_a_flush_waiting_for_a_fold_reads_its_watermarks_under_repeatable_read_default(
    db: asyncpg.Connection, ingest: asyncpg.Connection, ingest_url: str
) -> None:
    # The flush's snapshot must come after the lock: a REPEATABLE READ default would take it
    # at the lock statement, before the fold committed, and its readings of the buckets the
    # fold just passed would be in no rollup.
    t0 = (NOW - timedelta(hours=2)).replace(minute=0, second=0)
    await _set_marks(db, t0)
    await write_batch(ingest, *_readings(t0, 60), [])
    flusher = await _repeatable_read_by_default(ingest_url, "tests-flush")
    folder = await connect(ingest_url, application_name="tests-fold")
    try:
        async with folder.transaction():
            await folder.execute(LOCK_EXCLUSIVE)
            late = asyncio.create_task(
                write_batch(flusher, *_readings(t0 + timedelta(seconds=30), 20, kwh=0.25), [])
            )
            await _wait_for_fold_lock(db, "tests-flush")
            done = await fold(folder, NOW, timedelta(minutes=2))
            assert done.spans["10min"][1] > t0 + timedelta(minutes=20)
        assert (await late).inserted == 40
    finally:
        await flusher.close()
        await folder.close()
    await assert_rollups_match_raw(db)
    assert await _report_kwh(db, t0, NOW) == await _raw_kwh(db) == Decimal("35")


async def test_a_fold_waiting_for_a_flush_sees_its_readings_under_repeatable_read_default(
    db: asyncpg.Connection, ingest: asyncpg.Connection, ingest_url: str
) -> None:
    # The fold's aggregate must see every flush committed while it waited for the lock; under
    # a REPEATABLE READ default its snapshot would be the lock statement's.
    t0 = (NOW - timedelta(hours=2)).replace(minute=0, second=0)
    await _set_marks(db, t0)
    folder = await _repeatable_read_by_default(ingest_url, "tests-fold")
    try:
        async with ingest.transaction():
            # A flush in progress: shared lock held, its readings after every watermark.
            r = await write_batch(ingest, *_readings(t0, 60), [])
            assert r.inserted == 120
            folding = asyncio.create_task(fold(folder, NOW, timedelta(minutes=2)))
            await _wait_for_fold_lock(db, "tests-fold")
        assert (await folding).spans["10min"] == (t0, t0 + timedelta(hours=1))
    finally:
        await folder.close()
    await assert_rollups_match_raw(db)
    assert await _report_kwh(db, t0, NOW) == await _raw_kwh(db) == Decimal("30")


async def test_a_fold_without_every_kind_the_database_holds_moves_no_watermark(
    db: asyncpg.Connection, ingest: asyncpg.Connection
) -> None:
    # The watermarks are every kind's: a fold given only the built-in kinds while the
    # database holds a third (fleetd given a kind of its own, compaction or python -m
    # fleetdb.fold with the registry's) would move them past that kind's unfolded buckets.
    t0 = (NOW - timedelta(hours=2)).replace(minute=0, second=0)
    await _set_marks(db, t0)
    await write_batch(ingest, *_readings(t0, 60), [])
    await db.execute("INSERT INTO fleet_kinds (name) VALUES ('battery')")
    before = await marks(db)
    with pytest.raises(FoldRefusedError, match="battery"):
        await fold(ingest, NOW, timedelta(minutes=2))
    assert await marks(db) == before
    assert await _report_kwh(db, t0, NOW) == await _raw_kwh(db) == Decimal("30")


async def test_retention_keeps_the_raw_history_of_days_not_folded_yet(
    db: asyncpg.Connection, ingest: asyncpg.Connection
) -> None:
    # A fold stuck for days (failing, refused, fleetd stopped): after the watermarks the
    # reports and the next fold read raw rows, which retention must not drop.
    today = NOW.replace(hour=0, minute=0, second=0)
    await _set_marks(db, today - timedelta(days=3))
    old, recent = today - timedelta(days=5), today - timedelta(days=2)
    for t in (old, recent):
        await db.execute("SELECT fleet_ensure_day($1)", t.date())
        await write_batch(ingest, *_readings(t, 10), [])
    dropped = await drop_older_than(db, 1)
    assert f"meter_readings_p{old:%Y%m%d}" in dropped
    assert not any(f"{recent:%Y%m%d}" in name for name in dropped)
    assert await _report_kwh(db, recent, NOW) == await _raw_kwh(db) == Decimal("5")
    await fold_until(ingest, NOW)
    await drop_older_than(db, 1)
    assert await _raw_kwh(db) == 0
    assert await _report_kwh(db, recent, NOW) == Decimal("5")  # from the rollups


async def test_ingest_leaves_unfolded_buckets_to_the_fold_and_adds_late_readings_once(
    db: asyncpg.Connection, ingest: asyncpg.Connection
) -> None:
    t0 = (NOW - timedelta(hours=5)).replace(minute=0, second=0)
    await _set_marks(db, t0)
    meters, vehicles = _readings(t0, 300)  # 5 h, after every watermark
    r = await write_batch(ingest, meters, vehicles, [])
    assert r.inserted == 600
    for level in LEVELS:  # nothing folded yet: the hot path wrote no rollup row
        assert await db.fetchval(f"SELECT count(*) FROM {level.table('meter')}") == 0
    # Reports read the finer levels and raw readings after each watermark: exact already.
    window = (t0 - timedelta(hours=1), NOW)
    assert await _report_kwh(db, *window) == await _raw_kwh(db) == Decimal("150")

    # One hour per transaction (MAX_SPAN): the first fold is behind, reports exact meanwhile.
    done = await fold(ingest, NOW, timedelta(minutes=2))
    assert done.behind
    assert done.spans["10min"] == (t0, t0 + timedelta(hours=1))
    assert await _report_kwh(db, *window) == Decimal("150")
    folded = await fold_until(ingest, NOW, timedelta(minutes=2))
    assert folded["10min"] >= folded["hourly"] >= folded["4h"] >= t0  # equal early in an hour
    assert folded["10min"] >= NOW - timedelta(minutes=12)
    assert not (await fold(ingest, NOW, timedelta(minutes=2))).behind
    assert await _report_kwh(db, *window) == Decimal("150")

    # Late readings into folded buckets: added at ingest, with a repeat that is a duplicate.
    late_m, late_v = _readings(t0 + timedelta(seconds=30), 60, kwh=0.25)
    r = await write_batch(ingest, late_m, late_v, [])
    assert r.inserted == 120
    r = await write_batch(ingest, late_m[:5], late_v[:5], [])
    assert (r.inserted, r.duplicates) == (0, 10)
    assert await _report_kwh(db, *window) == await _raw_kwh(db) == Decimal("165")
    # Folding again (nothing due, then everything) counts nothing twice.
    await fold(ingest, NOW, timedelta(minutes=2))
    await assert_rollups_match_raw(db)
    assert await _report_kwh(db, *window) == Decimal("165")


async def test_a_fold_killed_half_way_leaves_nothing_and_the_next_one_is_exact(
    db: asyncpg.Connection, ingest: asyncpg.Connection, ingest_url: str
) -> None:
    t0 = (NOW - timedelta(hours=3)).replace(minute=0, second=0)
    await _set_marks(db, t0)
    meters, vehicles = _readings(t0, 120)
    await write_batch(ingest, meters, vehicles, [])
    before = await marks(db)
    # A vehicle row of the first folded bucket, inserted and not committed: the fold writes
    # the meters' 10-minute rows, then waits on that key, and is killed (SIGKILL) there.
    blocker = await connect(ingest_url)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute(
        "INSERT INTO vehicle_10min (vehicle_id, bucket, kwh_sum, readings, temp_sum, temp_min,"
        " temp_max, soc_first, soc_first_ts, soc_last, soc_last_ts)"
        " VALUES ('V-0', $1, 0, 1, 0, 0, 0, 0, $1, 0, $1)",
        t0,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetdb.fold",
        env={**os.environ, "FLEET_DATABASE_URL": ingest_url},
    )
    try:
        for _ in range(200):
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fleetd-fold'"
                " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO vehicle_10min%'"
            )
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert waiting, "the fold never reached the vehicles' 10-minute rows"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        await tx.rollback()
        await blocker.close()
    # Its backend gives up once it finds the client gone: nothing of the fold committed.
    for _ in range(200):
        alive = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fleetd-fold'"
        )
        if not alive:
            break
        await asyncio.sleep(0.05)
    assert await marks(db) == before
    assert await db.fetchval("SELECT count(*) FROM meter_10min") == 0
    window = (t0, NOW)
    assert await _report_kwh(db, *window) == Decimal("60")

    await fold(ingest, NOW, timedelta(minutes=2))
    assert (await marks(db))["10min"] > before["10min"]
    await assert_rollups_match_raw(db)
    assert await _report_kwh(db, *window) == Decimal("60")


async def test_fleetd_folds_in_the_background_and_stops_with_its_task(
    db: asyncpg.Connection, settings: Settings
) -> None:
    await _set_marks(db, NOW - timedelta(hours=2))
    before = await marks(db)
    quick = settings.model_copy(update={"fold_interval_s": 0.2, "fold_grace_s": 0.0})
    caught_up = NOW.replace(minute=NOW.minute // 10 * 10, second=0)
    async with running(quick) as daemon:
        # Two hours behind: caught up in transactions of an hour each (MAX_SPAN).
        for _ in range(100):
            if (await marks(db))["10min"] >= caught_up:
                break
            await asyncio.sleep(0.1)
        assert daemon.folding.folds >= 2
    after = await marks(db)
    assert after["10min"] > before["10min"]
    assert after["hourly"] > before["hourly"]
    assert after["4h"] >= before["4h"]
    assert after["10min"] >= caught_up
