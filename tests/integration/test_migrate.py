"""`fleetd migrate` is idempotent, and upgrades a database migrated before sql/functions/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from fleetdb.migrate import migrate, sql_dir

pytestmark = pytest.mark.integration

FLEETD = str(Path(sys.executable).parent / "fleetd")
SCHEMA = """SELECT string_agg(format('%s.%s %s', table_name, column_name, data_type), ',' ORDER BY
                   table_name, column_name) FROM information_schema.columns
            WHERE table_schema = 'public'"""


def _migrate(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETD, "migrate"],
        env={"FLEET_DATABASE_URL": url, "FLEET_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


async def test_migrate_twice_changes_nothing(pg_admin_url: str) -> None:
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute("DROP DATABASE IF EXISTS fleet_migrate_twice")
    await admin.execute("CREATE DATABASE fleet_migrate_twice")
    url = pg_admin_url.rsplit("/", 1)[0] + "/fleet_migrate_twice"
    try:
        first = _migrate(url)
        assert first.returncode == 0, first.stderr
        assert "001_history.sql" in first.stdout
        conn = await asyncpg.connect(url)
        before = (await conn.fetchval(SCHEMA), await conn.fetch("SELECT * FROM schema_migrations"))
        second = _migrate(url)
        assert second.returncode == 0, second.stderr
        assert '"applied": []' in second.stdout
        assert '"partitions_created": 0' in second.stdout
        after = (await conn.fetchval(SCHEMA), await conn.fetch("SELECT * FROM schema_migrations"))
        assert before == after
        await conn.close()
    finally:
        await admin.execute("DROP DATABASE IF EXISTS fleet_migrate_twice WITH (FORCE)")
        await admin.close()


async def test_a_database_migrated_before_the_kind_registry_upgrades(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """A database migrated by the release before fleet_kinds (migrations 001-016, no
    sql/functions/) takes the rest: the functions then loop over fleet_kinds and create the
    same eight partitions per day, and a compacted day's partitions are dropped."""
    for path in sql_dir().glob("0*.sql"):
        if int(path.name[:3]) <= 16:
            (tmp_path / path.name).write_text(path.read_text())
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute("DROP DATABASE IF EXISTS fleet_migrate_upgrade")
    await admin.execute("CREATE DATABASE fleet_migrate_upgrade")
    url = pg_admin_url.rsplit("/", 1)[0] + "/fleet_migrate_upgrade"
    conn = await asyncpg.connect(url)
    try:
        assert "016_alert_pending.sql" in await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT fleet_ensure_day('2031-01-01')") == 8
        applied = await migrate(conn)
        assert applied[0] == "017_device_kinds.sql"
        kinds = await conn.fetch("SELECT name FROM fleet_kinds ORDER BY 1")
        assert [r[0] for r in kinds] == ["meter", "vehicle"]
        assert await conn.fetchval("SELECT fleet_ensure_day('2031-01-01')") == 0
        assert await conn.fetchval("SELECT fleet_ensure_day('2031-01-02')") == 8
        assert await conn.fetchval("SELECT fleet_ensure_cold_day('2031-01-01')") == 4
        await conn.execute("UPDATE fleet_days SET state = 'compacted' WHERE day = '2031-01-01'")
        assert await conn.fetchval("SELECT fleet_drop_compacted_day('2031-01-01')") == 8
        assert await conn.fetchval("SELECT to_regclass('vehicle_4h_p20310101')") is None
        assert await conn.fetchval("SELECT to_regclass('vehicle_4h_p20310102')") is not None
    finally:
        await conn.close()
        await admin.execute("DROP DATABASE IF EXISTS fleet_migrate_upgrade WITH (FORCE)")
        await admin.close()
