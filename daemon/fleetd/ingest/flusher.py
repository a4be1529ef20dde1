"""Write batches to PostgreSQL until they commit: reconnects, retries with capped backoff,
creates missing partitions, and isolates a row the database refuses instead of stalling.

A dead link is noticed by the writer's own socket (keepalive, TCP_USER_TIMEOUT: see
fleetdb.connect) or, as a last resort, by the write timeout, which terminates the connection
instead of sending asyncpg's cancel request (a new connection to a host that may be dead, which
held a writer for a minute after the link came back).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import structlog

from fleetd.ingest.batcher import Batch, Envelope
from fleetd.metrics import Metrics
from fleetd.waiting import Reminder, refused_backoff_s
from fleetdb.connect import TRANSIENT_ERRORS, connect_writer, terminate_if_late
from fleetdb.ingest.messages import Reading, Rejected
from fleetdb.ingest.writer import WriteResult, by_kind, write
from fleetdb.kinds import REGISTRY, DeviceKind
from fleetdb.migrate import check_schema
from fleetdb.partitions import PartitionCache
from fleetdb.refusals import Refusal, refusal
from fleetdb.replication import Replication, replication

log = structlog.get_logger("fleetd.db")

T = TypeVar("T")

# The longest wait between two tries of a writer, counted from the start of the failed try (a
# connect to a silent host takes CONNECT_TIMEOUT_S itself): it bounds how long a writer stays
# down after the database or the link to it is back.
MAX_BACKOFF_S = 2.0
# A write transaction with no answer for this long is given up and its connection terminated.
# Sized on the bench's write-path stage: 5,000-row batches (fleetd's largest) on two connections
# took 284 ms median, 461 ms at worst over 40 batches on a busy 2-core machine
# (docs/operations.md); 15 s is over 30 times the slowest, for slower disks and checkpoints.
WRITE_TIMEOUT_S = 15.0
# How often a writer asks again whether the server replicates synchronously (Patroni's
# synchronous_mode turns it off by itself when the synchronous standby goes away).
REPLICATION_CHECK_S = 60.0
# Errors after which a writer reconnects and retries, beyond the transient ones: a server that
# became read-only (demoted in a failover, or default_transaction_read_only set) while a writer
# was connected; a new connection finds the writable host of a multi-host URL.
RETRY_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
# A refusal (fleetdb.refusals: the login refused, no such database, a privilege missing, the
# schema older than this fleetd) is retried slowly (fleetd.waiting says why).
# How long start-up waits between tries of an unreachable database (as before the rework).
STARTUP_BACKOFF_MAX_S = 5.0
VARIABLE = "FLEET_DATABASE_URL"
PRIVILEGE_FIX = (
    f"make the login of {VARIABLE} a member of fleet_ingest (GRANT fleet_ingest TO <login>); "
    "after an upgrade, run `fleetd migrate` as the schema owner"
)


class _Slot:
    """One writer connection (None until connected or after a failure)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.conn: asyncpg.Connection | None = None


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
        write_timeout_s: float = WRITE_TIMEOUT_S,
        kinds: tuple[DeviceKind, ...] = REGISTRY,
    ) -> None:
        self._dsn = dsn
        self.kinds = kinds
        self._metrics = metrics
        self._on_state = on_state
        self.writers = writers
        self.write_timeout_s = write_timeout_s
        self._slots = [_Slot(i) for i in range(writers)]
        self._idle: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._slots:
            self._idle.put_nowait(slot)
        self._partitions = PartitionCache()
        self.healthy = False
        self.last_attempt_ok = True  # False from a failed write until the next commit
        self.last_success_mono = 0.0
        self.last_error: str | None = None
        self.problem: Refusal | None = None  # what the database refuses, until it stops
        self._reminder = Reminder()
        self._newer_warned = False
        self.replication: Replication | None = None  # of the server written to last
        self._replication_checked_mono = 0.0

    @property
    def connected_writers(self) -> int:
        """Writers holding an open connection now."""
        return sum(1 for s in self._slots if s.conn is not None and not s.conn.is_closed())

    async def _connection(self, slot: _Slot) -> asyncpg.Connection:
        """The slot's live connection, reconnecting if needed (raises a transient error)."""
        if slot.conn is not None and not slot.conn.is_closed():
            return slot.conn
        slot.conn = None
        conn = await connect_writer(self._dsn, write_timeout_s=self.write_timeout_s)
        try:
            self._note_newer(await self._bounded(conn, check_schema(conn)))
            state = await self._bounded(conn, replication(conn))
            log.info(
                "database_writer_connected",
                writer=slot.index,
                server=state.server,
                synchronous_replication=state.synchronous,
            )
            self._note_replication(state)
            await self._bounded(conn, self._partitions.ensure_ahead(conn))
        except BaseException:
            conn.terminate()
            raise
        slot.conn = conn
        return conn

    def _note_newer(self, versions: list[str]) -> None:
        if versions and not self._newer_warned:
            # Migrations are additive so far: an older fleetd usually still works. Said once.
            log.warning(
                "database_schema_newer",
                unknown_migrations=versions,
                hint="a newer release migrated this database: upgrade fleetd to match it",
            )
            self._newer_warned = True

    def _note_replication(self, state: Replication) -> None:
        """Log and export what the server written to says about synchronous replication, at
        start and whenever it changes (another server after a failover, a new setting)."""
        self._replication_checked_mono = time.monotonic()
        self._metrics.db_synchronous_replication.set(1.0 if state.synchronous else 0.0)
        if state == self.replication:
            return
        self.replication = state
        # Info, not a warning, when asynchronous: a single server without standbys is a normal
        # deployment. What it means for a failover is in docs/operations.md.
        log.info(
            "database_replication",
            server=state.server,
            synchronous=state.synchronous,
            synchronous_standby_names=state.standby_names,
            synchronous_commit=state.synchronous_commit,
            synchronous_standbys_connected=state.sync_connected,
        )

    async def _recheck_replication(self, conn: asyncpg.Connection) -> None:
        if time.monotonic() - self._replication_checked_mono < REPLICATION_CHECK_S:
            return
        self._replication_checked_mono = time.monotonic()
        try:
            self._note_replication(await self._bounded(conn, replication(conn)))
        except RETRY_ERRORS as exc:
            # The batch is committed; the next write deals with the connection.
            log.debug("replication_check_failed", error=_reason(exc))

    async def _bounded(self, conn: asyncpg.Connection, work: Coroutine[Any, Any, T]) -> T:
        return await terminate_if_late(conn, work, self.write_timeout_s)

    async def close(self) -> None:
        """Close every connection (quietly: they may already be dead)."""
        for slot in self._slots:
            await _close(slot)

    def _set_health(self, healthy: bool, error: str | None = None) -> None:
        if healthy != self.healthy:
            if healthy:
                log.info("database_available", after_s=round(self._reminder.lasted_s(), 1))
            else:
                self._metrics.db_reconnects.inc()
            self.healthy = healthy
            if self._on_state is not None:
                self._on_state(healthy)
        if healthy:
            self._reminder.clear()
            self.problem = None
        elif self._reminder.due():  # at its start, then at most once a minute
            for_s = round(self._reminder.lasted_s())
            if self.problem is not None:
                log.error(
                    "database_refused", cause=self.problem.cause, fix=self.problem.fix, for_s=for_s
                )
            else:
                log.warning("database_unavailable", error=error, for_s=for_s)
        self.last_error = error

    def _failed(self, exc: BaseException) -> float | None:
        """Record a failed try; the backoff scale for the next one (None: not ours to retry).
        A refusal is recorded as the problem, with its own slow backoff."""
        if isinstance(exc, RETRY_ERRORS):
            self.problem = None
            self._metrics.db_errors.labels("transient").inc()
            self._set_health(False, _reason(exc))
            return 0.0
        found = refusal(exc, variable=VARIABLE, privilege_fix=PRIVILEGE_FIX)
        if found is None:
            return None
        self.problem = found
        self._metrics.db_errors.labels("refused").inc()
        self._set_health(False, str(found))
        return 1.0

    async def write(self, batch: Batch) -> WriteResult:
        """Commit `batch`, retrying transient failures forever with capped, jittered backoff."""
        slot = await self._idle.get()
        loop = asyncio.get_running_loop()
        try:
            attempt = 0
            while True:
                started = loop.time()
                try:
                    conn = await self._connection(slot)
                    result = await self._bounded(conn, self._write_isolating(conn, batch.envelopes))
                except Exception as exc:
                    refused = self._failed(exc)
                    if refused is None:
                        raise
                    attempt += 1
                    self.last_attempt_ok = False
                    _terminate(slot)
                    backoff = retry_delay_s(attempt, refused=bool(refused), cap_s=MAX_BACKOFF_S)
                    await asyncio.sleep(max(0.0, backoff - (loop.time() - started)))
                    continue
                self._set_health(True)
                self.last_attempt_ok = True
                self.last_success_mono = time.monotonic()
                await self._recheck_replication(conn)
                return result
        finally:
            self._idle.put_nowait(slot)

    async def start(self, stopping: asyncio.Event) -> None:
        """Wait until a writer connects, finds the schema current and creates today's
        partitions and those ahead; retry what fails (a refusal slowly), until `stopping`."""
        attempt = 0
        while not stopping.is_set():
            try:
                await self.ensure_ahead()
                return
            except Exception as exc:
                refused = self._failed(exc)
                if refused is None:  # not a database error we know: said, and tried again
                    self._set_health(False, _reason(exc))
                attempt += 1
                delay = retry_delay_s(attempt, refused=bool(refused), cap_s=STARTUP_BACKOFF_MAX_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=delay)

    async def ensure_ahead(self) -> None:
        """Create partitions for today and the days ahead (hourly maintenance)."""
        slot = await self._idle.get()
        try:
            try:
                conn = await self._connection(slot)
                await self._bounded(conn, self._partitions.ensure_ahead(conn))
            except Exception:
                _terminate(slot)
                raise
            self._set_health(True)
        finally:
            self._idle.put_nowait(slot)

    async def _write_isolating(
        self, conn: asyncpg.Connection, envelopes: list[Envelope]
    ) -> WriteResult:
        days = {e.item.ts.date() for e in envelopes if not isinstance(e.item, Rejected)}
        await self._partitions.ensure(conn, days)
        try:
            return await _write(conn, envelopes, self.kinds)
        except asyncpg.exceptions.CheckViolationError as exc:
            if "no partition" not in str(exc):
                raise
            # A partition we believed in was dropped (retention) meanwhile: recreate and retry.
            self._partitions.forget()
            await self._partitions.ensure(conn, days)
            return await _write(conn, envelopes, self.kinds)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            # Validation should make this impossible; if the database still refuses a row, find
            # it by halving so the rest of the batch commits and the row becomes a reject.
            self._metrics.db_errors.labels("data").inc()
            if len(envelopes) == 1:
                log.error("row_refused_by_database", error=str(exc))  # noqa: TRY400
                reject = _as_reject(envelopes[0], exc, self.kinds)
                result = await _write(conn, [reject], self.kinds)
                assert isinstance(reject.item, Rejected)
                refused = ((id(envelopes[0].item), reject.item.reason),)
                return dataclasses.replace(result, refused=refused)
            mid = len(envelopes) // 2
            left = await self._write_isolating(conn, envelopes[:mid])
            return left + await self._write_isolating(conn, envelopes[mid:])


