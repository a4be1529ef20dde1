"""The fleetd daemon's lifecycle: an object a test can start and stop in-process.

Data flows one way: MQTT message -> Intake (decode/validate) -> Batcher -> FlushLoop (one
transaction per batch) -> ack to the broker (fleetd.ingest). Nothing is acked before the
transaction that holds it commits. This module only wires the parts and runs them:
startup -> main loop -> shutdown, as uvicorn's Server does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import structlog

from fleetd.folding import FoldLoop
from fleetd.ingest.batcher import Batcher
from fleetd.ingest.flusher import Flusher
from fleetd.ingest.flushing import FlushLoop
from fleetd.ingest.gateway_grants import load_grants
from fleetd.ingest.intake import Counters, Intake
from fleetd.maintenance import maintain, maintenance_loop
from fleetd.metrics import Metrics
from fleetd.mqtt.subscriber import MqttSubscriber, device_filters
from fleetd.ops import health
from fleetd.settings import Settings
from fleetd.summary import SUMMARY_INTERVAL_S, Waiting, summary_loop
from fleetdb.kinds import REGISTRY, DeviceKind

log = structlog.get_logger("fleetd")

SHUTDOWN_GRACE_S = 8.0  # systemd and tests expect exit within 10 s of SIGTERM


class Daemon:
    """Subscribe, validate, batch, write, ack. `run()` until `request_stop()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        summary_interval_s: float = SUMMARY_INTERVAL_S,
        kinds: tuple[DeviceKind, ...] = REGISTRY,
    ) -> None:
        """`kinds`: the device kinds taken (fleetdb.kinds; a test may pass a kind of its own)."""
        self.settings = settings
        self.summary_interval_s = summary_interval_s
        self.metrics = metrics or Metrics()
        self.counters = Counters()
        self.ready = asyncio.Event()
        self.batcher = Batcher(
            batch_max_rows=settings.batch_max_rows,
            flush_interval_s=settings.flush_interval_ms / 1000,
            idle_s=settings.flush_idle_ms / 1000,
        )
        self.flusher = Flusher(
            settings.database_url,
            self.metrics,
            writers=settings.db_writers,
            write_timeout_s=settings.db_write_timeout_s,
            kinds=kinds,
        )
        self.intake = Intake(
            self.batcher,
            self.counters,
            max_buffered_rows=settings.max_buffered_rows,
            max_packet_bytes=settings.mqtt_max_packet_bytes,
            max_future=timedelta(seconds=settings.max_future_s),
            max_past=timedelta(days=settings.max_past_days),
            pause=lambda: self.mqtt.pause(),  # noqa: PLW0108 - self.mqtt is created below, from this intake
            in_flight=lambda: self.flushing.in_flight,
            # A file it cannot use ends the start with one line naming FLEET_GATEWAYS_FILE.
            gateway_grants=load_grants(settings.gateways_file) if settings.gateways_file else None,
            kinds=kinds,
            gateways=settings.mqtt_gateways == "on",
        )
        self.mqtt = MqttSubscriber(
            url=settings.mqtt_url,
            client_id=settings.client_id,
            on_message=self.intake.on_message,
            on_oversized=self.intake.on_oversized,
            keepalive_s=settings.mqtt_keepalive_s,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            max_packet_bytes=settings.mqtt_max_packet_bytes,
            share_group=settings.share_group,
            protocol=settings.mqtt_protocol,
            on_state=self._on_broker_state,
            device_filters=device_filters(kinds),
            gateways=settings.mqtt_gateways == "on",
        )
        self.flushing = FlushLoop(
            self.batcher,
            self.flusher,
            self.counters,
            self.metrics,
            ack=self.mqtt.ack,
            on_committed=self._maybe_resume,
        )
        self.metrics.watch(
            lambda: self.mqtt.connected,
            lambda: health.check(self).ok,
            lambda: time.monotonic() - self.last_flush_mono,
        )
        self.metrics.watch_subscriptions(
            self.mqtt.topic_filters,
            lambda name: name in self.mqtt.refused_filters,  # read when scraped
        )
        self.folding = FoldLoop(
            settings.database_url,
            kinds,
            interval_s=settings.fold_interval_s,
            grace=timedelta(seconds=settings.fold_grace_s),
            backlog=lambda: len(self.batcher) >= settings.batch_max_rows,
        )
        self._stopping = asyncio.Event()
        self._generation_seen = 0
        # Extra tasks (ops HTTP server, systemd notifier) run alongside the pipeline.
        self.companions: list[Callable[[Daemon], Coroutine[Any, Any, None]]] = []

    # --- state others read (health, notifier, tests) ------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def last_flush_ok(self) -> bool:
        """False from a failed write attempt until the next commit."""
        return self.flusher.last_attempt_ok

    @property
    def last_flush_mono(self) -> float:
        """Monotonic time of the last commit (or of start-up)."""
        return self.flushing.last_commit_mono

    @property
    def in_flight(self) -> int:
        """Messages whose flush transaction is running."""
        return self.flushing.in_flight

    def oldest_flush_age_s(self, now: float | None = None) -> float:
        """How long the oldest running flush has been in its transaction (0 when none)."""
        return self.flushing.oldest_age_s(now)

    def waiting(self) -> Waiting:
        """Messages not acked yet (buffered or in a running transaction) and the oldest's age:
        the oldest buffered message's wait, or the oldest transaction's, its messages being at
        least that old."""
        now = time.monotonic()
        oldest = max(self.batcher.oldest_age_s(now), self.oldest_flush_age_s(now))
        return Waiting(len(self.batcher) + self.in_flight, oldest)

    # --- lifecycle ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler: it only sets a flag)."""
        self._stopping.set()

    async def run(self) -> None:
        """Start up, run until request_stop(), then shut down: stop reading, flush, ack,
        disconnect."""
        log.info("starting", **_loggable(self.settings))
        try:
            async with asyncio.TaskGroup() as tg:
                # First, so /healthz answers (with the cause) while start-up waits.
                extra = [tg.create_task(c(self), name="companion") for c in self.companions]
                await self._startup()
                mqtt = tg.create_task(self.mqtt.run(self.ready), name="mqtt")
                flush = tg.create_task(self.flushing.run(), name="flush")
                upkeep = tg.create_task(
                    maintenance_loop(self.settings, self.flusher), name="maintenance"
                )
                folding = tg.create_task(self.folding.run(), name="fold")
                summary = tg.create_task(
                    summary_loop(self.counters, self.waiting, interval_s=self.summary_interval_s),
                    name="summary",
                )
                await self._stopping.wait()
                await self._shutdown(flush)
                for task in (mqtt, upkeep, folding, summary, *extra):
                    task.cancel()
        finally:
            await self.flusher.close()
        c = self.counters
        log.info(
            "stopped",
            received=c.received,
            written=c.written,
            rejected=c.rejected,
            duplicates=c.duplicates,
            acked=c.acked,
            acks_skipped=c.acks_skipped,
            flushes=c.flushes,
        )

    async def maintain(self) -> None:
        """One round of hourly maintenance (partitions ahead, retention), now."""
        await maintain(self.settings, self.flusher)

    async def _startup(self) -> None:
        """Wait for the database (schema current, partitions for today and ahead) before
        subscribing; what it refuses is retried slowly, named in /healthz and the log."""
        await self.flusher.start(self._stopping)

    async def _shutdown(self, flush: asyncio.Task[None]) -> None:
        """Stop intake, give the buffered messages SHUTDOWN_GRACE_S to commit and be acked, then
        cancel what is left (the broker still holds it) and disconnect."""
        log.info("stopping", buffered=len(self.batcher))
        self.mqtt.pause()
        self.flushing.stop()
        try:
            await asyncio.wait_for(asyncio.shield(flush), timeout=SHUTDOWN_GRACE_S)
        except TimeoutError:
            log.warning("shutdown_flush_timeout", unwritten=len(self.batcher))
            flush.cancel()
        await self.mqtt.disconnect()

    # --- reactions ----------------------------------------------------------------------------

    def _on_broker_state(self, connected: bool) -> None:
        if connected:
            if self._generation_seen and self.mqtt.generation != self._generation_seen:
                self.metrics.broker_reconnects.inc()
            self.intake.on_new_connection(self.mqtt.generation)
            self._generation_seen = self.mqtt.generation

    def _maybe_resume(self) -> None:
        # Resume with room for at least one full batch, so we don't flap pause/resume per row.
        limit = self.settings.max_buffered_rows
        room = len(self.batcher) <= max(0, limit - self.settings.batch_max_rows)
        if self.mqtt.paused and room and not self._stopping.is_set():
            self.mqtt.resume()


def _loggable(settings: Settings) -> dict[str, object]:
    keep = (
        "mqtt_url",
        "database_url",
        "client_id",
        "mqtt_protocol",
        "mqtt_topic_filters",
        "flush_interval_ms",
        "flush_idle_ms",
        "batch_max_rows",
        "max_buffered_rows",
        "share_group",
    )
    masked = settings.masked()
    return {k: masked[k] for k in keep}
