"""The assignment check on a simulated fleet with wrong assignments (fleet-sim's
--wrong-assignments): found through the database, with the meter each vehicle really charges
at, from the CLI, the alert evaluator and the API's JSON alike."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetctl.alerts.evaluation import AlertConfig, evaluate
from fleetctl.analytics.assignment_check import assignment_check
from fleetctl.analytics.window import Window
from fleetctl.cli import main
from fleetdb.connect import connect, connect_analytics
from fleetsim.assignment_eval import score, wrong_assignments
from fleetsim.direct import backfill_direct
from fleetsim.model import Fleet, FleetConfig

pytestmark = pytest.mark.integration

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
CFG = FleetConfig(meters=120, vehicles=120, seed=21, wrong_assignments=3)
WINDOW = Window(DAY + timedelta(hours=1, minutes=30), DAY + timedelta(hours=25, minutes=30))


async def test_wrong_assignments_are_found_with_the_meter_they_charge_at(
    database_url: str, admin_url: str, analytics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await backfill_direct(database_url, CFG, DAY, DAY + timedelta(hours=26))
    fleet = Fleet(CFG)
    truth = wrong_assignments(fleet)
    assert len(truth) == 3
    conn: asyncpg.Connection = await connect_analytics(database_url)
    try:
        report = await assignment_check(conn, WINDOW)
    finally:
        await conn.close()
    got = score(report, fleet)
    assert got["found"] == 3
    assert got["flagged"] == 3
    assert got["suggestedRight"] == 3
    assert report["count"] == 120
    for row in report["vehicles"]:
        assert row["assigned"]["chargingHoursWithoutAc"] >= 2
        assert row["best"]["meterId"] == truth[row["vehicleId"]]

    # The CLI prints the same report (as the analytics login).
    span = [
        "--start",
        f"{WINDOW.start:%Y-%m-%dT%H:%M:%SZ}",
        "--end",
        f"{WINDOW.end:%Y-%m-%dT%H:%M:%SZ}",
    ]
    args = ["--database-url", analytics_url, "assignments", "check", *span]
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vehicles"] == report["vehicles"]
    assert await asyncio.to_thread(main, args) == 0
    table = capsys.readouterr().out
    assert all(v in table and m in table for v, m in truth.items())

    # The evaluator opens one assignment_suspect alert per wrong vehicle, once.
    admin = await connect(admin_url)
    try:
        out = await evaluate(admin, AlertConfig(), WINDOW.end)
        opened = {s for k, s in out.opened if k == "assignment_suspect"}
        assert opened == set(truth)
        again = await evaluate(admin, AlertConfig(), WINDOW.end)
        assert not [k for k in again.opened if k[0] == "assignment_suspect"]
    finally:
        await admin.close()
