"""A second connection for reports that can use one: two statements of one report run at once
on two server cores. Kept because interleaved A/Bs of the whole calls (docs/performance.md)
measured it well above 10 % of the fleet report and of current-all."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from fleetctl.analytics.energy import DB

_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$")
_SPARE_TIMEOUT_S = 1.0


@asynccontextmanager
async def spare(db: DB) -> AsyncIterator[asyncpg.Connection | None]:
    """A second connection when `db` is a pool with one to spare, else None."""
    if not isinstance(db, asyncpg.Pool) or (
        db.get_idle_size() == 0 and db.get_size() >= db.get_max_size()
    ):
        yield None
        return
    try:
        # Bounded: callers holding one connection each must never wait on each other's second.
        proxy = await db.acquire(timeout=_SPARE_TIMEOUT_S)
    except TimeoutError:
        yield None
        return
    try:
        yield cast(asyncpg.Connection, proxy)  # the proxy forwards every Connection method
    finally:
        await db.release(proxy)


@asynccontextmanager
async def same_snapshot(db: DB, conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A second connection of pool `db` reading the snapshot of `conn`'s transaction (exported
    with pg_export_snapshot), or `conn` itself when there is none to spare."""
    async with spare(db) as other:
        if other is None:
            yield conn
            return
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        # SET TRANSACTION SNAPSHOT takes no parameters: the id is the server's own, checked too.
        if not _SNAPSHOT_ID.match(snapshot):
            raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
        async with other.transaction(isolation="repeatable_read", readonly=True):
            await other.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            yield other
