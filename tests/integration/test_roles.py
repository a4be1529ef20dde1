"""sql/006_roles.sql: fleet_ingest can do exactly what a flush needs (through the partitioned
parents, on partitions created after the grants), fleet_analytics only reads, fleet_admin also
maintains assignments."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from fleet_harness.publish import Publisher, readings
from fleetctl.admin.assignments import assign
from fleetctl.analytics import fleet_report
from fleetctl.analytics.window import Window
from fleetd.settings import Settings
from fleetdb.connect import connect, connect_analytics
from fleetdb.fold import fold_until
from fleetdb.ingest.messages import MeterReading, Rejected, VehicleReading
from fleetdb.ingest.writer import write_batch
from fleetdb.migrate import load_migrations
from fleetdb.rollups import rollup_tables
from tests.conftest import running, wait_for_count

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

_n = itertools.count()
Login = Callable[[str], Awaitable[asyncpg.Connection]]


def _as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def login_as(db: asyncpg.Connection, database_url: str) -> AsyncIterator[Login]:
    """login_as("fleet_ingest") -> a connection as a fresh LOGIN user IN ROLE fleet_ingest,
    made the way the migration's comment tells ops to (roles are cluster-wide: dropped after)."""
    users: list[str] = []
    conns: list[asyncpg.Connection] = []

    async def login(group: str) -> asyncpg.Connection:
        user = f"t_{group}_{os.getpid()}_{next(_n)}"
        await db.execute(f'CREATE ROLE "{user}" LOGIN IN ROLE {group}')
        users.append(user)
        conn = await connect(_as_user(database_url, user), application_name="test-roles")
        conns.append(conn)
        return conn

    yield login
    for conn in conns:
        await conn.close()
    for user in users:
        await db.execute(f'DROP ROLE IF EXISTS "{user}"')


