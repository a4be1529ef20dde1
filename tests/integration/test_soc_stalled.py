"""soc_stalled on replayed data: two simulator runs of one fleet that overlap in time
(fleet-sim --replay-lag-s: the second started 70.5 min after the first, so their readings
interleave under the same ids) open no alert, where judging the first and last SoC of the
hour flagged many vehicles; a really stalled charge opens only at the third evaluation in a
row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetctl.alerts.evaluation import _CHARGING, AlertConfig, evaluate
from fleetdb.connect import connect
from fleetdb.ingest.messages import MeterReading, VehicleReading, decode
from fleetdb.ingest.writer import write_batch
from fleetsim.model import VEHICLE, Fleet, FleetConfig

pytestmark = pytest.mark.integration

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
# The simulator's replay knob: the same fleet started again 70.5 min after the first run and
# published beside it, so in the last hour each vehicle's readings alternate between two
# points of its charge an hour apart.
CFG = FleetConfig(meters=30, vehicles=30, seed=7, charging_at_start=1.0, replay_lag_s=4230)


async def _run(db: asyncpg.Connection, start: datetime, end: datetime) -> None:
    """One simulator run's readings, written as fleetd writes them."""
    vehicles: list[tuple[VehicleReading, datetime]] = []
    meters: list[tuple[MeterReading, datetime]] = []
    for _, msgs in Fleet(CFG).ticks(start, end):
        for kind, _, topic, payload, _, _ in msgs:
            r = decode(topic, payload, end)
            if kind == VEHICLE:
                assert isinstance(r, VehicleReading)
                vehicles.append((r, end))
            else:
                assert isinstance(r, MeterReading)
                meters.append((r, end))
    await write_batch(db, meters, vehicles, [])


async def test_overlapping_replays_open_no_soc_stalled(
    database_url: str, admin_url: str, db: asyncpg.Connection
) -> None:
    await db.execute("SELECT fleet_ensure_day($1)", (END - timedelta(hours=3)).date())
    await db.execute("SELECT fleet_ensure_day($1)", END.date())
    await _run(db, END - timedelta(hours=3), END)
    # The flood as it was: first against last SoC of the hour's charging readings.
    rows = await db.fetch(_CHARGING, END - timedelta(hours=1), END, 1.0)
    assert sum(1 for r in rows if float(r[1]) >= 1.0 and r[3] <= r[2]) >= 5
    assert sum(1 for r in rows if r[4]) >= 5  # mixed series, seen as such

    # A vehicle whose charge really stalls: DC in, SoC flat.
    stalled = [
        (VehicleReading("V-STUCK", END - timedelta(minutes=59 - i), 42.0, 0.5, 25.0), END)
        for i in range(60)
    ]
    await write_batch(db, [], stalled, [])

    conn = await connect(admin_url)
    try:
        config = AlertConfig(soc_stalled_evaluations=3)
        opened = []
        for k in range(4):
            out = await evaluate(conn, config, END + timedelta(seconds=k))
            opened.append(sorted(s for kind, s in out.opened if kind == "soc_stalled"))
        assert opened == [[], [], ["V-STUCK"], []]
        assert await conn.fetchval("SELECT count(*) FROM fleet_alert_pending") == 0
    finally:
        await conn.close()
