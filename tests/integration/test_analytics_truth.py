"""Analytics against the simulator's ground truth: a few hundred devices over several simulated
hours through real Mosquitto + fleetd + PostgreSQL, then fleet_report over the whole span."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from fleet_harness.rows import COUNT_SQL
from fleetctl.analytics import fleet_report, vehicle_performance
from fleetctl.analytics.status import classify
from fleetctl.analytics.window import Window
from fleetd.settings import Settings
from fleetsim.runner import SimOptions, run_sim
from tests.conftest import running, wait_for_count

pytestmark = pytest.mark.integration

BOTH = COUNT_SQL
BAND_STATUS = {"normal": "optimal", "degraded": "degraded", "critical": "critical"}


async def test_fleet_report_equals_simulator_truth(
    settings: Settings, mqtt_url: str, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    truth_path = tmp_path / "truth.json"
    options = SimOptions(
        meters=300,
        vehicles=300,
        seed=5,
        realtime=False,  # as fast as the broker takes it
        sim_hours=3.0,
        mqtt_url=mqtt_url,
        database_url=database_url,
        truth_path=str(truth_path),
        degraded_fraction=0.1,
        critical_fraction=0.05,
        duplicate_rate=0.02,
    )
    async with running(settings):
        summary = await run_sim(options)
        expected = summary.meters + summary.vehicles
        assert await wait_for_count(db, BOTH, expected, timeout_s=120) == expected
    truth = json.loads(truth_path.read_text())
    assert summary.start is not None
    assert summary.end is not None
    window = Window(summary.start - timedelta(hours=1), summary.end + timedelta(hours=1))
    report = await fleet_report(db, window)
    rows = {r["vehicleId"]: r for r in report["vehicles"]}
    assert len(rows) == 300
    checked_bands = 0
    for vid, tv in truth["vehicles"].items():
        ac = sum(Decimal(h["acKwh"]) for h in truth["meters"][tv["meterId"]]["hours"].values())
        dc = sum(Decimal(h["dcKwh"]) for h in tv["hours"].values())
        row = rows[vid]
        assert row["totalAcKwh"] == pytest.approx(float(ac), abs=1e-9)
        assert row["totalDcKwh"] == pytest.approx(float(dc), abs=1e-9)
        status, _, _ = classify(ac, dc)
        assert row["status"] == status
        # Away from the thresholds, the measured status is the simulator's charger band.
        ratio = dc / ac if ac else None
        if (
            ratio is not None
            and ac >= 1
            and all(abs(ratio - t) > Decimal("0.02") for t in (Decimal("0.85"), Decimal("0.75")))
        ):
            assert row["status"] == BAND_STATUS[tv["band"]], (vid, ratio, tv["band"])
            checked_bands += 1
    assert checked_bands > 200
    assert report["statusCounts"]["critical"] >= 10
    # The fleet-wide path (per-device aggregates) and the per-vehicle path (per-segment queries)
    # agree on every field they share.
    for vid in list(rows)[:25]:
        perf = await vehicle_performance(db, vid, window)
        for key in ("totalAcKwh", "totalDcKwh", "soc", "batteryTemp", "readings", "status"):
            assert perf[key] == rows[vid][key], (vid, key)
    # One vehicle's hourly breakdown matches the truth hour by hour.
    vid = next(v for v, t in truth["vehicles"].items() if t["band"] == "critical")
    perf = await vehicle_performance(db, vid, window)
    dc_by_hour = {h["hour"]: h["dcKwh"] for h in perf["hourly"] if h["dcKwh"] is not None}
    for hour, h in truth["vehicles"][vid]["hours"].items():
        assert dc_by_hour[hour] == pytest.approx(float(Decimal(h["dcKwh"])), abs=1e-9)
