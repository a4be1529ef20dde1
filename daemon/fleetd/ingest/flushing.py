"""Batches out of the buffer, into their transactions, and acked once committed: up to
`writers` transactions at once, acks released in arrival order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from fleetd.ingest.acks import Ack, AckSequencer
from fleetd.ingest.batcher import Batch, Batcher
from fleetd.ingest.flusher import Flusher
from fleetd.ingest.intake import Counters
from fleetd.ingest.tickets import Outcome
from fleetd.metrics import Metrics
from fleetdb.ingest.messages import Rejected
from fleetdb.ingest.writer import WriteResult
from fleetdb.kinds import REGISTRY, DeviceKind

log = structlog.get_logger("fleetd")


class FlushLoop:
    """`run()` cuts batches and writes them until `stop()` and the buffer is empty."""

    def __init__(
        self,
        batcher: Batcher,
        flusher: Flusher,
        counters: Counters,
        metrics: Metrics,
        *,
        ack: Ack,
        on_committed: Callable[[], None],
    ) -> None:
        self._batcher = batcher
        self._flusher = flusher
        self._counters = counters
        self._metrics = metrics
        self._acks = AckSequencer(ack)
        self._on_committed = on_committed
        self._stopping = False
        self.in_flight = 0  # messages taken from the batcher whose transaction is running
        self.last_commit_mono = time.monotonic()
        self._started: dict[int, float] = {}  # seq -> monotonic start, while running

    def stop(self) -> None:
        """Write what is buffered without waiting for a full batch, then return from run()."""
        self._stopping = True
        self._batcher.wake()

    def oldest_age_s(self, now: float | None = None) -> float:
        """How long the oldest running transaction has been running (0 when none)."""
        if not self._started:
            return 0.0
        return (time.monotonic() if now is None else now) - min(self._started.values())

    async def run(self) -> None:
        # A batch is cut only when a writer is free, so rows keep accumulating into it while the
        # others commit.
        free = asyncio.Semaphore(self._flusher.writers)
        seq = 0
        async with asyncio.TaskGroup() as writers:
            while True:
                if not self._stopping:
                    await self._batcher.wait_ready()
                await free.acquire()
                if self._stopping and not len(self._batcher):
                    free.release()
                    break
                batch = self._batcher.take()
                if not batch:
                    free.release()
                    continue
                self.in_flight += len(batch)
                writers.create_task(self._flush(batch, seq, free), name=f"flush-{seq}")
                seq += 1

    async def _flush(self, batch: Batch, seq: int, free: asyncio.Semaphore) -> None:
        started = time.monotonic()
        self._started[seq] = started
        try:
            result = await self._flusher.write(batch)
        finally:
            self.in_flight -= len(batch)
            del self._started[seq]
            free.release()
        committed = time.monotonic()
        acked, skipped = self._acks.committed(seq, batch)
        settle(batch, result, self._flusher.kinds)
        c = self._counters
        c.flushes += 1
        c.written += result.inserted
        c.duplicates += result.duplicates
        c.conflicts += result.conflicts
        c.acked += acked
        c.acks_skipped += skipped
        self.last_commit_mono = committed
        self._record_metrics(batch, result, started)
        if skipped:
            self._metrics.acks_skipped.inc(skipped)
        log.debug(
            "flushed",
            rows=len(batch),
            inserted=result.inserted,
            duplicates=result.duplicates,
            conflicts=result.conflicts,
            rejects=result.rejects,
            ms=round((committed - started) * 1000, 1),
            acked=acked,
        )
        if result.conflicts:
            # Kept for an operator (fleetctl rejects); the stored readings did not change.
            log.warning("readings_conflict_with_stored", conflicts=result.conflicts)
        self._on_committed()

    def _record_metrics(self, batch: Batch, result: WriteResult, started: float) -> None:
        m = self._metrics
        now_wall = datetime.now(UTC)
        m.flush_duration.observe(time.monotonic() - started)
        m.batch_size.observe(len(batch))
        kinds = self._flusher.kinds
        for k in kinds:
            m.rows_written.labels(k.name).inc(result.inserted_by.get(k.name, 0))
        valid = dict.fromkeys((k.name for k in kinds), 0)
        of = {k.reading: k.name for k in kinds}
        for env in batch.envelopes:
            if not isinstance(env.item, Rejected):
                valid[of[type(env.item)]] += 1
        for name, n in valid.items():
            m.messages_valid.labels(name).inc(n)
            m.messages_received.labels(name).inc(n)
        # The lag histogram gets ~100 evenly spaced samples per batch, not every row: the
        # distribution is the same and a full observe() per row is ~5 % of the daemon's CPU.
        for env in batch.envelopes[:: max(1, len(batch) // 100)]:
            if not isinstance(env.item, Rejected):
                m.lag.observe(max(0.0, (now_wall - env.item.ts).total_seconds()))
        for (kind, fld), n in self._counters.rejected_by_field.items():
            m.messages_rejected.labels(kind, fld).inc(n)
            m.messages_received.labels(kind.rstrip("s")).inc(n)
        self._counters.rejected_by_field.clear()
        m.duplicates.inc(result.duplicates)
        if result.conflicts:
            for k in kinds:
                m.conflicts.labels(k.name).inc(result.conflicts_by.get(k.name, 0))
        m.buffer_depth.set(len(self._batcher))
        m.oldest_unacked_age.set(self._batcher.oldest_age_s())


def settle(batch: Batch, result: WriteResult, kinds: tuple[DeviceKind, ...] = REGISTRY) -> None:
    """Tell each HTTP request's items in `batch` what became of them, now that it committed.

    A reading the history INSERT left out (`result.missed`) is a duplicate or a conflict; of
    equal copies of one key in a batch the first (arrival order, as the INSERT orders ties) is
    the one stored and the INSERT does not list the others, so they are told apart here."""
    if all(env.ticket is None for env in batch.envelopes):
        return
    refused = dict(result.refused)
    of = {k.reading: k for k in kinds}
    seen: set[tuple[str, str, datetime]] = set()
    for env in batch.envelopes:
        item = env.item
        if isinstance(item, Rejected):
            if env.ticket is not None:
                env.ticket.settle(env.index, Outcome("rejected", item.reason))
            continue
        kind = of[type(item)]
        key = (kind.name, getattr(item, kind.device), item.ts)
        first = key not in seen
        seen.add(key)
        if env.ticket is None:
            continue
        if id(item) in refused:
            outcome = Outcome("rejected", refused[id(item)])
        elif id(item) not in result.missed:
            outcome = Outcome("stored" if first else "duplicate")
        elif key in result.conflict_keys:
            outcome = Outcome("conflict")
        else:
            outcome = Outcome("duplicate")
        env.ticket.settle(env.index, outcome)
