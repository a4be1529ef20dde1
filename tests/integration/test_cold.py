"""The cold tier on real PostgreSQL: every report identical before and after compaction, late
readings stored and counted exactly once, kill -9 at any point of a compaction, least-privilege
logins (fleetd's maintenance compacts as fleet_ingest)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from fleetctl.admin.assignments import assign
from fleetctl.analytics import (
    anomalies,
    current,
    fleet_report,
    unit_energy,
    vehicle_performance,
)
from fleetctl.analytics.energy import fleet_vehicles
from fleetctl.analytics.units import fleet_spans
from fleetctl.analytics.window import Window
from fleetd.maintenance import compact_days
from fleetd.settings import Settings
from fleetdb.cold import compact
from fleetdb.cold import groups as groups_module
from fleetdb.cold.groups import LEGACY_GROUPS, choose_groups, day_readings
from fleetdb.connect import connect, connect_analytics
from fleetdb.ingest.messages import MeterReading, VehicleReading
from fleetdb.ingest.writer import write_batch
from fleetdb.retention import HISTORY, ROLLUPS, drop_older_than
from fleetsim.direct import backfill_direct
from fleetsim.model import FleetConfig
from tests.conftest import fresh_database

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
D1 = TODAY - timedelta(days=6)
D2 = D1 + timedelta(days=1)
D3 = D2 + timedelta(days=1)
MIN = timedelta(minutes=1)

WINDOWS = [
    Window(D1 + timedelta(hours=10, minutes=17, seconds=30), D1 + timedelta(hours=15, minutes=42)),
    Window(D1 + timedelta(hours=20, minutes=13), D2 + timedelta(hours=3, minutes=47)),
    Window(D2 + timedelta(hours=21, minutes=30), D3 + timedelta(hours=2, minutes=10)),
    Window(D1 + timedelta(hours=8), D2 + timedelta(hours=8)),
    Window(D1 + timedelta(hours=9, minutes=5, seconds=5), D2 + timedelta(hours=9, minutes=5)),
    Window(D2, D3),
    Window(D1 + timedelta(hours=13, minutes=20), D1 + timedelta(hours=13, minutes=50)),
]
VEHICLES = ["VEHICLE-00001", "VEHICLE-00004", "VEHICLE-00007", "J1", "J2", "R1"]


def _stable(x: Any) -> Any:
    """A report without what depends on the clock: data age, seconds since seen, the time of
    the answer and of the write (updatedAt)."""
    if isinstance(x, dict):
        return {
            k: _stable(v)
            for k, v in x.items()
            if not k.endswith("Seconds") and k not in {"asOf", "generatedAt", "updatedAt"}
        }
    if isinstance(x, list):
        return [_stable(v) for v in x]
    return x


async def reports(url: str, vehicles: list[str] = VEHICLES) -> str:
    """Every report over every window, as one JSON text."""
    conn = await connect_analytics(url)
    try:
        out: dict[str, Any] = {}
        for i, w in enumerate(WINDOWS):
            out[f"fleet{i}"] = await fleet_report(conn, w)
            out[f"anomalies{i}"] = await anomalies(conn, w)
            for v in vehicles:
                out[f"{v}@{i}"] = await vehicle_performance(conn, v, w)
        out["current"] = await current(conn, "all")
        return json.dumps(_stable(out), sort_keys=True, default=str)
    finally:
        await conn.close()


def _irregular() -> tuple[
    list[tuple[MeterReading, datetime]], list[tuple[VehicleReading, datetime]]
]:
    """Jittered seconds, a gap across midnight, a reading on the very midnight, and J2 sharing
    meter JM with J1; R1 moves from meter RA to RB at D2 02:00 (set by _assign)."""
    m: list[tuple[MeterReading, datetime]] = []
    v: list[tuple[VehicleReading, datetime]] = []
    t = D1 + timedelta(hours=18, seconds=37)
    i = 0
    while t < D3 + timedelta(hours=6):
        gap = D1 + timedelta(hours=23, minutes=10) <= t < D2 + timedelta(minutes=40)
        if not gap:
            soc, temp = 20 + (i * 7) % 61 + 0.25, -3.5 + (i * 13) % 23 * 0.1
            v.append((VehicleReading("J1", t, soc, 0.5 + i % 3 * 0.123456, temp), t))
            v.append((VehicleReading("J2", t + timedelta(seconds=11), soc + 1, 0.25, temp), t))
            m.append((MeterReading("JM", t, 1.1 + i % 5 * 0.000001, 229.9), t))
        v.append((VehicleReading("R1", t, 55.5, 0.3, 21.0), t))
        m.append((MeterReading("RA" if t < D2 + timedelta(hours=2) else "RB", t, 0.4, 231.2), t))
        t += MIN
        i += 1
    v.append((VehicleReading("J1", D2, 33.0, 0.7, 18.25), D2))
    return m, v


async def _load(url: str, *, late: bool = False) -> None:
    """The simulator's fleet (2 vehicles per meter: shared meters) plus the irregular devices,
    every batch written twice (a redelivery stores nothing)."""
    if not late:
        cfg = FleetConfig(meters=8, vehicles=16, vehicles_per_meter=2, seed=3)
        await backfill_direct(url, cfg, D1 + timedelta(hours=7), D3 + timedelta(hours=6))
    conn = await connect(url)
    try:
        for vid, meter, at in (
            ("J1", "JM", D1),
            ("J2", "JM", D1),
            ("R1", "RA", D1),
            ("R1", "RB", D2 + timedelta(hours=2)),
        ):
            await assign(conn, vid, meter, at)
        m, v = _irregular()
        for _ in range(2):
            for lo in range(0, max(len(m), len(v)), 700):
                await write_batch(conn, m[lo : lo + 700], v[lo : lo + 700], [])
    finally:
        await conn.close()


@pytest.fixture
async def twin_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A second fresh database, to hold the same data without compaction."""
    async with fresh_database(pg_admin_url, template_db, f"fleet_twin{os.getpid()}") as url:
        yield url


