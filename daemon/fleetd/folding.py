"""The rollup fold, every FLEET_FOLD_INTERVAL_S seconds on a connection of its own
(fleetdb.fold): buckets that ended FLEET_FOLD_GRACE_S ago are aggregated from the finer
source and their watermark moved on, in one transaction. Failures are logged and retried at
the next round; a killed fold leaves nothing behind (reports read the finer levels meanwhile)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from fleetdb.connect import connect
from fleetdb.fold import fold
from fleetdb.kinds import DeviceKind

log = structlog.get_logger("fleetd")


class FoldLoop:
    """fold() now and every `interval_s` seconds, until cancelled."""

    def __init__(
        self,
        database_url: str,
        kinds: tuple[DeviceKind, ...],
        *,
        interval_s: float,
        grace: timedelta,
    ) -> None:
        self.database_url = database_url
        self.kinds = kinds
        self.interval_s = interval_s
        self.grace = grace
        self.folds = 0  # committed folds that moved a watermark (tests, logs)

    async def once(self) -> None:
        """One fold on a connection of its own."""
        conn = await connect(self.database_url, application_name="fleetd-fold")
        try:
            done = await fold(conn, datetime.now(UTC), self.grace, self.kinds)
        finally:
            await conn.close()
        if done.spans:
            self.folds += 1
            log.debug("rollups_folded", **{k: hi.isoformat() for k, (_, hi) in done.spans.items()})

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("fold_failed", error=f"{exc.__class__.__name__}: {exc}")
            await asyncio.sleep(self.interval_s)
