"""Analytics on real PostgreSQL, with data written through fleetd's own write path.

Hand-computed cases: each vehicle charges at a constant rate per minute, so every expected
figure is a product a reader can check by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from fleetctl.admin.assignments import assign, assignments
from fleetctl.analytics import (
    anomalies,
    current,
    energy,
    fleet,
    fleet_report,
    unit_energy,
    vehicle_performance,
)
from fleetctl.analytics.energy import fleet_pieces
from fleetctl.analytics.units import fleet_spans
from fleetctl.analytics.window import Window, iso
from fleetctl.errors import AssignmentConflictError, InvalidRequestError, UnknownDeviceError
from fleetdb.connect import connect_analytics, create_pool
from fleetdb.ingest.messages import MeterReading, VehicleReading
from fleetdb.ingest.writer import write_batch
from tests.conftest import assert_rollups_match_raw

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(admin_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Data goes in through fleetd's own writer and reports read it, as a deployed login does:
    fleet_admin (a member of fleet_ingest and fleet_analytics) writes the batches and the
    assignments and runs the reports; the reports as fleet_analytics alone are in test_roles,
    test_ops_http and test_fleetctl."""
    conn = await connect_analytics(admin_url)
    yield conn
    await conn.close()


T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
H = timedelta(hours=1)
W3H = Window(T0, T0 + timedelta(hours=3))


def minutes(n: int, step: int = 1, start: datetime = T0) -> list[datetime]:
    return [start + i * MIN for i in range(0, n, step)]


async def load(
    conn: asyncpg.Connection,
    meters: Iterable[tuple[str, datetime, float]] = (),
    vehicles: Iterable[tuple[str, datetime, float]] = (),
    *,
    soc: float = 50.0,
    temp: float = 25.0,
) -> None:
    m = [(MeterReading(i, ts, k, 230.0), ts) for i, ts, k in meters]
    v = [(VehicleReading(i, ts, soc, k, temp), ts) for i, ts, k in vehicles]
    days: set[date] = {ts.date() for _, ts in m} | {ts.date() for _, ts in v}
    for day in sorted(days):
        await conn.execute("SELECT fleet_ensure_day($1)", day)
    for lo in range(0, max(len(m), len(v)), 500):
        await write_batch(conn, m[lo : lo + 500], v[lo : lo + 500], [])


async def link(conn: asyncpg.Connection, vehicle: str, meter: str, at: datetime) -> None:
    await assign(conn, vehicle, meter, at)


def charging(device: str, kwh: float, times: list[datetime]) -> list[tuple[str, datetime, float]]:
    return [(device, ts, kwh) for ts in times]


async def depot(conn: asyncpg.Connection) -> None:
    """The hand-computed depot used by most tests (3 h of minute readings from T0)."""
    day_before = T0 - timedelta(days=1)
    for v, m in (("V1", "M1"), ("V2", "M2"), ("V3", "M3"), ("V5", "M6"), ("V6", "M6")):
        await link(conn, v, m, day_before)
    await link(conn, "V4", "M4", day_before)
    await link(conn, "V4", "M5", T0 + timedelta(minutes=90))
    await link(conn, "V7", "M7", day_before)
    await link(conn, "V8", "M8", day_before)
    await link(conn, "V9", "M9", day_before)
    t = minutes(180)
    meters = (
        charging("M1", 1.1, t)
        + charging("M2", 1.25, t)
        + charging("M3", 1.5, t)
        + charging("M4", 1.0, t)
        + charging("M5", 2.0, t)
        + charging("M6", 2.2, t)
        + charging("M7", 1.0, minutes(180, 2))
        + charging("M9", 0.5, t)
    )
    vehicles = (
        charging("V1", 1.0, t)
        + charging("V2", 1.0, t)
        + charging("V3", 0.9, t)
        + charging("V4", 0.9, t)
        + charging("V5", 1.0, t)
        + charging("V6", 0.9, t)
        + charging("V7", 0.9, minutes(180, 2))
        + charging("V9", 0.6, t)
    )
    await load(conn, meters, vehicles)