async def _compact(url: str, before: date) -> compact.Progress:
    conn = await connect(url)
    try:
        return await compact.run(conn, before)
    finally:
        await conn.close()


# How D1 and D2 are grouped: as sized for the test's small fleet (one group), a count recorded
# before compaction (several groups of a few devices), or as the version before wrote them (64
# groups, no row in fleet_cold_groups: compacted with 64 recorded, the rows then deleted).
LAYOUTS = ["sized", "groups4", "legacy"]


async def _compact_as(url: str, owner_url: str, layout: str) -> compact.Progress:
    """_compact(url, D3) of D1 and D2 in `layout`."""
    fixed = {"groups4": 4, "legacy": LEGACY_GROUPS}.get(layout)
    async with _conn(owner_url) as db:
        if fixed:
            await db.execute(
                """INSERT INTO fleet_cold_groups (day, kind, groups)
                   SELECT d, k, $2 FROM unnest($1::date[]) d,
                          unnest(ARRAY['meter', 'vehicle']) k""",
                [D1.date(), D2.date()],
                fixed,
            )
        done = await _compact(url, D3.date())
        groups = await db.fetch("SELECT DISTINCT groups FROM fleet_cold_groups")
        assert [r[0] for r in groups] == [fixed or 1]
        if layout == "legacy":
            await db.execute("DELETE FROM fleet_cold_groups")
            # A run of the version before left blocks without a row: resumed in its layout.
            assert await choose_groups(db, "meter", D1.date()) == LEGACY_GROUPS
            await db.execute("DELETE FROM fleet_cold_groups")
    return done


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_reports_identical_after_compaction(
    database_url: str, ingest_url: str, analytics_url: str, layout: str
) -> None:
    await _load(database_url)
    before = await reports(analytics_url)
    assert before == await reports(analytics_url)  # nothing in it depends on the clock
    # As fleetd's maintenance: fleet_ingest.
    done = await _compact_as(ingest_url, database_url, layout)
    assert done.days_done == [D1.date(), D2.date()]
    assert await reports(analytics_url) == before
    async with _conn(database_url) as db:
        states = dict(await db.fetch("SELECT day, state FROM fleet_days ORDER BY day"))
        assert states[D1.date()] == states[D2.date()] == "compacted"
        assert states[D3.date()] == "open"
        assert await db.fetchval("SELECT to_regclass($1)", f"meter_readings_p{D1:%Y%m%d}") is None
        assert await db.fetchval("SELECT to_regclass($1)", f"vehicle_10min_p{D2:%Y%m%d}") is None
    # A second run has nothing to do.
    again = await _compact(ingest_url, D3.date())
    assert again.days_done == []
    assert again.readings == 0


