"""The migration fleetdb.kind_tables prints for a kind makes the tables the registry describes:
for the built-in kinds, the same columns (names, types, nullability, collation) as their
hand-written migrations made, so a new kind's tables are shaped like theirs."""

from __future__ import annotations

import asyncpg
import pytest

from fleetdb.kind_tables import create_tables_sql, main
from fleetdb.kinds import REGISTRY, DeviceKind

pytestmark = pytest.mark.integration

_COLUMNS = """
SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, is_nullable,
       collation_name
  FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name = ANY($1::text[])"""


def _tables(kind: DeviceKind) -> list[str]:
    return [kind.history, kind.current, kind.late, *kind.rollups, kind.cold, kind.hours]


async def test_the_printed_migration_makes_the_built_in_kinds_tables(
    pg_admin_url: str, db: asyncpg.Connection
) -> None:
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute("DROP DATABASE IF EXISTS fleet_kind_tables")
    await admin.execute("CREATE DATABASE fleet_kind_tables")
    conn = await asyncpg.connect(pg_admin_url.rsplit("/", 1)[0] + "/fleet_kind_tables")
    try:
        await conn.execute("CREATE TABLE fleet_kinds (name text PRIMARY KEY)")
        for kind in REGISTRY:
            await conn.execute(create_tables_sql(kind))
            await conn.execute(create_tables_sql(kind))  # idempotent, like every migration
            made = {tuple(r) for r in await conn.fetch(_COLUMNS, _tables(kind))}
            migrated = {tuple(r) for r in await db.fetch(_COLUMNS, _tables(kind))}
            assert made == migrated, kind.name
        assert [r[0] for r in await conn.fetch("SELECT name FROM fleet_kinds ORDER BY 1")] == [
            k.name for k in REGISTRY
        ]
    finally:
        await conn.close()
        await admin.execute("DROP DATABASE IF EXISTS fleet_kind_tables WITH (FORCE)")
        await admin.close()


def test_the_command_prints_a_registered_kind_and_refuses_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["vehicle"]) == 0
    assert "CREATE TABLE IF NOT EXISTS vehicle_readings" in capsys.readouterr().out
    assert main(["tram"]) == 2
    assert "no kind 'tram'" in capsys.readouterr().err