async def test_normal_degraded_critical(db: asyncpg.Connection) -> None:
    await depot(db)
    v1 = await vehicle_performance(db, "V1", W3H)
    assert v1["totalAcKwh"] == pytest.approx(198.0, abs=1e-9)
    assert v1["totalDcKwh"] == pytest.approx(180.0, abs=1e-9)
    assert v1["lossKwh"] == pytest.approx(18.0, abs=1e-9)
    assert v1["efficiency"] == pytest.approx(1 / 1.1, abs=1e-6)
    assert v1["status"] == "optimal"
    assert v1["meterShared"] is False
    assert v1["readings"] == {"vehicle": 180, "meter": 180}
    assert v1["expectedReadings"] == {"vehicle": 180, "meter": 180}
    assert v1["coveragePercent"] == {"vehicle": 100.0, "meter": 100.0}
    assert v1["batteryTemp"] == {"avg": 25.0, "min": 25.0, "max": 25.0}
    assert [h["acKwh"] for h in v1["hourly"]] == pytest.approx([66.0, 66.0, 66.0])
    assert v1["hourly"][0]["readings"] == {"vehicle": 60, "meter": 60}
    v2 = await vehicle_performance(db, "V2", W3H)
    assert (v2["status"], v2["efficiency"]) == ("degraded", pytest.approx(0.8))
    v3 = await vehicle_performance(db, "V3", W3H)
    assert (v3["status"], v3["efficiency"]) == ("critical", pytest.approx(0.6))
    v9 = await vehicle_performance(db, "V9", W3H)
    assert v9["status"] == "meter_error"


async def test_reassigned_mid_window_gets_both_meters(db: asyncpg.Connection) -> None:
    await depot(db)
    v4 = await vehicle_performance(db, "V4", W3H)
    # 90 min on M4 at 1.0 kWh/min, then 90 min on M5 at 2.0 kWh/min.
    assert v4["totalAcKwh"] == pytest.approx(90 * 1.0 + 90 * 2.0, abs=1e-9)
    assert v4["totalDcKwh"] == pytest.approx(180 * 0.9, abs=1e-9)
    assert [m["meterId"] for m in v4["meters"]] == ["M4", "M5"]
    assert v4["readings"]["meter"] == 180
    hour2 = v4["hourly"][1]  # 09:00-10:00: 30 min on M4, 30 min on M5
    assert hour2["acKwh"] == pytest.approx(30 * 1.0 + 30 * 2.0, abs=1e-9)


async def test_shared_meter_reports_site_efficiency(db: asyncpg.Connection) -> None:
    await depot(db)
    v5 = await vehicle_performance(db, "V5", W3H)
    assert v5["meterShared"] is True
    assert v5["sharedWith"] == ["V6"]
    assert v5["totalAcKwh"] == pytest.approx(180 * 2.2, abs=1e-9)
    assert v5["totalDcKwh"] == pytest.approx(180 * 1.9, abs=1e-9)
    assert v5["vehicleDcKwh"] == pytest.approx(180 * 1.0, abs=1e-9)
    assert v5["efficiency"] == pytest.approx(1.9 / 2.2, abs=1e-6)
    report = await fleet_report(db, W3H)
    v6 = next(r for r in report["vehicles"] if r["vehicleId"] == "V6")
    assert v6["sharedWith"] == ["V5"]
    assert v6["efficiency"] == v5["efficiency"]
    # The shared meter is billed once in the fleet totals.
    meters_ac = 180 * (1.1 + 1.25 + 1.5 + 2.2 + 0.5) + 90 * 1.0 + 90 * 2.0 + 90 * 1.0
    assert report["totals"]["totalAcKwh"] == pytest.approx(meters_ac, abs=1e-9)


async def test_gaps_lower_coverage(db: asyncpg.Connection) -> None:
    await depot(db)
    v7 = await vehicle_performance(db, "V7", W3H)
    assert v7["readings"] == {"vehicle": 90, "meter": 90}
    assert v7["coveragePercent"] == {"vehicle": 50.0, "meter": 50.0}
    assert v7["efficiency"] == pytest.approx(0.9)


