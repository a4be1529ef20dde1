"""`fleetd migrate` is idempotent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

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
