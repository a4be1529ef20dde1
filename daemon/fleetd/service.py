"""The fleetd daemon: an object a test can start and stop in-process.

Data flows one way: MQTT message -> decode/validate -> Batcher -> Flusher (one transaction)
-> ack to the broker. Nothing is acked before the transaction that holds it commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from fleetd.ingest.acks import AckSequencer
from fleetd.ingest.batcher import Batch, Batcher, Envelope
from fleetd.ingest.flusher import Flusher
from fleetd.ingest.writer import WriteResult
from fleetd.messages import MeterReading, Rejected, VehicleReading, decode
from fleetd.metrics import Metrics
from fleetd.mqtt.subscriber import MqttSubscriber
from fleetd.settings import Settings
from fleetdb.connect import connect
from fleetdb.retention import HISTORY, ROLLUPS, drop_older_than

log = structlog.get_logger("fleetd")

SHUTDOWN_GRACE_S = 8.0  # systemd and tests expect exit within 10 s of SIGTERM
MAINTENANCE_INTERVAL_S = 3600.0


@dataclass
class Counters:
    """Plain counters bumped on the hot path; summed into Prometheus once per flush."""

    received: int = 0
    valid: int = 0
    rejected: int = 0
    written: int = 0
    duplicates: int = 0
    flushes: int = 0
    acks_skipped: int = 0
    rejected_by_field: dict[tuple[str, str], int] = field(default_factory=dict)


class Daemon:
    """Subscribe, validate, batch, write, ack. `run()` until `request_stop()`."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.counters = Counters()
        self.batcher = Batcher(
            batch_max_rows=settings.batch_max_rows,
            flush_interval_s=settings.flush_interval_ms / 1000,
            idle_s=settings.flush_idle_ms / 1000,
        )
        self.flusher = Flusher(settings.database_url, self.metrics, writers=settings.db_writers)
        self.mqtt = MqttSubscriber(
            url=settings.mqtt_url,
            client_id=settings.client_id,
            on_message=self._on_message,
            keepalive_s=settings.mqtt_keepalive_s,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            max_packet_bytes=settings.mqtt_max_packet_bytes,
            share_group=settings.share_group,
            protocol=settings.mqtt_protocol,
            on_state=self._on_broker_state,
            on_oversized=self._on_oversized,
        )
        self.ready = asyncio.Event()
        self.last_flush_mono = time.monotonic()
        self._in_flight = 0  # messages taken from the batcher whose transaction is running
        self._flush_started: dict[int, float] = {}  # seq -> monotonic start, while running
        self._acks = AckSequencer(self.mqtt.ack)
        self._stopping = asyncio.Event()
        self._max_future = timedelta(seconds=settings.max_future_s)
        self._max_past = timedelta(days=settings.max_past_days)
        self._generation_seen = 0
        self._clock_mono = 0.0
        self._clock = datetime.now(UTC)
        # Extra tasks (ops HTTP server, systemd notifier) run alongside the pipeline.
        self.companions: list[Callable[[Daemon], Coroutine[Any, Any, None]]] = []
        self.on_flush: list[Callable[[Daemon], None]] = []

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until request_stop(); then stop reading, flush, ack and disconnect."""
        log.info("starting", **_loggable(self.settings))
        await self._wait_for_database()
        try:
            async with asyncio.TaskGroup() as tg:
                mqtt_task = tg.create_task(self.mqtt.run(self.ready), name="mqtt")
                flush_task = tg.create_task(self._flush_loop(), name="flush")
                maint_task = tg.create_task(self._maintenance_loop(), name="maintenance")
                extra = [tg.create_task(c(self), name="companion") for c in self.companions]
                await self._stopping.wait()
                log.info("stopping", buffered=len(self.batcher))
                self.mqtt.pause()
                maint_task.cancel()
                self.batcher.wake()
                try:
                    await asyncio.wait_for(asyncio.shield(flush_task), timeout=SHUTDOWN_GRACE_S)
                except TimeoutError:
                    log.warning("shutdown_flush_timeout", unwritten=len(self.batcher))
                    flush_task.cancel()
                await self.mqtt.disconnect()
                mqtt_task.cancel()
                for task in extra:
                    task.cancel()
        finally:
            await self.flusher.close()
        c = self.counters
        log.info(
            "stopped", received=c.received, written=c.written, rejected=c.rejected,
            duplicates=c.duplicates, flushes=c.flushes,
        )  # fmt: skip

    def request_stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def last_flush_ok(self) -> bool:
        """False from a failed write attempt until the next commit."""
        return self.flusher.last_attempt_ok

    @property
    def in_flight(self) -> int:
        """Messages whose flush transaction is running."""
        return self._in_flight

    def oldest_flush_age_s(self, now: float | None = None) -> float:
        """How long the oldest running flush has been in its transaction (0 when none)."""
        if not self._flush_started:
            return 0.0
        return (time.monotonic() if now is None else now) - min(self._flush_started.values())

    async def _wait_for_database(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                await self.flusher.ensure_ahead()
                return
            except Exception as exc:
                attempt += 1
                if attempt == 1:
                    log.warning("database_unavailable", error=f"{exc.__class__.__name__}: {exc}")
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))

    # --- hot path: one call per MQTT message, on the loop thread ------------------------------

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, generation: int) -> None:
        mono = time.monotonic()
        if mono - self._clock_mono > 0.002:
            # Wall-clock receive time, refreshed every 2 ms: messages of one socket read burst
            # share it, which saves a datetime per message at 2 ms resolution.
            self._clock_mono, self._clock = mono, datetime.now(UTC)
        now = self._clock
        item = decode(topic, payload, now, max_future=self._max_future, max_past=self._max_past)
        self.counters.received += 1
        if isinstance(item, Rejected):
            self.counters.rejected += 1
            key = (topic.split("/", 1)[0], item.reason.split(":", 1)[0])
            self.counters.rejected_by_field[key] = self.counters.rejected_by_field.get(key, 0) + 1
        else:
            self.counters.valid += 1
        self._buffer(Envelope(item, now, mono, mid, qos, generation))

    def _on_oversized(self, topic: str, size: int, mid: int, qos: int, generation: int) -> None:
        # Kept as a reject (without the payload, which was never read) and acked after commit
        # like any message: refusing it would make the broker redeliver it forever.
        limit = self.settings.mqtt_max_packet_bytes
        reason = f"packet: {size} bytes exceeds FLEET_MQTT_MAX_PACKET_BYTES ({limit})"
        self.counters.received += 1
        self.counters.rejected += 1
        key = (topic.split("/", 1)[0], "packet")
        self.counters.rejected_by_field[key] = self.counters.rejected_by_field.get(key, 0) + 1
        reject = Rejected(topic, b"", reason)
        self._buffer(Envelope(reject, datetime.now(UTC), time.monotonic(), mid, qos, generation))

    def _buffer(self, envelope: Envelope) -> None:
        self.batcher.add(envelope)
        if len(self.batcher) + self._in_flight >= self.settings.max_buffered_rows:
            self.mqtt.pause()

    def _on_broker_state(self, connected: bool) -> None:
        if connected:
            if self._generation_seen and self.mqtt.generation != self._generation_seen:
                self.metrics.broker_reconnects.inc()
            # Unwritten messages from an earlier connection can't be acked: the broker resends
            # them on this one, so drop the old copies now instead of writing them twice.
            dropped = self.batcher.drop_generation_before(self.mqtt.generation)
            if dropped:
                log.info("dropped_unacked_from_old_connection", messages=dropped)
            self._generation_seen = self.mqtt.generation

    # --- flushing -----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        # Up to db_writers batches are in their transactions at once. A batch is cut only when
        # a writer is free, so rows keep accumulating into it while the others commit.
        free = asyncio.Semaphore(self.flusher.writers)
        seq = 0
        async with asyncio.TaskGroup() as writers:
            while True:
                if not self._stopping.is_set():
                    await self.batcher.wait_ready()
                await free.acquire()
                if self._stopping.is_set() and not len(self.batcher):
                    free.release()
                    break
                batch = self.batcher.take()
                if not batch:
                    free.release()
                    continue
                self._in_flight += len(batch)
                writers.create_task(self._flush(batch, seq, free), name=f"flush-{seq}")
                seq += 1

    async def _flush(self, batch: Batch, seq: int, free: asyncio.Semaphore) -> None:
        started = time.monotonic()
        self._flush_started[seq] = started
        try:
            result = await self.flusher.write(batch)
        finally:
            self._in_flight -= len(batch)
            del self._flush_started[seq]
            free.release()
        committed = time.monotonic()
        acked, skipped = self._acks.committed(seq, batch)
        c = self.counters
        c.flushes += 1
        c.written += result.inserted
        c.duplicates += result.duplicates
        c.acks_skipped += skipped
        self.last_flush_mono = committed
        self._record_metrics(batch, result, started)
        if skipped:
            self.metrics.acks_skipped.inc(skipped)
        log.debug(
            "flushed", rows=len(batch), inserted=result.inserted, duplicates=result.duplicates,
            rejects=result.rejects, ms=round((committed - started) * 1000, 1), acked=acked,
        )  # fmt: skip
        for hook in self.on_flush:
            hook(self)
        self._maybe_resume()

    def _record_metrics(self, batch: Batch, result: WriteResult, started: float) -> None:
        m = self.metrics
        now_wall = datetime.now(UTC)
        m.flush_duration.observe(time.monotonic() - started)
        m.batch_size.observe(len(batch))
        m.rows_written.labels("meter").inc(result.meters_inserted)
        m.rows_written.labels("vehicle").inc(result.vehicles_inserted)
        meters = vehicles = 0
        for env in batch.envelopes:
            item = env.item
            if isinstance(item, MeterReading):
                meters += 1
            elif isinstance(item, VehicleReading):
                vehicles += 1
        # The lag histogram gets ~100 evenly spaced samples per batch, not every row: the
        # distribution is the same and a full observe() per row is ~5 % of the daemon's CPU.
        for env in batch.envelopes[:: max(1, len(batch) // 100)]:
            if not isinstance(env.item, Rejected):
                m.lag.observe(max(0.0, (now_wall - env.item.ts).total_seconds()))
        m.messages_valid.labels("meter").inc(meters)
        m.messages_valid.labels("vehicle").inc(vehicles)
        m.messages_received.labels("meter").inc(meters)
        m.messages_received.labels("vehicle").inc(vehicles)
        for (kind, fld), n in self.counters.rejected_by_field.items():
            m.messages_rejected.labels(kind, fld).inc(n)
            m.messages_received.labels(kind.rstrip("s")).inc(n)
        self.counters.rejected_by_field.clear()
        m.duplicates.inc(result.duplicates)
        m.buffer_depth.set(len(self.batcher))
        m.oldest_unacked_age.set(self.batcher.oldest_age_s())

    def _maybe_resume(self) -> None:
        # Resume with room for at least one full batch, so we don't flap pause/resume per row.
        limit = self.settings.max_buffered_rows
        room = len(self.batcher) <= max(0, limit - self.settings.batch_max_rows)
        if self.mqtt.paused and room and not self._stopping.is_set():
            self.mqtt.resume()

    async def _maintenance_loop(self) -> None:
        while True:
            await self.maintain()
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)

    async def maintain(self) -> None:
        """Partitions ahead, then retention (hourly; failures are logged and retried next hour)."""
        try:
            await self.flusher.ensure_ahead()
            keep = (
                (self.settings.retention_days, HISTORY),
                (self.settings.rollup_retention_days, ROLLUPS),
            )
            if not any(days for days, _ in keep):
                return
            # Its own connection: DETACH CONCURRENTLY waits for running flushes to finish and
            # must not hold a writer slot while it does.
            conn = await connect(self.settings.database_url, application_name="fleetd-retention")
            try:
                for days, parents in keep:
                    if days:
                        dropped = await drop_older_than(conn, days, parents)
                        if dropped:
                            log.info("partitions_dropped", tables=dropped, retention_days=days)
            finally:
                await conn.close()
        except Exception as exc:
            log.warning("maintenance_failed", error=f"{exc.__class__.__name__}: {exc}")


def _loggable(settings: Settings) -> dict[str, object]:
    keep = ("mqtt_url", "database_url", "client_id", "mqtt_protocol", "flush_interval_ms",
            "flush_idle_ms", "batch_max_rows", "max_buffered_rows", "share_group")  # fmt: skip
    masked = settings.masked()
    return {k: masked[k] for k in keep}