async def test_no_data_and_unknown_vehicle(db: asyncpg.Connection) -> None:
    await depot(db)
    v8 = await vehicle_performance(db, "V8", W3H)
    assert v8["status"] == "insufficient_data"
    assert v8["efficiency"] is None
    assert v8["totalAcKwh"] == 0
    assert all(h["acKwh"] is None for h in v8["hourly"])
    with pytest.raises(UnknownDeviceError):
        await vehicle_performance(db, "NOPE", W3H)
    # Outside any data: a window a week earlier.
    empty = await vehicle_performance(
        db, "V1", Window(T0 - timedelta(days=7), T0 - timedelta(days=6))
    )
    assert empty["status"] == "insufficient_data"


async def _raw(
    conn: asyncpg.Connection, table: str, col: str, dev: str, key: str, w: Window
) -> Any:
    return await conn.fetchval(
        f"SELECT coalesce(sum({col}), 0) FROM {table} WHERE {key} = $1 AND ts >= $2 AND ts < $3",
        dev,
        w.start,
        w.end,
    )


async def test_window_edges_mid_hour_equal_raw_computation(db: asyncpg.Connection) -> None:
    await depot(db)
    # Irregular values so the edges matter.
    extra = [("M1", T0 + timedelta(hours=3) + i * MIN, 0.001 * (i % 7 + 1)) for i in range(60)]
    extra_v = [("V1", ts, k * 0.9) for _, ts, k in extra]
    await load(db, extra, extra_v)
    w = Window(T0 + timedelta(minutes=10, seconds=30), T0 + timedelta(hours=3, minutes=20))
    v1 = await vehicle_performance(db, "V1", w)
    ac = await _raw(db, "meter_readings", "kwh_consumed_ac", "M1", "meter_id", w)
    dc = await _raw(db, "vehicle_readings", "kwh_delivered_dc", "V1", "vehicle_id", w)
    assert Decimal(str(v1["totalAcKwh"])) == ac
    assert Decimal(str(v1["totalDcKwh"])) == dc
    assert v1["readings"]["vehicle"] == 200 - 11  # minutes 11..199
    report = await fleet_report(db, w)
    row = next(r for r in report["vehicles"] if r["vehicleId"] == "V1")
    assert row["totalAcKwh"] == v1["totalAcKwh"]


async def test_rollups_exact_when_every_message_is_delivered_twice(
    db: asyncpg.Connection,
) -> None:
    await depot(db)
    before = await fleet_report(db, W3H)
    await depot_readings_again(db)
    after = await fleet_report(db, W3H)
    for a in (before, after):  # what depends on the clock
        a.pop("generatedAt")
        a.pop("dataAgeSeconds")
    assert before == after


async def depot_readings_again(conn: asyncpg.Connection) -> None:
    t = minutes(180)
    await load(conn, charging("M1", 1.1, t), charging("V1", 1.0, t))
    await load(conn, charging("M6", 2.2, t), charging("V5", 1.0, t))


async def test_fleet_report_sorting_counts_and_anomalies(db: asyncpg.Connection) -> None:
    await depot(db)
    report = await fleet_report(db, W3H)
    ids = [r["vehicleId"] for r in report["vehicles"]]
    assert ids[0] == "V3"  # worst efficiency first
    assert ids[-1] == "V8"  # no verdict last
    counts = report["statusCounts"]
    assert counts["critical"] == 2
    assert counts["meter_error"] == 1
    assert counts["insufficient_data"] == 1
    assert sum(counts.values()) == report["totals"]["vehicles"] == 9
    found = await anomalies(db, W3H, threshold=0.85)
    assert [r["vehicleId"] for r in found["vehicles"]] == ["V3", "V4", "V2"]
    assert [r["vehicleId"] for r in found["meterErrors"]] == ["V9"]
    by_name = await fleet_report(db, W3H, sort="vehicle")
    assert [r["vehicleId"] for r in by_name["vehicles"]] == sorted(ids)


