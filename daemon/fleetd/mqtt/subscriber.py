"""The MQTT side of fleetd: a lean asyncio subscriber for an ack-after-commit pipeline.

Why not a client library: aiomqtt 2.x acks on arrival (before the database has the message) and
drops messages when its queue is full; paho-mqtt has manual acks, but its read path costs
~38 us per message with MQTT 3.1.1 and ~76 us with MQTT 5 here (one recv() per header byte, a
threading.Condition and property objects per message), which alone caps the daemon near 13-26k
messages/s. A subscriber needs few packets (CONNECT, SUBSCRIBE, PUBLISH in, PUBACK out, ping),
so this module speaks them directly (`packets.py`): whole socket reads are parsed in one pass and
the PUBACKs of a committed batch leave in one write.

Backpressure: pause() stops reading from the socket, so the broker queues for us instead of our
memory growing. Each (re)connection has a generation number and a message can only be acked on
the connection it arrived on: after a reconnect the broker resends every unacked message and may
reuse packet ids, so an ack for an old generation could ack the wrong message. It is skipped
instead and the redelivered copy (a no-op in the database) is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import structlog

from fleetd.mqtt import packets
from fleetd.settings import mask_url

log = structlog.get_logger("fleetd.mqtt")

TOPIC_FILTERS = ("meters/+/telemetry", "vehicles/+/telemetry")
_SUBSCRIBE_ID = 1

OnMessage = Callable[[str, bytes, int, int, int], None]
"""on_message(topic, payload, packet_id, qos, generation), called on the loop thread."""


class BrokerUnavailableError(Exception):
    """The broker refused or dropped the connection."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where and how to connect, parsed from FLEET_MQTT_URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; its bytes are parsed by the owning subscriber."""

    def __init__(self, owner: MqttSubscriber, generation: int) -> None:
        self.owner = owner
        self.generation = generation
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[packets.ConnAck] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_rx = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.buf += data
        self.owner._parse(self)  # the owner is this protocol's other half

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(BrokerUnavailableError(f"connection lost: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)
        self.owner._on_lost(self)


class MqttSubscriber:
    """Connects, subscribes to both telemetry filters with QoS 1 on a durable session, hands
    every message to `on_message`, and acks on request. `run()` reconnects until cancelled."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        on_message: OnMessage,
        keepalive_s: int = 30,
        session_expiry_s: int = 7 * 86400,
        receive_maximum: int = 65535,
        share_group: str | None = None,
        protocol: str = "5",
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self._address = BrokerAddress.parse(url)
        self._url_masked = mask_url(url)
        self._client_id = client_id
        self._on_message_cb = on_message
        self._on_state = on_state
        self._keepalive_s = keepalive_s
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._v5 = protocol == "5"
        prefix = f"$share/{share_group}/" if share_group else ""
        self.topic_filters = tuple(prefix + f for f in TOPIC_FILTERS)
        self.generation = 0
        self.connected = False
        self.reconnects = 0
        self.received = 0
        self.subscribed = asyncio.Event()
        self._conn: _Connection | None = None
        self._paused = False
        self._closing = False
        self._acks = bytearray()
        self._acks_scheduled = False
        self._subscribe_refused = False

    # --- public API ---------------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Connect, subscribe, and keep reconnecting with jittered backoff until cancelled or
        disconnect(). `ready` is set after the first successful subscription."""
        attempt = 0
        while not self._closing:
            try:
                conn = await self._connect_once()
            except BrokerUnavailableError as exc:
                attempt += 1
                if attempt == 1:
                    log.warning("broker_unavailable", url=self._url_masked, error=str(exc))
                await asyncio.sleep(min(30.0, random.uniform(0.5, 1.0) * 1.5 ** min(attempt, 10)))
                continue
            log.info(
                "broker_connected", url=self._url_masked, generation=self.generation,
                session_present=conn.connack.result().session_present,
            )  # fmt: skip
            keepalive = asyncio.create_task(self._keepalive(conn), name="mqtt-keepalive")
            if ready is not None and not ready.is_set():
                subscribed = asyncio.create_task(_wait_event(self.subscribed))
                lost = asyncio.create_task(_wait_future(conn.lost))
                await asyncio.wait([subscribed, lost], return_when=asyncio.FIRST_COMPLETED)
                lost.cancel()
                subscribed.cancel()
                if self.subscribed.is_set():
                    ready.set()
            await conn.lost
            keepalive.cancel()
            if self.closing:
                return
            self.reconnects += 1
            attempt = attempt + 1 if self._subscribe_refused else 0
            log.warning("broker_disconnected", generation=self.generation)
            await asyncio.sleep(random.uniform(0.1, 0.5) * 1.5 ** min(attempt, 10))

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        """PUBACK one message if it arrived on the current connection; False if skipped.
        Acks queued in one loop iteration leave in a single write."""
        if qos == 0:
            return True
        if generation != self.generation or not self.connected:
            return False
        self._acks += packets.puback_packet(mid)
        if not self._acks_scheduled:
            self._acks_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_acks)
        return True

    def pause(self) -> None:
        """Stop reading from the socket: the broker holds further messages for us."""
        if not self._paused:
            self._paused = True
            if self._conn is not None and self._conn.transport is not None:
                self._conn.transport.pause_reading()

    def resume(self) -> None:
        """Start reading again after pause()."""
        if self._paused:
            self._paused = False
            conn = self._conn
            if conn is not None and conn.transport is not None:
                conn.transport.resume_reading()
                asyncio.get_running_loop().call_soon(self._parse, conn)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def closing(self) -> bool:
        """disconnect() was called: run() returns instead of reconnecting."""
        return self._closing

    async def disconnect(self) -> None:
        """Send pending acks and DISCONNECT (the broker keeps the session and its queue)."""
        self._closing = True
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.lost.done():
            self._send_acks()
            conn.transport.write(packets.DISCONNECT_PACKET)
            conn.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(conn.lost), timeout=2)
            if not conn.lost.done():
                conn.transport.abort()

    # --- connection ---------------------------------------------------------------------------

    async def _connect_once(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self, self.generation + 1)
        ctx = ssl.create_default_context() if self._address.tls else None
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    self._address.host,
                    self._address.port,
                    ssl=ctx,
                    server_hostname=self._address.host if ctx else None,
                ),
                timeout=10,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise BrokerUnavailableError(f"{exc.__class__.__name__}: {exc}") from exc
        assert conn.transport is not None
        self._conn = conn
        if self._paused:
            conn.transport.pause_reading()
        conn.transport.write(
            packets.connect_packet(
                self._client_id,
                keepalive_s=self._keepalive_s,
                v5=self._v5,
                username=self._address.username,
                password=self._address.password,
                session_expiry_s=self._session_expiry_s,
                receive_maximum=self._receive_maximum,
            )
        )
        try:
            # Only CONNACK is awaited: with a persistent session the broker may send a large
            # backlog before our SUBACK, which then arrives behind those messages.
            connack = await asyncio.wait_for(asyncio.shield(conn.connack), timeout=10)
        except (TimeoutError, BrokerUnavailableError) as exc:
            conn.transport.abort()
            raise BrokerUnavailableError(str(exc) or "no CONNACK within 10 s") from exc
        if connack.code != 0:
            conn.transport.abort()
            reason = packets.connack_reason(connack.code, v5=self._v5)
            raise BrokerUnavailableError(f"connection refused: {reason}")
        # Subscribe on every connect, even when the broker kept the session: Mosquitto 2.0.11
        # does not restore $share subscriptions of durable clients.
        self.subscribed.clear()
        self._subscribe_refused = False
        conn.transport.write(
            packets.subscribe_packet(_SUBSCRIBE_ID, self.topic_filters, v5=self._v5)
        )
        return conn

    async def _keepalive(self, conn: _Connection) -> None:
        # PINGREQ every half keepalive. A broker that sends nothing for two keepalives is gone,
        # unless we paused reading (then its bytes are waiting in the socket, unread).
        interval = self._keepalive_s / 2
        while conn.transport is not None and not conn.lost.done():
            await asyncio.sleep(interval)
            conn.transport.write(packets.PINGREQ_PACKET)
            silent = time.monotonic() - conn.last_rx
            if not self._paused and silent > 2 * self._keepalive_s:
                log.warning("broker_silent", seconds=round(silent))
                conn.transport.abort()

    def _send_acks(self) -> None:
        self._acks_scheduled = False
        conn = self._conn
        if self._acks and conn is not None and conn.transport is not None:
            conn.transport.write(bytes(self._acks))
        self._acks.clear()

    def _set_connected(self, value: bool) -> None:
        if self.connected != value:
            self.connected = value
            if self._on_state is not None:
                self._on_state(value)

    def _on_lost(self, conn: _Connection) -> None:
        if conn is self._conn:
            self._acks.clear()
            self._set_connected(False)

    # --- parsing ------------------------------------------------------------------------------

    def _parse(self, conn: _Connection) -> None:
        """Handle every complete packet in the connection's buffer (until paused)."""
        buf = conn.buf
        n = len(buf)
        pos = 0
        cb = self._on_message_cb
        gen = conn.generation
        v5 = self._v5
        while not self._paused and n - pos >= 2:
            first = buf[pos]
            # Remaining length: a variable byte integer, inlined on this hot path.
            length = 0
            shift = 0
            i = pos + 1
            while True:
                if i >= n:
                    length = -1
                    break
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if byte < 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise packets.ProtocolError("remaining length longer than 4 bytes")
            end = i + length
            if length < 0 or end > n:
                break  # the rest of this packet has not arrived yet
            kind = first >> 4
            if kind == packets.PUBLISH:
                qos = (first >> 1) & 0x03
                topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
                topic = buf[i + 2 : topic_end].decode("utf-8", "replace")
                p = topic_end
                mid = 0
                if qos:
                    mid = (buf[p] << 8) | buf[p + 1]
                    p += 2
                if v5:
                    decoded = packets.decode_varint(buf, p)
                    if decoded is None:
                        raise packets.ProtocolError("truncated PUBLISH properties")
                    p = decoded[1] + decoded[0]
                self.received += 1
                cb(topic, bytes(buf[p:end]), mid, qos, gen)
            else:
                self._control(conn, kind, bytes(buf[i:end]))
            pos = end
        if pos:
            del buf[:pos]

    def _control(self, conn: _Connection, kind: int, body: bytes) -> None:
        if kind == packets.CONNACK:
            connack = packets.parse_connack(body)
            if connack.code == 0:
                # Connected (and able to ack) from CONNACK on.
                self.generation = conn.generation
                self._set_connected(True)
            if not conn.connack.done():
                conn.connack.set_result(connack)
        elif kind == packets.SUBACK:
            _, codes = packets.parse_suback(body, v5=self._v5)
            if any(code >= 0x80 for code in codes):
                log.error("subscription_refused", filters=self.topic_filters, codes=codes)
                self._subscribe_refused = True
                if conn.transport is not None:
                    conn.transport.close()
                return
            self.subscribed.set()
        elif kind == packets.DISCONNECT:
            log.warning("broker_sent_disconnect", reason=body[:1].hex())
            if conn.transport is not None:
                conn.transport.close()
        # PINGRESP needs nothing: any byte received refreshes last_rx.


async def _wait_event(event: asyncio.Event) -> None:
    await event.wait()


async def _wait_future(future: asyncio.Future[None]) -> None:
    await asyncio.shield(future)