async def test_a_fleet_assigned_inside_the_window_reports_alike_on_compacted_days(
    database_url: str, analytics_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each vehicle alone on its meter, assigned when its data starts or 2 h later: windows
    from before that take the 1:1 spans on common bounds by the fleet-wide path
    (FleetSpans.single), but for vehicles with readings before their span. On compacted days
    too: the vehicles' aggregates carry their first and last timestamps there as well (the
    same as on open days). The same reports before and after compaction, and the same as the
    general path's throughout."""
    start = D1 + timedelta(hours=7, minutes=42, seconds=30)
    cfg = FleetConfig(meters=6, vehicles=6, seed=5, sleep_vehicles=2)
    await backfill_direct(database_url, cfg, start, D3 + timedelta(hours=6))
    async with _conn(database_url) as db:  # half of them assigned 2 h after their first readings
        moved = await db.execute(
            """UPDATE vehicle_meter_assignments SET valid_from = valid_from + interval '2 hours'
                WHERE vehicle_id IN (SELECT vehicle_id FROM vehicle_meter_assignments
                                      ORDER BY vehicle_id LIMIT 3)"""
        )
        assert moved == "UPDATE 3"
    windows = [
        Window(start - timedelta(hours=6), start + timedelta(hours=18)),
        Window(D1 + timedelta(hours=5), D1 + timedelta(hours=13, minutes=7)),
        Window(start - timedelta(minutes=1), D3 + timedelta(hours=2, minutes=30)),
    ]

    async def both_paths() -> list[str]:
        out = []
        conn = await connect_analytics(analytics_url)
        try:
            for span_min in (1, 10**9):
                monkeypatch.setattr(unit_energy, "FLEET_SPAN_MIN", span_min)
                reports = [_stable(await fleet_report(conn, w)) for w in windows]
                out.append(json.dumps(reports, sort_keys=True))
            spans = await fleet_spans(conn, windows[0], common=1)
            later = start + timedelta(hours=2)
            assert [len(spans.single[t, windows[0].end]) for t in (start, later)] == [3, 3]
            for w in windows:  # what decides between the 1:1 path and the general one
                own = await fleet_vehicles(conn, w.start, w.end, timedelta(seconds=60))
                out.append(
                    repr(sorted((v, st.dc_u, st.first_ts, st.last_ts) for v, st in own.items()))
                )
        finally:
            await conn.close()
        return out

    open_days = await both_paths()
    assert open_days[0] == open_days[1]
    assert "None" not in "".join(open_days[2:])
    done = await _compact(database_url, D3.date())
    assert done.days_done == [D1.date(), D2.date()]
    assert await both_paths() == open_days