async def test_current_age_and_offline(db: asyncpg.Connection) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await load(db, [("M1", now - MIN, 0.5), ("M2", now - 10 * MIN, 0.5)], [("V1", now, 0.4)])
    meters = await current(db, "meters", now=now)
    assert meters["count"] == 2
    assert [m["offline"] for m in meters["devices"]] == [False, True]
    assert meters["devices"][0]["lastSeenSeconds"] == 60
    one = await current(db, "vehicles", "V1", now=now)
    assert one["devices"][0]["kwhDeliveredDc"] == 0.4
    assert one["devices"][0]["timestamp"] == iso(now)
    # A session in another time zone still gets UTC timestamps with a Z.
    await db.execute("SET TIME ZONE 'Europe/Berlin'")
    late = now + timedelta(milliseconds=250)
    await load(db, [], [("V1", late, 0.1)])
    one = await current(db, "vehicles", "V1", now=now)
    stamp = one["devices"][0]["timestamp"]
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) == late
    with pytest.raises(UnknownDeviceError):
        await current(db, "vehicles", "V404")


async def test_current_all_in_one_call(db: asyncpg.Connection, database_url: str) -> None:
    """kind "all": both kinds at once, the same as one call per kind, on one connection or
    with a pool (the vehicles then come from a second connection)."""
    now = datetime.now(UTC).replace(microsecond=0)
    # Written out of id order: the answer is sorted by id all the same.
    await load(
        db,
        [("M2", now - 10 * MIN, 0.25), ("M1", now - MIN, 0.5)],
        [("V3", now - 2 * MIN, 0.2), ("V1", now, 0.4), ("V2", now - 5 * MIN, 0.1)],
    )
    meters = await current(db, "meters", now=now)
    vehicles = await current(db, "vehicles", now=now)
    both = await current(db, "all", now=now)
    pool = await create_pool(database_url, min_size=2, max_size=2)
    try:
        pooled = await current(pool, "all", now=now)
    finally:
        await pool.close()
    assert both == pooled
    assert (both["count"], both["offline"]) == (5, 2)
    assert [d["vehicleId"] for d in both["vehicles"]["devices"]] == ["V1", "V2", "V3"]
    assert [d["meterId"] for d in both["meters"]["devices"]] == ["M1", "M2"]
    for kind, alone in (("meters", meters), ("vehicles", vehicles)):
        assert both[kind] == {k: alone[k] for k in ("count", "offline", "devices")}
    with pytest.raises(InvalidRequestError):
        await current(db, "all", "V1")


async def test_assign_closes_previous_and_refuses_overlaps(db: asyncpg.Connection) -> None:
    await assign(db, "V1", "M1", T0)
    await assign(db, "V1", "M2", T0 + timedelta(hours=1))
    same = await assign(db, "V1", "M2", T0 + timedelta(hours=2))
    assert same["changed"] is False
    history = await assignments(db, "V1")
    assert [(a["meterId"], a["validTo"]) for a in history] == [
        ("M1", "2026-11-20T09:00:00Z"),
        ("M2", None),
    ]
    with pytest.raises(AssignmentConflictError):
        await assign(db, "V1", "M3", T0 + timedelta(minutes=30))
    # The database itself refuses two meters at once, whatever the client does.
    with pytest.raises(asyncpg.ExclusionViolationError):
        await db.execute(
            "INSERT INTO vehicle_meter_assignments (vehicle_id, meter_id, valid_from, valid_to)"
            " VALUES ('V1', 'M9', $1, $2)",
            T0 + timedelta(minutes=10),
            T0 + timedelta(minutes=20),
        )


