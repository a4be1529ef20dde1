"""Apply the numbered SQL files in sql/ once each, in order, and record them."""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x666C656574  # "fleet": one migrator at a time across daemons
# A migration may fill a new table from all stored history (009 builds two rollup levels from
# 201 M readings in minutes): no statement timeout of a daemon's connection applies to it.
_MIGRATION_TIMEOUT_S = 24 * 3600.0


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
    """Apply pending migrations, each in its own transaction; return the names applied.

    Running it again applies nothing. An applied file whose content changed is an error:
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
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied
