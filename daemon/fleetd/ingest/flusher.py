"""Write batches to PostgreSQL until they commit: reconnects, retries with capped backoff,
creates missing partitions, and isolates a row the database refuses instead of stalling."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import structlog

from fleetd.ingest.batcher import Batch, Envelope
from fleetd.ingest.writer import WriteResult, write_batch
from fleetd.messages import MeterReading, Rejected, VehicleReading
from fleetd.metrics import Metrics
from fleetdb.connect import TRANSIENT_ERRORS, connect
from fleetdb.partitions import PartitionCache

log = structlog.get_logger("fleetd.db")

MAX_BACKOFF_S = 5.0


class _Slot:
    """One writer connection (None until connected or after a failure)."""

    conn: asyncpg.Connection | None = None


class Flusher:
    """Owns the ingest connections: `writers` batches may be in their transactions at once (a
    second connection lets PostgreSQL use a second core). `write()` returns only once the batch
    committed, or raises CancelledError if the daemon gives up (shutdown while the DB is down).
    """

    def __init__(
        self,
        dsn: str,
        metrics: Metrics,
        on_state: Callable[[bool], None] | None = None,
        *,
        writers: int = 1,
    ) -> None:
        self._dsn = dsn
        self._metrics = metrics
        self._on_state = on_state
        self.writers = writers
        self._slots = [_Slot() for _ in range(writers)]
        self._idle: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._slots:
            self._idle.put_nowait(slot)
        self._partitions = PartitionCache()
        self.healthy = False
        self.last_attempt_ok = True  # False from a failed write until the next commit
        self.last_success_mono = 0.0
        self.last_error: str | None = None

    async def _connection(self, slot: _Slot) -> asyncpg.Connection:
        """The slot's live connection, reconnecting if needed (raises a transient error)."""
        if slot.conn is None or slot.conn.is_closed():
            slot.conn = await connect(self._dsn)
            await self._partitions.ensure_ahead(slot.conn)
        return slot.conn

    async def close(self) -> None:
        """Close every connection (quietly: they may already be dead)."""
        for slot in self._slots:
            await _close(slot)

    def _set_health(self, healthy: bool, error: str | None = None) -> None:
        if healthy != self.healthy:
            if healthy:
                log.info("database_available")
            else:
                log.warning("database_unavailable", error=error)
                self._metrics.db_reconnects.inc()
            self.healthy = healthy
            if self._on_state is not None:
                self._on_state(healthy)
        self.last_error = error

    async def write(self, batch: Batch) -> WriteResult:
        """Commit `batch`, retrying transient failures forever with capped, jittered backoff."""
        slot = await self._idle.get()
        try:
            attempt = 0
            while True:
                try:
                    conn = await self._connection(slot)
                    result = await self._write_isolating(conn, batch.envelopes)
                except TRANSIENT_ERRORS as exc:
                    attempt += 1
                    self.last_attempt_ok = False
                    self._metrics.db_errors.labels("transient").inc()
                    self._set_health(False, f"{exc.__class__.__name__}: {exc}")
                    await _close(slot)
                    backoff = random.uniform(0.5, 1.0) * 0.2 * 2**attempt
                    await asyncio.sleep(min(MAX_BACKOFF_S, backoff))
                    continue
                self._set_health(True)
                self.last_attempt_ok = True
                self.last_success_mono = time.monotonic()
                return result
        finally:
            self._idle.put_nowait(slot)

    async def ensure_ahead(self) -> None:
        """Create partitions for today and the days ahead (hourly maintenance)."""
        slot = await self._idle.get()
        try:
            await self._partitions.ensure_ahead(await self._connection(slot))
            self._set_health(True)
        finally:
            self._idle.put_nowait(slot)

    async def _write_isolating(
        self, conn: asyncpg.Connection, envelopes: list[Envelope]
    ) -> WriteResult:
        days = {e.item.ts.date() for e in envelopes if not isinstance(e.item, Rejected)}
        await self._partitions.ensure(conn, days)
        try:
            return await _write(conn, envelopes)
        except asyncpg.exceptions.CheckViolationError as exc:
            if "no partition" not in str(exc):
                raise
            # A partition we believed in was dropped (retention) meanwhile: recreate and retry.
            self._partitions.forget()
            await self._partitions.ensure(conn, days)
            return await _write(conn, envelopes)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            # Validation should make this impossible; if the database still refuses a row, find
            # it by halving so the rest of the batch commits and the row becomes a reject.
            self._metrics.db_errors.labels("data").inc()
            if len(envelopes) == 1:
                log.error("row_refused_by_database", error=str(exc))  # noqa: TRY400
                return await _write(conn, [_as_reject(envelopes[0], exc)])
            mid = len(envelopes) // 2
            left = await self._write_isolating(conn, envelopes[:mid])
            right = await self._write_isolating(conn, envelopes[mid:])
            return WriteResult(
                left.meters_inserted + right.meters_inserted,
                left.vehicles_inserted + right.vehicles_inserted,
                left.meters_total + right.meters_total,
                left.vehicles_total + right.vehicles_total,
                left.rejects + right.rejects,
            )


async def _close(slot: _Slot) -> None:
    if slot.conn is not None:
        try:
            await asyncio.wait_for(slot.conn.close(), timeout=2)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError):  # type: ignore[misc]
            slot.conn.terminate()
        slot.conn = None


def _as_reject(env: Envelope, exc: Exception) -> Envelope:
    item = env.item
    kind = "meters" if isinstance(item, MeterReading) else "vehicles"
    device = item.meter_id if isinstance(item, MeterReading) else getattr(item, "vehicle_id", "?")
    reject = Rejected(f"{kind}/{device}/telemetry", repr(item).encode(), f"database: {exc}")
    return Envelope(reject, env.received_at, env.received_mono, env.mid, env.qos, env.generation)


async def _write(conn: asyncpg.Connection, envelopes: list[Envelope]) -> WriteResult:
    meters: list[tuple[MeterReading, datetime]] = []
    vehicles: list[tuple[VehicleReading, datetime]] = []
    rejects: list[tuple[Rejected, datetime]] = []
    for e in envelopes:
        item = e.item
        if isinstance(item, MeterReading):
            meters.append((item, e.received_at))
        elif isinstance(item, VehicleReading):
            vehicles.append((item, e.received_at))
        else:
            rejects.append((item, e.received_at))
    return await write_batch(conn, meters, vehicles, rejects)


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)