async def test_fleet_and_vehicle_paths_agree_on_irregular_edges(db: asyncpg.Connection) -> None:
    """First/last SoC and temperatures when readings are jittered, start late, stop early, or
    lie only in one edge: the fleet report's shortcuts (the window's first and last interval,
    the first and last rollup hour) must fall back to the exact reading."""
    w = Window(T0 + timedelta(minutes=10, seconds=30), T0 + timedelta(hours=3, minutes=20))
    shapes = {
        "J1": [T0 + i * MIN + timedelta(seconds=37) for i in range(240)],  # jittered
        "J2": [T0 + timedelta(minutes=25) + i * MIN for i in range(150)],  # gap at both edges
        "J3": [T0 + timedelta(minutes=12) + i * MIN for i in range(30)],  # start edge only
        "J4": [T0 + timedelta(hours=1) + i * 7 * MIN for i in range(17)],  # whole hours only
        "J5": [T0 + timedelta(hours=3) + i * MIN for i in range(19)],  # end edge only
    }
    readings = []
    for n, (vid, stamps) in enumerate(shapes.items()):
        await link(db, vid, f"N{vid}", T0 - timedelta(days=1))
        for i, ts in enumerate(stamps):
            soc, temp = 20 + (i * 7 + n) % 61 + 0.25, 15 + (i * 13 + n) % 23 + 0.5
            readings.append((VehicleReading(vid, ts, soc, 0.5 + i % 3, temp), ts))
        readings += [(MeterReading(f"N{vid}", ts, 1.0, 230.0), ts) for ts in stamps]
    await db.execute("SELECT fleet_ensure_day($1)", T0.date())
    v = [r for r in readings if isinstance(r[0], VehicleReading)]
    m = [r for r in readings if isinstance(r[0], MeterReading)]
    await write_batch(db, m, v, [])
    report = await fleet_report(db, w)
    rows = {r["vehicleId"]: r for r in report["vehicles"]}
    for vid in shapes:
        perf = await vehicle_performance(db, vid, w)
        for key in ("soc", "batteryTemp", "readings", "vehicleDcKwh", "totalAcKwh", "status"):
            assert rows[vid][key] == perf[key], (vid, key)
        first, last = await db.fetchrow(
            """SELECT (array_agg(soc ORDER BY ts))[1], (array_agg(soc ORDER BY ts DESC))[1]
                 FROM vehicle_readings WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3""",
            vid,
            w.start,
            w.end,
        )
        assert rows[vid]["soc"] == {"first": round(first, 2), "last": round(last, 2)}, vid


async def test_window_ending_now_reads_the_current_buckets_from_their_rollups(
    db: asyncpg.Connection,
) -> None:
    await depot(db)  # readings at T0 + 0..179 minutes (08:00-10:59)
    now = Window(T0 + timedelta(minutes=10, seconds=30), T0 + timedelta(minutes=179, seconds=30))
    past = Window(now.start, T0 + timedelta(minutes=150, seconds=30))  # readings follow its end
    async with db.transaction(isolation="repeatable_read", readonly=True):
        shape = [
            (p.level and p.level.name, p.start, p.end)
            for p in await fleet_pieces(db, "meter", now.start, now.end)
        ]
        # Nothing is newer than 10:59:30: the 08:00-12:00 block's rows hold exactly the end.
        assert shape == [
            (None, now.start, T0 + timedelta(minutes=20)),
            ("10min", T0 + timedelta(minutes=20), T0 + H),
            ("hourly", T0 + H, T0 + 4 * H),
        ]
        shape = [
            (p.level and p.level.name, p.start, p.end)
            for p in await fleet_pieces(db, "vehicle", past.start, past.end)
        ]
        assert shape == [
            (None, now.start, T0 + timedelta(minutes=20)),
            ("10min", T0 + timedelta(minutes=20), T0 + H),
            ("hourly", T0 + H, T0 + 2 * H),
            ("10min", T0 + 2 * H, T0 + timedelta(minutes=150)),
            (None, T0 + timedelta(minutes=150), past.end),
        ]
    for w in (now, past):
        rows = {r["vehicleId"]: r for r in (await fleet_report(db, w))["vehicles"]}
        for vid in ("V1", "V2", "V4", "V5", "V7", "V9"):
            perf = await vehicle_performance(db, vid, w)
            for key in ("totalAcKwh", "totalDcKwh", "soc", "batteryTemp", "readings", "status"):
                assert rows[vid][key] == perf[key], (w, vid, key)