async def _denied(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(sql, *args)


def test_roles_migration_is_picked_up() -> None:
    names = [m.name for m in load_migrations()]
    assert "006_roles.sql" in names
    assert names == sorted(names)


async def test_ingest_role_writes_a_batch_and_nothing_more(
    db: asyncpg.Connection, login_as: Login
) -> None:
    ingest = await login_as("fleet_ingest")
    # A day no partition exists for yet: created by the ingest role through the SECURITY
    # DEFINER function, after the grants were made; inserts go through the parent.
    day = (datetime.now(UTC) + timedelta(days=20)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    assert await ingest.fetchval("SELECT fleet_ensure_day($1)", day.date()) == 8
    now = datetime.now(UTC)
    meters = [(MeterReading("M-1", day + timedelta(minutes=i), 1.25, 230.0), now) for i in range(3)]
    vehicles = [
        (VehicleReading("V-1", day + timedelta(minutes=i), 50.0 + i, 1.0, 25.0), now)
        for i in range(3)
    ]
    rejects = [(Rejected("meters/M-1/telemetry", b"{bad", "payload: x", "payload", "x"), now)]
    result = await write_batch(ingest, meters, vehicles, rejects)
    assert (result.meters_inserted, result.vehicles_inserted, result.rejects) == (3, 3, 1)
    # The ingest role folds the rollups (fleetd's fold task, fleetdb.fold) past that hour...
    await fold_until(ingest, day + timedelta(hours=1), timedelta(0))
    # ...so a second batch in the same hour, newer readings, takes the rollup UPDATE paths
    # (readings of folded buckets) and the current one, plus a redelivered duplicate and a
    # redelivered reject.
    later = [(MeterReading("M-1", day + timedelta(minutes=30), 0.75, 231.0), now)]
    vlater = [(VehicleReading("V-1", day + timedelta(minutes=30), 60.0, 2.0, 30.0), now)]
    result = await write_batch(ingest, later + meters[:1], vlater, rejects)
    assert (result.meters_inserted, result.vehicles_inserted, result.duplicates) == (1, 1, 1)

    assert await db.fetchval("SELECT kwh_sum FROM meter_hourly WHERE meter_id = 'M-1'") == 4.5
    assert await db.fetchval("SELECT readings FROM vehicle_hourly WHERE vehicle_id = 'V-1'") == 4
    assert await db.fetchval("SELECT voltage FROM meter_current WHERE meter_id = 'M-1'") == 231.0
    assert await db.fetchval("SELECT count(*) FROM rejected_messages") == 1

    # History is append-only and the schema is not ours to change.
    await _denied(ingest, "DELETE FROM meter_readings")
    await _denied(ingest, "UPDATE vehicle_readings SET soc = 0")
    await _denied(ingest, "TRUNCATE meter_readings")
    await _denied(ingest, "DROP TABLE meter_readings")
    await _denied(ingest, "ALTER TABLE meter_current ADD COLUMN x int")
    await _denied(ingest, "CREATE TABLE public.mine (x int)")
    await _denied(ingest, "DELETE FROM meter_current")
    await _denied(ingest, "DELETE FROM meter_hourly")
    # Dead letters are write-only for the daemon, and only RETURNING's columns are readable.
    await _denied(ingest, "SELECT payload FROM rejected_messages")
    # (History is readable: fleetd's maintenance compacts closed days, see sql/011.)
    await _denied(ingest, "DELETE FROM meter_cold")
    await _denied(ingest, "DELETE FROM vehicle_cold_hours")
    await _denied(ingest, "UPDATE fleet_days SET state = 'open'")
    await _denied(ingest, "SELECT * FROM vehicle_meter_assignments")
    await _denied(ingest, "DELETE FROM schema_migrations")
    # Which migrations are applied is readable (fleetd checks it: sql/013).
    assert await ingest.fetchval("SELECT count(*) FROM schema_migrations") > 0
    # A partition by name is not covered by the parent's grants.
    part = "meter_readings_p" + day.strftime("%Y%m%d")
    await _denied(ingest, f"INSERT INTO {part} SELECT * FROM {part} LIMIT 0")
    # Nothing leaked: still exactly the 4 + 4 rows written above.
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 4
    assert await db.fetchval("SELECT count(*) FROM vehicle_readings") == 4


async def test_analytics_reads_only(db: asyncpg.Connection, login_as: Login) -> None:
    analytics = await login_as("fleet_analytics")
    for table in (
        "meter_readings",
        "vehicle_readings",
        *rollup_tables(),
        "meter_current",
        "vehicle_current",
        "vehicle_meter_assignments",
        "rejected_messages",
        "meter_cold",
        "vehicle_cold",
        "meter_cold_hours",
        "vehicle_cold_hours",
        "meter_late",
        "vehicle_late",
    ):
        assert await analytics.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await analytics.fetchval("SELECT count(*) FROM fleet_days") >= 0
    ts = datetime.now(UTC)
    await _denied(
        analytics,
        "INSERT INTO meter_readings (meter_id, ts, kwh_consumed_ac, voltage, received_at)"
        " VALUES ('M', $1, 1, 230, $1)",
        ts,
    )
    await _denied(analytics, "UPDATE meter_current SET voltage = 0")
    await _denied(analytics, "DELETE FROM rejected_messages")
    await _denied(analytics, "SELECT fleet_ensure_day(current_date + 30)")
    await _denied(analytics, "SELECT fleet_set_day_state(current_date - 9, 'open', 'compacting')")
    await _denied(analytics, "DELETE FROM vehicle_late")
    await _denied(
        analytics,
        "INSERT INTO vehicle_meter_assignments (vehicle_id, meter_id, valid_from)"
        " VALUES ('V', 'M', $1)",
        ts,
    )


async def test_admin_maintains_assignments(db: asyncpg.Connection, login_as: Login) -> None:
    admin = await login_as("fleet_admin")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await admin.execute(
        "INSERT INTO vehicle_meter_assignments (vehicle_id, meter_id, valid_from)"
        " VALUES ('V-1', 'M-1', $1)",
        t0,
    )
    await admin.execute(
        "UPDATE vehicle_meter_assignments SET valid_to = $1 WHERE vehicle_id = 'V-1'",
        t0 + timedelta(days=1),
    )
    assert await admin.fetchval("SELECT count(*) FROM meter_readings") == 0  # reads, too
    await _denied(admin, "DELETE FROM vehicle_meter_assignments")
    await _denied(admin, "DELETE FROM meter_readings")
    assert await db.fetchval("SELECT count(*) FROM vehicle_meter_assignments") == 1


async def test_roles_are_nologin_groups(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolname IN ('fleet_ingest', 'fleet_analytics', 'fleet_admin') ORDER BY 1"
    )
    assert [r["rolname"] for r in rows] == ["fleet_admin", "fleet_analytics", "fleet_ingest"]
    assert not any(
        r["rolcanlogin"] or r["rolsuper"] or r["rolcreaterole"] or r["rolcreatedb"] for r in rows
    )


async def test_the_documented_roles_recipe_gives_each_job_what_it_needs(
    db: asyncpg.Connection, database_url: str, settings: Settings
) -> None:
    """The README's CREATE ROLE lines (the same as docs/operations.md's), run as written (names
    made unique): fleetd ingests as the first, reports read as the second, assignments are
    written as the third."""
    pattern = r"CREATE ROLE (\w+) +LOGIN PASSWORD '\.\.\.' IN ROLE (\w+)"
    recipe = re.findall(pattern, (REPO / "README.md").read_text())
    assert recipe == re.findall(pattern, (REPO / "docs" / "operations.md").read_text())
    assert [group for _, group in recipe] == ["fleet_ingest", "fleet_analytics", "fleet_admin"]
    users = {group: f"{name}_{os.getpid()}" for name, group in recipe}
    try:
        for group, user in users.items():
            await db.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD 'secret' IN ROLE {group}")
        ingest = _as_user(database_url, users["fleet_ingest"])
        own = settings.model_copy(update={"database_url": ingest})
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
        async with running(own):
            pub = Publisher(own.mqtt_url)
            await asyncio.to_thread(pub.publish, readings(2, 2, 3, start, timedelta(minutes=1)))
            pub.close()
            assert await wait_for_count(db, "SELECT count(*) FROM vehicle_readings", 6) == 6
        analytics = await connect_analytics(_as_user(database_url, users["fleet_analytics"]))
        admin = await connect_analytics(_as_user(database_url, users["fleet_admin"]))
        try:
            await assign(admin, "VEHICLE-00001", "METER-00001", start)
            report = await fleet_report(analytics, Window(start, start + timedelta(minutes=3)))
            assert report["totals"]["vehicles"] == 2
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await assign(analytics, "VEHICLE-00002", "METER-00002", start)
        finally:
            await analytics.close()
            await admin.close()
    finally:
        for user in users.values():
            await db.execute(f'DROP ROLE IF EXISTS "{user}"')
