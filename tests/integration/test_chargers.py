"""Charger diagnosis against the simulator's truth: each meter's charger efficiency and
standby draw as the model drew them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetctl.analytics import fleet_report, vehicle_performance
from fleetctl.analytics.chargers import chargers, status_of
from fleetctl.analytics.window import Window
from fleetctl.cli import main
from fleetdb.cold import compact
from fleetdb.connect import connect, connect_analytics
from fleetsim.charger_eval import score
from fleetsim.direct import backfill_direct
from fleetsim.model import Fleet, FleetConfig

pytestmark = pytest.mark.integration
REASONS_UNSURE = ("few_charging_hours", "few_hours", "collinear", "interval_too_wide")

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=4)


async def test_diagnosis_matches_the_simulated_chargers(database_url: str) -> None:
    cfg = FleetConfig(meters=300, vehicles=300, seed=11)
    await backfill_direct(database_url, cfg, DAY, DAY + timedelta(hours=26))
    window = Window(DAY + timedelta(hours=1, minutes=30), DAY + timedelta(hours=25, minutes=30))
    report = await _report(database_url, window)
    got = score(report, Fleet(cfg))
    assert got["chargers"] == 300
    assert got["judged"] > 250
    assert got["etaWithin001"] >= 0.99
    assert got["standbyWithin5W"] == 1.0
    assert got["faulty"] > 10
    assert got["recall"] == 1.0
    assert got["precision"] >= 0.99
    # Every judged charger has its intervals, and they hold the truth (300 × 2 figures at
    # 95 %: a handful may miss).
    assert got["withInterval"] == got["judged"]
    assert got["etaCoverage"] >= 0.95
    assert got["standbyCoverage"] >= 0.9
    assert got["negativeStandby"] == 0
    # Worst first.
    order = [r["status"] for r in report["chargers"]]
    assert order == sorted(
        order, key=["critical", "degraded", "meter_error", "optimal", "insufficient_data"].index
    )


async def test_short_windows_give_physical_fits_and_no_false_alarm(database_url: str) -> None:
    """3 h from the simulator's start, when most vehicles charge every minute of it (the
    fit cannot tell standby from conversion loss): no negative standby, no efficiency above 1,
    no false critical, and what is not sure says why."""
    cfg = FleetConfig(meters=200, vehicles=200, seed=25)
    await backfill_direct(database_url, cfg, DAY, DAY + timedelta(hours=3))
    report = await _report(database_url, Window(DAY, DAY + timedelta(hours=3)))
    got = score(report, Fleet(cfg))
    assert got["chargers"] == 200
    assert got["negativeStandby"] == 0
    assert got["efficiencyAbove1"] == 0
    assert got["falseCritical"] == 0
    assert got["precision"] == 1.0
    assert got["reasons"]
    for r in report["chargers"]:  # type: ignore[attr-defined]
        assert (r["status"] == "insufficient_data") == (r["reason"] in REASONS_UNSURE), r
        if r["ci95"]:
            lo, hi = r["ci95"]["conversionEfficiency"]
            assert 0 <= lo <= r["conversionEfficiency"] <= hi <= 1


async def test_diagnosis_reads_compacted_days_the_same(database_url: str) -> None:
    cfg = FleetConfig(meters=20, vehicles=20, seed=3)
    await backfill_direct(database_url, cfg, DAY, DAY + timedelta(hours=30))
    window = Window(DAY + timedelta(hours=12, minutes=10), DAY + timedelta(hours=29))
    before = await _report(database_url, window)
    conn = await connect(database_url)
    try:
        await compact.run(conn, (DAY + timedelta(days=1)).date())
    finally:
        await conn.close()
    assert await _report(database_url, window) == before


async def _report(url: str, window: Window) -> dict[str, object]:
    conn: asyncpg.Connection = await connect_analytics(url)
    try:
        return await chargers(conn, window)
    finally:
        await conn.close()


def test_status_needs_two_hours_of_charging() -> None:
    assert status_of(0.9, 1) == "insufficient_data"
    assert status_of(0.9, 2) == "optimal"
    assert status_of(0.8, 5) == "degraded"
    assert status_of(0.7, 5) == "critical"
    assert status_of(1.2, 5) == "meter_error"
    assert status_of(None, 5) == "insufficient_data"


async def test_cli_lists_chargers(
    database_url: str, analytics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await backfill_direct(
        database_url, FleetConfig(meters=6, vehicles=6, seed=2), DAY, DAY + timedelta(hours=6)
    )
    window = [
        "--start",
        f"{DAY:%Y-%m-%dT%H:%M:%SZ}",
        "--end",
        f"{DAY + timedelta(hours=6):%Y-%m-%dT%H:%M:%SZ}",
    ]
    args = ["--database-url", analytics_url]
    assert await asyncio.to_thread(main, [*args, "--json", "chargers", *window]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 6
    wide_ok = [*args, "--json", "chargers", *window, "--max-interval", "0.5"]
    assert await asyncio.to_thread(main, wide_ok) == 0
    assert json.loads(capsys.readouterr().out)["interval"]["maxWidthForStatus"] == 0.5
    assert await asyncio.to_thread(main, [*args, "chargers", *window]) == 0
    table = capsys.readouterr().out
    assert "METER-00001" in table
    assert "standby W" in table


async def test_vehicle_report_carries_its_chargers_diagnosis(database_url: str) -> None:
    """The same fit from the vehicle's own report as from the fleet-wide view."""
    cfg = FleetConfig(meters=30, vehicles=30, seed=5)
    await backfill_direct(database_url, cfg, DAY, DAY + timedelta(hours=26))
    window = Window(DAY + timedelta(hours=1, minutes=30), DAY + timedelta(hours=25, minutes=30))
    fleet_view = {r["meterId"]: r for r in (await _report(database_url, window))["chargers"]}
    conn = await connect_analytics(database_url)
    try:
        for i in (1, 7, 30):
            perf = await vehicle_performance(conn, f"VEHICLE-{i:05d}", window)
            [unit] = perf["chargers"]
            mine = fleet_view[unit["meterId"]]
            for key in ("status", "conversionEfficiency", "standbyW", "fit", "billed"):
                assert unit[key] == mine[key], (i, key)
        report = await fleet_report(conn, window, with_chargers=True)
        for row in report["vehicles"]:
            mine = fleet_view[row["charger"]["meterId"]]
            assert row["charger"]["conversionEfficiency"] == mine["conversionEfficiency"]
            assert row["charger"]["status"] == mine["status"]
    finally:
        await conn.close()