async def test_window_ending_now_past_the_watermarks_ends_its_pieces_at_its_end(
    db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buckets not yet folded are read as raw readings: the open-ended tail stops at the
    window's end (nothing is newer), so the SoC edge joins look at its last minute and hit."""
    await depot(db)  # readings at T0 + 0..179 minutes (08:00-10:59)
    now = Window(T0 + timedelta(minutes=10, seconds=30), T0 + timedelta(minutes=179, seconds=30))
    for level, to in (("10min", T0 + timedelta(minutes=150)), ("hourly", T0 + 2 * H)):
        await db.execute(
            "UPDATE fleet_rollup_folded SET folded_to = $1 WHERE level = $2", to, level
        )
    await db.execute("UPDATE fleet_rollup_folded SET folded_to = $1 WHERE level = '4h'", T0)
    async with db.transaction(isolation="repeatable_read", readonly=True):
        shape = [
            (p.level and p.level.name, p.start, p.end)
            for p in await fleet_pieces(db, "vehicle", now.start, now.end)
        ]
    assert shape == [
        (None, now.start, T0 + timedelta(minutes=20)),
        ("10min", T0 + timedelta(minutes=20), T0 + H),
        ("hourly", T0 + H, T0 + 2 * H),
        ("10min", T0 + 2 * H, T0 + timedelta(minutes=150)),
        (None, T0 + timedelta(minutes=150), now.end),
    ]
    chosen: list[bool] = []
    soc_by_min = energy._soc_by_min

    async def spy(*args: Any) -> bool:
        chosen.append(await soc_by_min(*args))
        return chosen[-1]

    monkeypatch.setattr(energy, "_soc_by_min", spy)
    rows = {r["vehicleId"]: r for r in (await fleet_report(db, now))["vehicles"]}
    assert chosen == [False]  # the edge joins, not the dearer statement
    for vid in ("V1", "V2", "V4", "V5", "V7", "V9"):
        perf = await vehicle_performance(db, vid, now)
        for key in ("totalAcKwh", "totalDcKwh", "soc", "batteryTemp", "readings", "status"):
            assert rows[vid][key] == perf[key], (vid, key)


async def _irregular_30h(db: asyncpg.Connection, linked: datetime) -> dict[str, list[datetime]]:
    """30 h of irregular readings across midnight from 07:57 on day 1, assigned from `linked`."""
    start = T0 - timedelta(minutes=3)  # 07:57 on day 1 to ~13:57 on day 2
    shapes = {
        "L1": [start + i * MIN + timedelta(seconds=i % 50) for i in range(1800)],  # jittered
        "L2": [start + i * MIN for i in range(1800) if not 500 <= i < 700],  # 200 min gap
        "L3": [start + i * 3 * MIN for i in range(600)],  # every 3 minutes
    }
    readings_v, readings_m = [], []
    for n, (vid, stamps) in enumerate(shapes.items()):
        await link(db, vid, f"N{vid}", linked)
        for i, ts in enumerate(stamps):
            soc, temp = 20 + (i * 7 + n) % 61 + 0.25, 15 + (i * 13 + n) % 23 + 0.5
            kwh = 0.001 * ((i * 31 + n) % 997 + 1)
            readings_v.append((VehicleReading(vid, ts, soc, kwh * 0.9, temp), ts))
            readings_m.append((MeterReading(f"N{vid}", ts, kwh, 230.0), ts))
    for day in (T0.date(), (T0 + timedelta(days=1)).date()):
        await db.execute("SELECT fleet_ensure_day($1)", day)
    await write_batch(db, readings_m, readings_v, [])
    return shapes


async def _assert_rows_equal_raw(
    db: asyncpg.Connection, w: Window, vehicles: Iterable[str], rows: dict[str, Any]
) -> None:
    for vid in vehicles:
        raw = await db.fetchrow(
            """SELECT sum(kwh_delivered_dc) AS dc, count(*) AS n,
                      round(avg(battery_temp::float8)::numeric, 2)::float8 AS tavg,
                      min(battery_temp) AS tmin, max(battery_temp) AS tmax,
                      (array_agg(soc ORDER BY ts))[1] AS first,
                      (array_agg(soc ORDER BY ts DESC))[1] AS last
                 FROM vehicle_readings WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3""",
            vid,
            w.start,
            w.end,
        )
        ac = await _raw(db, "meter_readings", "kwh_consumed_ac", f"N{vid}", "meter_id", w)
        row = rows[vid]
        assert Decimal(str(row["totalAcKwh"])) == ac, (w, vid)
        assert Decimal(str(row["vehicleDcKwh"])) == raw["dc"], (w, vid)
        assert row["readings"]["vehicle"] == raw["n"], (w, vid)
        assert row["batteryTemp"] == {
            "avg": raw["tavg"],
            "min": round(raw["tmin"], 2),
            "max": round(raw["tmax"], 2),
        }, (w, vid)
        assert row["soc"] == {"first": round(raw["first"], 2), "last": round(raw["last"], 2)}
        perf = await vehicle_performance(db, vid, w)
        for key in ("soc", "batteryTemp", "readings", "totalAcKwh", "totalDcKwh", "status"):
            assert row[key] == perf[key], (w, vid, key)


async def test_fleet_report_over_every_rollup_level_equals_raw_computation(
    db: asyncpg.Connection,
) -> None:
    """30 h of irregular readings across midnight: windows that use 4-hour blocks, hours,
    10-minute buckets and raw edges give exactly what the raw readings give."""
    shapes = await _irregular_30h(db, T0 - timedelta(days=1))
    windows = [
        Window(T0 + timedelta(minutes=13, seconds=30), T0 + timedelta(hours=24, minutes=13)),
        Window(T0 + timedelta(hours=1), T0 + timedelta(hours=25)),
        Window(T0 + timedelta(hours=3, minutes=7), T0 + timedelta(hours=12, minutes=51)),
        Window(T0 + timedelta(hours=5, seconds=1), T0 + timedelta(hours=40)),  # ends after data
    ]
    for w in windows:
        rows = {r["vehicleId"]: r for r in (await fleet_report(db, w))["vehicles"]}
        await _assert_rows_equal_raw(db, w, shapes, rows)
    await assert_rollups_match_raw(db)


@pytest.mark.parametrize("soc_by_min", [True, False])
@pytest.mark.parametrize("by_span", [True, False])
async def test_fleet_report_from_before_the_first_readings_equals_raw_computation(
    db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, soc_by_min: bool, by_span: bool
) -> None:
    """Windows starting hours before the vehicles' first readings and their assignments (and
    ending after them): the first/last SoC found by the aggregate itself or by the edge joins,
    the assigned spans read by one fleet-wide aggregate per span or segment by segment."""
    monkeypatch.setattr(energy, "SOC_BY_MIN", soc_by_min)
    monkeypatch.setattr(unit_energy, "FLEET_SPAN_MIN", 1 if by_span else 10**9)
    first = T0 - timedelta(minutes=3)
    shapes = await _irregular_30h(db, first)
    windows = [
        Window(first - timedelta(hours=3, minutes=17), first + timedelta(hours=20, minutes=43)),
        Window(first - timedelta(hours=7), first + timedelta(hours=17)),
        Window(first - timedelta(hours=1, seconds=30), first + timedelta(hours=40)),
    ]
    for w in windows:
        rows = {r["vehicleId"]: r for r in (await fleet_report(db, w))["vehicles"]}
        await _assert_rows_equal_raw(db, w, shapes, rows)


async def test_single_spans_on_common_bounds_equal_the_general_path(
    db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet assigned inside the window, each vehicle alone on its meter: the 1:1 spans on
    common bounds take the fleet-wide path (FleetSpans.single) and give the report the general
    path gives segment by segment, including vehicles with readings before their span (the
    general path for them), a vehicle without readings and a meter without readings."""
    first = T0 - timedelta(minutes=3)
    await _irregular_30h(db, first)  # L1-L3 on NL1-NL3, readings and assignments from `first`
    later = T0 + 2 * H
    for v, m in (("P1", "Q1"), ("P2", "Q2"), ("P3", "Q3"), ("P4", "Q4")):
        await link(db, v, m, later)
    t = minutes(600)
    await load(
        db,
        charging("Q1", 1.0, t) + charging("Q2", 1.1, t) + charging("Q3", 0.7, t),
        charging("P1", 0.9, t) + charging("P2", 0.95, t) + charging("P4", 0.5, t[120:300]),
    )
    windows = [
        Window(first - timedelta(hours=3, minutes=17), first + timedelta(hours=20, minutes=43)),
        Window(T0 - H, T0 + timedelta(hours=5, minutes=30)),
        Window(T0 + H, T0 + timedelta(hours=4, minutes=7)),  # L1-L3 whole, P1-P4 from `later`
    ]
    for w in windows:
        monkeypatch.setattr(unit_energy, "FLEET_SPAN_MIN", 1)
        spans = await fleet_spans(db, w, common=1)
        assert {v for pairs in spans.single.values() for v in pairs} >= {"P1", "P2", "P3", "P4"}
        fast = await fleet_report(db, w)
        monkeypatch.setattr(unit_energy, "FLEET_SPAN_MIN", 10**9)
        general = await fleet_report(db, w)
        for report in (fast, general):
            del report["generatedAt"], report["dataAgeSeconds"]
        assert fast == general, w
        rows = {r["vehicleId"]: r for r in fast["vehicles"]}
        assert rows["P1"]["meters"] == [
            {"meterId": "Q1", "from": iso(later), "to": iso(w.end), "shared": False}
        ]
        assert rows["P3"]["readings"]["vehicle"] == 0
        assert rows["P4"]["totalAcKwh"] == 0


async def test_pooled_report_reads_one_snapshot(
    db: asyncpg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a pool, the same figures as on one connection, and a reading committed by another
    session between the report's statements does not count: they read one snapshot."""
    await depot(db)
    w = Window(T0 + timedelta(minutes=10, seconds=30), T0 + timedelta(hours=2, minutes=50))
    single = await fleet_report(db, w)
    pool = await create_pool(database_url, min_size=2, max_size=2)
    try:
        pooled = await fleet_report(pool, w)
        assert pooled["vehicles"] == single["vehicles"]
        assert pooled["totals"] == single["totals"]

        real = fleet.fleet_vehicles

        async def write_then_vehicles(conn: asyncpg.Connection, *args: Any) -> Any:
            # Runs inside the report's snapshot, before the meter aggregate: another session
            # commits a big meter reading inside the window.
            await load(db, [("M1", T0 + timedelta(minutes=100, seconds=1), 100.0)])
            return await real(conn, *args)

        monkeypatch.setattr(fleet, "fleet_vehicles", write_then_vehicles)
        during = await fleet_report(pool, w)
        monkeypatch.undo()
        assert during["totals"] == single["totals"]
        after = await fleet_report(pool, w)
        assert after["totals"]["totalAcKwh"] == pytest.approx(single["totals"]["totalAcKwh"] + 100)
    finally:
        await pool.close()


async def test_reports_say_how_old_the_newest_reading_is(db: asyncpg.Connection) -> None:
    """A lagging replica or a stalled ingest shows in every report."""
    await depot(db)
    newest = await db.fetchval(
        "SELECT greatest((SELECT max(ts) FROM meter_current),"
        " (SELECT max(ts) FROM vehicle_current))"
    )
    for report in (
        await fleet_report(db, W3H),
        await anomalies(db, W3H),
        await vehicle_performance(db, "V1", W3H),
    ):
        assert report["newestReadingAt"] == newest.strftime("%Y-%m-%dT%H:%M:%SZ")
        age = (datetime.now(UTC) - newest).total_seconds()
        assert -0.01 <= age - report["dataAgeSeconds"] < 60
