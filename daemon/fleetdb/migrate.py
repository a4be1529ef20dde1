"""Apply the numbered SQL files in sql/ once each, in order, and record them; then the files
in sql/functions/ on every run (the one definition of functions that later changes replace:
CREATE OR REPLACE, so a change is an edit there, not a copy in a new migration)."""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from fleetdb.refusals import MissingPrivilegeError, SchemaOutdatedError

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x666C656574  # "fleet": one migrator at a time across daemons
# A migration may fill a new table from all stored history (009 builds two rollup levels from
# 201 M readings in minutes): no statement timeout of a daemon's connection applies to it.
_MIGRATION_TIMEOUT_S = 24 * 3600.0
_IN_A_FLEET_ROLE = """SELECT coalesce(bool_or(pg_has_role(r, 'MEMBER')), false)
    FROM unnest(ARRAY['fleet_ingest', 'fleet_analytics', 'fleet_admin']) AS r
    WHERE to_regrole(r) IS NOT NULL"""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def sql_dir() -> Path:
    """The migrations: shipped inside the wheel as fleetdb/sql, or the repo's sql/ in a checkout."""
    packaged = importlib.resources.files("fleetdb") / "sql"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "sql"


def load_functions(directory: Path | None = None) -> list[tuple[str, str]]:
    """(name, SQL) of every functions/*.sql file, by name."""
    folder = (directory or sql_dir()) / "functions"
    return [(p.name, p.read_text()) for p in sorted(folder.glob("*.sql"))]


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Every NNN_name.sql file, sorted by number; duplicate numbers are an error."""
    found: dict[str, Migration] = {}
    for path in sorted((directory or sql_dir()).glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            continue
        version = match.group(1)
        if version in found:
            raise ValueError(
                f"two migrations numbered {version}: {found[version].name}, {path.name}"
            )
        found[version] = Migration(version, path.name, path.read_text())
    return [found[v] for v in sorted(found)]


async def migrate(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied. Then
    (re)define the functions of sql/functions/ in one transaction.

    Running it again applies no migration. An applied file whose content changed is an error:
    write a new numbered file instead.
    """
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    text PRIMARY KEY,
               name       text NOT NULL,
               checksum   text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for mig in load_migrations(directory):
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise RuntimeError(f"migration {mig.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(mig.sql, timeout=_MIGRATION_TIMEOUT_S)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            applied.append(mig.name)
        # After the migrations: they create what the functions use (e.g. fleet_kinds).
        async with conn.transaction():
            for _name, sql in load_functions(directory):
                await conn.execute(sql)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied


async def check_schema(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """Compare the applied migrations with the ones shipped here: SchemaOutdatedError naming
    the first missing one (never migrated, an older backup restored, an upgrade without
    `fleetd migrate`); else the applied versions this code does not know (a newer release
    migrated the database: usually compatible, worth a warning). Three small reads, for any
    login (013 grants them)."""
    shipped = load_migrations(directory)
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        raise SchemaOutdatedError("no migration applied")
    if not await conn.fetchval("SELECT has_table_privilege('schema_migrations', 'SELECT')"):
        if not await conn.fetchval(_IN_A_FLEET_ROLE):
            raise MissingPrivilegeError("the login is in none of the fleet_* roles")
        # Readable by every login since 013: a database that refuses it predates 013.
        raise SchemaOutdatedError("schema_migrations not readable: migrations from 013 on missing")
    applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    missing = [m.name for m in shipped if m.version not in applied]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise SchemaOutdatedError(f"{missing[0]}{more} not applied")
    return sorted(applied - {m.version for m in shipped})
