"""Daily partitions: created ahead, and on demand for whatever day a batch needs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import asyncpg

DAYS_AHEAD = 2
_ATTEMPTS = 3

# Two sessions creating the same day at once (fleetd's writer connections, or two daemons, on
# the first batch of a new day): fleet_ensure_day serialises them with an advisory lock and
# looks again, but inside one statement that second look can still miss the table the other
# session has just committed, and CREATE TABLE then fails with "already exists" (seen in CI
# just after midnight UTC). A new statement sees it, so the call is simply repeated.
_CREATED_MEANWHILE = (
    asyncpg.exceptions.DuplicateTableError,
    asyncpg.exceptions.UniqueViolationError,
)


async def _ensure_day(conn: asyncpg.Connection, day: date) -> int:
    sql = "SELECT fleet_ensure_day($1)"
    for _ in range(_ATTEMPTS - 1):
        try:
            return int(await conn.fetchval(sql, day))
        except _CREATED_MEANWHILE:
            continue
    return int(await conn.fetchval(sql, day))


class PartitionCache:
    """Remembers which days already have partitions so the hot path asks the database only
    for a day it has not seen (about once a day, plus late data)."""

    def __init__(self) -> None:
        self._known: set[date] = set()

    async def ensure(self, conn: asyncpg.Connection, days: Iterable[date]) -> int:
        """Create the partitions of every day in `days` that may be missing; return how many
        tables were created. Runs outside the batch transaction: DDL commits on its own."""
        created = 0
        for day in sorted(set(days) - self._known):
            created += await _ensure_day(conn, day)
            self._known.add(day)
        return created

    async def ensure_ahead(self, conn: asyncpg.Connection, today: date | None = None) -> int:
        """Today (UTC) and DAYS_AHEAD days after it."""
        start = today or datetime.now(UTC).date()
        return await self.ensure(conn, (start + timedelta(days=d) for d in range(DAYS_AHEAD + 1)))

    def forget(self) -> None:
        """Drop the cache, e.g. after a partition was dropped by retention."""
        self._known.clear()