@asynccontextmanager
async def _conn(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(url)
    try:
        yield conn
    finally:
        await conn.close()


def _late() -> tuple[list[tuple[MeterReading, datetime]], list[tuple[VehicleReading, datetime]]]:
    """Readings a device uploads days later: inside the gap J1/J2/JM left in D1, and a stray
    second-resolution reading in a full hour of a simulated vehicle."""
    m, v = [], []
    for k in range(5):
        t = D1 + timedelta(hours=23, minutes=20 + k, seconds=37)
        v.append((VehicleReading("J1", t, 40.0 + k, 0.9, 12.5 + k), t))
        m.append((MeterReading("JM", t, 1.3, 230.5), t))
    t = D1 + timedelta(hours=12, minutes=3, seconds=30)
    v.append((VehicleReading("VEHICLE-00004", t, 61.25, 0.011, 30.5), t))
    return m, v


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_late_readings_counted_once_and_merged(
    database_url: str, ingest_url: str, analytics_url: str, twin_url: str, layout: str
) -> None:
    late_m, late_v = _late()
    # The truth: the same readings, never compacted.
    await _load(twin_url)
    async with _conn(twin_url) as twin:
        await write_batch(twin, late_m, late_v, [])
    truth = await reports(twin_url)

    await _load(database_url)
    await _compact_as(ingest_url, database_url, layout)
    async with _conn(ingest_url) as fleetd:
        # A redelivery of a compacted reading stores nothing.
        old_v = VehicleReading("J1", D2, 33.0, 0.7, 18.25)
        r = await write_batch(fleetd, [], [(old_v, D2)], [])
        assert (r.vehicles_inserted, r.duplicates) == (0, 1)
        # The same key with another value: a conflict against the day's block.
        other_v = VehicleReading("J1", D2, 33.5, 0.7, 18.25)
        r = await write_batch(fleetd, [], [(other_v, D2)], [])
        assert (r.vehicles_inserted, r.vehicle_conflicts, r.duplicates) == (0, 1, 0)
        r = await write_batch(fleetd, late_m, late_v, [])
        assert r.inserted == len(late_m) + len(late_v)
        assert await fleetd.fetchval("SELECT count(*) FROM vehicle_late") == len(late_v)
        r = await write_batch(fleetd, late_m, late_v, [])  # uploaded twice
        assert (r.inserted, r.conflicts) == (0, 0)
        # ... and once corrected: a conflict against the late table.
        fixed = MeterReading("JM", late_m[0][0].ts, 1.4, 230.5)
        r = await write_batch(fleetd, [(fixed, D2)], [], [])
        assert (r.inserted, r.meter_conflicts) == (0, 1)
    async with _conn(database_url) as owner:
        stored = await owner.fetch("SELECT stored FROM rejected_messages ORDER BY id")
        assert [json.loads(s["stored"]) for s in stored] == [
            {"soc": 33.0, "kwhDeliveredDc": 0.7, "batteryTemp": 18.25},
            {"kwhConsumedAc": 1.3, "voltage": 230.5},
        ]
    assert await reports(analytics_url) == truth  # counted from the moment they commit

    done = await _compact(ingest_url, D3.date())  # the merge
    assert done.late_merged == len(late_m) + len(late_v)
    async with _conn(ingest_url) as fleetd:
        assert await fleetd.fetchval("SELECT count(*) FROM vehicle_late") == 0
        r = await write_batch(fleetd, late_m, late_v, [])  # and once more, after the merge
        assert r.inserted == 0
    assert await reports(analytics_url) == truth


def _fleetctl(url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLEET_DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "fleetctl", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


_DAY_LOCK = """
SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock'
                  AND granted AND objsubid = 2
                  AND classid::bigint = hashtext('fleet_day')::bigint & 4294967295)"""


async def _kill_when(db: asyncpg.Connection, url: str, sql: str, *args: Any) -> bool:
    """Start `fleetctl compact`, SIGKILL it as soon as `sql` is true; False if it finished
    first."""
    proc = _fleetctl(url, "compact", "--before", D3.date().isoformat())
    try:
        while proc.poll() is None:
            if await db.fetchval(sql, *args):
                proc.send_signal(signal.SIGKILL)
                return True
            await asyncio.sleep(0.005)
        return False
    finally:
        proc.communicate()


async def test_kill_9_during_compaction_and_merge_loses_nothing(
    database_url: str, ingest_url: str, analytics_url: str
) -> None:
    cfg = FleetConfig(meters=150, vehicles=150, seed=9)
    await backfill_direct(database_url, cfg, D1, D3)
    sims = ["VEHICLE-00001", "VEHICLE-00004", "VEHICLE-00150"]
    before = await reports(analytics_url, sims)
    cold = "SELECT count(*) >= $1 FROM (SELECT DISTINCT day, hour FROM vehicle_cold) h"
    async with _conn(database_url) as db:
        # Killed just after the day turned `compacting`, after some hours of blocks, in the
        # second day, and as the second day turns `compacted` (its drop not done).
        points: list[tuple[str, tuple[Any, ...]]] = [
            ("SELECT state = 'compacting' FROM fleet_days WHERE day = $1", (D1.date(),)),
            (cold, (7,)),
            (cold, (30,)),
            ("SELECT state = 'compacted' FROM fleet_days WHERE day = $1", (D2.date(),)),
        ]
        for sql, args in points:
            assert await _kill_when(db, ingest_url, sql, *args), sql
            assert await reports(analytics_url, sims) == before
        proc = _fleetctl(ingest_url, "compact", "--before", D3.date().isoformat())
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        assert await reports(analytics_url, sims) == before

        # Late readings (half a minute off stored ones, in an edge hour and a whole hour of the
        # windows, for every device), then a merge killed while it holds the day: rolled back,
        # then done by the next run.
        m: list[tuple[MeterReading, datetime]] = []
        v: list[tuple[VehicleReading, datetime]] = []
        for i in range(1, 151):
            for k in range(60):
                t = D1 + timedelta(hours=10 + 2 * (k % 2), minutes=k // 2 * 2, seconds=30)
                m.append((MeterReading(f"METER-{i:05d}", t, 0.002, 230.0), t))
                v.append((VehicleReading(f"VEHICLE-{i:05d}", t, 50.5, 0.001, 20.5), t))
        async with _conn(ingest_url) as fleetd:
            for lo in range(0, len(m), 3000):
                await write_batch(fleetd, m[lo : lo + 3000], v[lo : lo + 3000], [])
        with_late = await reports(analytics_url, sims)
        assert with_late != before
        assert await _kill_when(db, ingest_url, _DAY_LOCK)
        assert await db.fetchval("SELECT count(*) FROM vehicle_late") == len(v)
        assert await reports(analytics_url, sims) == with_late
        proc = _fleetctl(ingest_url, "--json", "compact", "--before", D3.date().isoformat())
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert json.loads(out)["lateMerged"] == len(m) + len(v)
        assert await reports(analytics_url, sims) == with_late
        assert await db.fetchval("SELECT count(*) FROM vehicle_late") == 0
        assert await db.fetchval("SELECT count(*) FROM meter_late") == 0


async def test_storage_reports_bytes_per_reading(database_url: str, analytics_url: str) -> None:
    await backfill_direct(database_url, FleetConfig(meters=60, vehicles=60, seed=4), D1, D3)
    await _compact(database_url, D2.date())
    proc = _fleetctl(analytics_url, "--json", "storage")
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    rows = {(r["day"], r["kind"]): r for r in json.loads(out)}
    cold = rows[(D1.date().isoformat(), "vehicle")]
    hot = rows[(D2.date().isoformat(), "vehicle")]
    assert (cold["state"], hot["state"]) == ("compacted", "open")
    assert cold["readings"] == hot["readings"] == 60 * 1440
    assert cold["bytesPerReading"] < hot["bytesPerReading"] / 10
    # Issue 27: one group for a fleet this small (64 groups made blocks of one device: 7 B).
    for kind in ("meter", "vehicle"):
        assert rows[(D1.date().isoformat(), kind)]["bytesPerReading"] <= 6


async def test_fleetd_maintenance_compacts_as_fleet_ingest(
    database_url: str, settings: Settings, analytics_url: str
) -> None:
    """The hourly step runs a child process as fleetd's own (fleet_ingest) login."""
    await backfill_direct(database_url, FleetConfig(meters=5, vehicles=5, seed=2), D1, D2)
    before = await reports(analytics_url, ["VEHICLE-00001"])
    await compact_days(settings.model_copy(update={"compact_after_days": 2}))
    async with _conn(database_url) as db:
        assert await db.fetchval("SELECT state FROM fleet_days WHERE day = $1", D1.date()) == (
            "compacted"
        )
    assert await reports(analytics_url, ["VEHICLE-00001"]) == before


async def test_retention_drops_compacted_days(database_url: str) -> None:
    await backfill_direct(database_url, FleetConfig(meters=3, vehicles=3, seed=1), D1, D3)
    await _compact(database_url, D3.date())
    async with _conn(database_url) as db:
        t = D1 + timedelta(hours=1, seconds=5)
        await write_batch(db, [(MeterReading("METER-00001", t, 0.5, 230.0), t)], [], [])
        today = D2.date() + timedelta(days=1)  # D1 is more than one day old, D2 is not
        dropped = await drop_older_than(db, 1, HISTORY, today=today)
        assert dropped == [f"meter_cold_p{D1:%Y%m%d}", f"vehicle_cold_p{D1:%Y%m%d}"]
        assert await db.fetchval("SELECT count(*) FROM meter_late") == 0
        dropped = await drop_older_than(db, 1, ROLLUPS, today=today)
        assert sorted(dropped) == [
            f"meter_cold_hours_p{D1:%Y%m%d}",
            f"vehicle_cold_hours_p{D1:%Y%m%d}",
        ]
        assert await db.fetchval("SELECT count(*) FROM vehicle_cold WHERE day = $1", D2.date())


async def test_a_day_whose_rollups_do_not_cover_it_is_sized_from_its_raw_readings(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compaction sizes a day's groups from its hourly rollups. Where they miss hours (not
    # complete that far yet) or the whole day (rollup retention dropped it), the raw history
    # counts those hours: the day is not taken for empty and written in one group.
    m = [
        (MeterReading(f"M{d}", t, 0.5, 230.0), t)
        for d in range(10)
        for t in (D1 + k * 5 * MIN for k in range(288))
    ]
    async with _conn(database_url) as db:
        await db.fetchval("SELECT fleet_ensure_day($1)", D1.date())
        for lo in range(0, len(m), 700):
            await write_batch(db, m[lo : lo + 700], [], [])
        assert await day_readings(db, "meter", D1.date()) == 2880
        await db.execute(
            "DELETE FROM meter_hourly WHERE hour >= $1 AND hour < $2",
            D1 + timedelta(hours=18),
            D2,
        )
        assert await day_readings(db, "meter", D1.date()) == 2880
        await db.execute("DELETE FROM meter_hourly WHERE hour >= $1 AND hour < $2", D1, D2)
        assert await day_readings(db, "meter", D1.date()) == 2880
        # At blocks of 10 readings, 2,880 a day are 12 an hour: 16 groups, not 1.
        monkeypatch.setattr(groups_module, "READINGS_PER_BLOCK", 10)
        assert await choose_groups(db, "meter", D1.date()) == 16
        assert await day_readings(db, "vehicle", D1.date()) == 0  # nothing anywhere: empty
