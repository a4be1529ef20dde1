"""The rollup fold, every FLEET_FOLD_INTERVAL_S seconds on a connection of its own
(fleetdb.fold): buckets that ended FLEET_FOLD_GRACE_S ago are aggregated from the finer
source and their watermark moved on, in one transaction. Failures are logged and retried at
the next round; a killed fold leaves nothing behind (reports read the finer levels meanwhile)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from fleetdb.connect import connect
from fleetdb.fold import FoldRefusedError, fold
from fleetdb.kinds import DeviceKind

log = structlog.get_logger("fleetd")


# While fleetd drains a backlog, a fold would move the watermarks past the buckets the backlog
# is still filling, and the rest of it would take the late path (an upsert per reading and
# level: ~17 µs of PostgreSQL CPU instead of ~1.5): it waits, at most this many rounds.
MAX_SKIPS = 10


class FoldLoop:
    """fold() every `interval_s` seconds, until cancelled; a round is skipped while
    `backlog()` says fleetd is draining one (at most MAX_SKIPS in a row)."""

    def __init__(
        self,
        database_url: str,
        kinds: tuple[DeviceKind, ...],
        *,
        interval_s: float,
        grace: timedelta,
        backlog: Callable[[], bool] = lambda: False,
    ) -> None:
        self.database_url = database_url
        self.backlog = backlog
        self.kinds = kinds
        self.interval_s = interval_s
        self.grace = grace
        self.folds = 0  # committed folds that moved a watermark (tests, logs)

    async def once(self) -> bool:
        """One fold on a connection of its own; whether more is due at once (catching up)."""
        conn = await connect(self.database_url, application_name="fleetd-fold")
        try:
            done = await fold(conn, datetime.now(UTC), self.grace, self.kinds)
        finally:
            await conn.close()
        if done.spans:
            self.folds += 1
            log.debug("rollups_folded", **{k: hi.isoformat() for k, (_, hi) in done.spans.items()})
        return done.behind

    async def run(self) -> None:
        skipped = 0
        while True:
            # First after a round's wait: a start-up after a stop usually begins with a backlog.
            await asyncio.sleep(self.interval_s)
            if self.backlog() and skipped < MAX_SKIPS:
                skipped += 1
                continue
            skipped = 0
            try:
                # Catching up after a stop: one MAX_SPAN per transaction, flushes in between
                # (a day's worth per round at most).
                for _ in range(24):
                    if not await self.once():
                        break
                    await asyncio.sleep(0.1)
            except (OSError, asyncpg.PostgresError, FoldRefusedError) as exc:
                log.warning("fold_failed", error=f"{exc.__class__.__name__}: {exc}")