def retry_delay_s(attempt: int, *, refused: bool, cap_s: float) -> float:
    """Jittered delay before try `attempt` + 1 (from 1): capped at `cap_s` for an unreachable
    database, minutes for a refusal (fleetd.waiting)."""
    if refused:
        return refused_backoff_s(attempt)
    return min(cap_s, random.uniform(0.5, 1.0) * 0.2 * 2.0**attempt)


def _reason(exc: BaseException) -> str:
    """`Class: message`, with the OS error underneath when the message alone says little
    ("connection was closed in the middle of operation", or a transaction's exit on a closed
    connection after the socket timed out)."""
    text = f"{exc.__class__.__name__}: {exc}".rstrip(": ")
    seen: set[int] = set()
    below = exc.__cause__ or exc.__context__
    while below is not None and id(below) not in seen:
        seen.add(id(below))
        if isinstance(below, OSError) and str(below):
            return f"{text} ({below.__class__.__name__}: {below})"
        below = below.__cause__ or below.__context__
    return text


def _terminate(slot: _Slot) -> None:
    """Drop a writer's connection after a failure at once: no goodbye to a server that may not
    answer (the server rolls back what the connection had open)."""
    if slot.conn is not None:
        slot.conn.terminate()
        slot.conn = None


async def _close(slot: _Slot) -> None:
    if slot.conn is not None:
        try:
            await asyncio.wait_for(slot.conn.close(), timeout=2)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError):  # type: ignore[misc]
            slot.conn.terminate()
        slot.conn = None


def _as_reject(env: Envelope, exc: Exception, kinds: tuple[DeviceKind, ...]) -> Envelope:
    item = env.item
    kind = next((k for k in kinds if isinstance(item, k.reading)), None)
    level = kind.topic if kind is not None else "unknown"
    device = getattr(item, kind.device, "?") if kind is not None else "?"
    topic, reason = f"{level}/{device}/telemetry", f"database: {exc}"
    # The message may quote the value: the rule is the error's kind (e.g. NumericValueOutOfRange).
    rule = f"refused: {type(exc).__name__}"
    reject = Rejected(topic, repr(item).encode(), reason, "database", rule)
    return dataclasses.replace(env, item=reject)


async def _write(
    conn: asyncpg.Connection, envelopes: list[Envelope], kinds: tuple[DeviceKind, ...]
) -> WriteResult:
    readings: list[tuple[Reading, datetime]] = []
    rejects: list[tuple[Rejected, datetime]] = []
    for e in envelopes:
        item = e.item
        if isinstance(item, Rejected):
            rejects.append((item, e.received_at))
        else:
            readings.append((item, e.received_at))
    return await write(conn, by_kind(readings, kinds), rejects)


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)
