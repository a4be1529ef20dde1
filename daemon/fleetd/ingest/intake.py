"""The hot path: one call per MQTT message, on the loop thread. Decode and validate it into a
reading or a reject, count it, buffer it with what is needed to ack it later, and stop reading
from the broker when the buffer is full."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from fleetd.ingest.batcher import Batcher, Envelope
from fleetd.ingest.gateway_grants import GatewayGrants
from fleetd.ingest.gateway_items import decode_gateway, is_gateway_topic
from fleetd.ingest.tickets import Ticket
from fleetdb.ingest.messages import Decoded, Rejected, decode_many
from fleetdb.kinds import REGISTRY, DeviceKind

log = structlog.get_logger("fleetd")

# What a message on a gateway's topic gets while FLEET_MQTT_GATEWAYS=off: a durable session
# subscribed to gateways/+/telemetry by an earlier run delivers what it queued.
GATEWAYS_OFF = "gateways are off (FLEET_MQTT_GATEWAYS=off)"


@dataclass
class Counters:
    """Plain counters bumped on the hot path; summed into Prometheus once per flush."""

    received: int = 0
    valid: int = 0
    rejected: int = 0
    written: int = 0
    duplicates: int = 0
    conflicts: int = 0  # readings whose key was stored with other values (kept as rejects)
    flushes: int = 0
    acked: int = 0
    acks_skipped: int = 0
    rejected_by_field: dict[tuple[str, str], int] = field(default_factory=dict)

    def reject(self, topic: str, fld: str) -> None:
        """Count one reject by topic kind and field."""
        self.rejected += 1
        key = (topic.split("/", 1)[0], fld)
        self.rejected_by_field[key] = self.rejected_by_field.get(key, 0) + 1


class Intake:
    """Messages in, envelopes into the batcher. `in_flight` tells how many more messages are
    unacked beyond the buffer (their transaction is running), for the buffer limit."""

    def __init__(
        self,
        batcher: Batcher,
        counters: Counters,
        *,
        max_buffered_rows: int,
        max_packet_bytes: int,
        max_future: timedelta,
        max_past: timedelta,
        pause: Callable[[], None],
        in_flight: Callable[[], int],
        gateway_grants: GatewayGrants | None = None,
        kinds: tuple[DeviceKind, ...] = REGISTRY,
        gateways: bool = True,
    ) -> None:
        """`gateways`: FLEET_MQTT_GATEWAYS; off, a gateway's message is one reject, acked."""
        self._batcher = batcher
        self._counters = counters
        self._max_buffered = max_buffered_rows
        self._max_packet_bytes = max_packet_bytes
        self._max_future = max_future
        self._max_past = max_past
        self._pause = pause
        self._in_flight = in_flight
        self._grants = gateway_grants
        self._kinds = kinds
        self._gateways = gateways
        self._clock_mono = 0.0
        self._clock = datetime.now(UTC)

    def on_message(self, topic: str, payload: bytes, mid: int, qos: int, generation: int) -> None:
        """One message from the broker (fleetd.mqtt.subscriber.OnMessage)."""
        mono = time.monotonic()
        if mono - self._clock_mono > 0.002:
            # Wall-clock receive time, refreshed every 2 ms: messages of one socket read burst
            # share it, which saves a datetime per message at 2 ms resolution.
            self._clock_mono, self._clock = mono, datetime.now(UTC)
        now = self._clock
        future, past = self._max_future, self._max_past
        # A device's topic: one reading or an array of its own; a gateway's: several devices'.
        if is_gateway_topic(topic):
            if self._gateways:
                items = decode_gateway(
                    topic, payload, now, max_future=future, max_past=past, grants=self._grants
                )
            else:
                items = [Rejected(topic, payload, GATEWAYS_OFF, "topic", GATEWAYS_OFF)]
        else:
            items = decode_many(
                topic, payload, now, max_future=future, max_past=past, kinds=self._kinds
            )
        last = len(items) - 1
        for i, item in enumerate(items):
            # Counted per reading: received = written + duplicates + rejected, arrays or not.
            self._counters.received += 1
            if isinstance(item, Rejected):
                # By the reject's topic: a gateway's element is counted with its device's kind.
                self._counters.reject(item.topic, item.field)
            else:
                self._counters.valid += 1
            self._buffer(Envelope(item, now, mono, mid, qos, generation, i == last))

    def on_item(
        self, item: Decoded, now: datetime, mono: float, ticket: Ticket, index: int
    ) -> None:
        """One item of an HTTP request (fleetd.ops.ingest_http), decoded by its caller: counted
        and buffered like a message, its outcome settled on `ticket` once committed."""
        self._counters.received += 1
        if isinstance(item, Rejected):
            self._counters.reject(item.topic, item.field)
        else:
            self._counters.valid += 1
        self._buffer(Envelope(item, now, mono, 0, 0, 0, last=False, ticket=ticket, index=index))

    def on_oversized(self, topic: str, size: int, mid: int, qos: int, generation: int) -> None:
        """A PUBLISH over the size limit, payload unread: kept as a reject and acked after
        commit like any message (refusing it would make the broker redeliver it forever)."""
        reason = (
            f"packet: {size} bytes exceeds FLEET_MQTT_MAX_PACKET_BYTES ({self._max_packet_bytes})"
        )
        self._counters.received += 1
        self._counters.reject(topic, "packet")
        reject = Rejected(topic, b"", reason, "packet", "exceeds FLEET_MQTT_MAX_PACKET_BYTES")
        self._buffer(Envelope(reject, datetime.now(UTC), time.monotonic(), mid, qos, generation))

    def on_new_connection(self, generation: int) -> None:
        """Unwritten messages from an earlier connection can't be acked: the broker resends them
        on this one, so drop the old copies now instead of writing them twice."""
        dropped = self._batcher.drop_generation_before(generation)
        if dropped:
            log.info("dropped_unacked_from_old_connection", messages=dropped)

    def _buffer(self, envelope: Envelope) -> None:
        self._batcher.add(envelope)
        if len(self._batcher) + self._in_flight() >= self._max_buffered:
            self._pause()
