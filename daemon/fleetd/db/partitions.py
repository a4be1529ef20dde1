"""Daily partitions: created ahead, and on demand for whatever day a batch needs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import asyncpg

DAYS_AHEAD = 2


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
            created += await conn.fetchval("SELECT fleet_ensure_day($1)", day)
            self._known.add(day)
        return created

    async def ensure_ahead(self, conn: asyncpg.Connection, today: date | None = None) -> int:
        """Today (UTC) and DAYS_AHEAD days after it."""
        start = today or datetime.now(UTC).date()
        return await self.ensure(conn, (start + timedelta(days=d) for d in range(DAYS_AHEAD + 1)))

    def forget(self) -> None:
        """Drop the cache, e.g. after a partition was dropped by retention."""
        self._known.clear()
