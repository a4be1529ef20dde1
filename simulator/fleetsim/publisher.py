"""A lean, fast MQTT 3.1.1 publisher (QoS 0 or 1) over asyncio sockets.

Why not paho: its QoS 1 publisher reaches ~8,000 msg/s with default settings here and scans its
in-flight list on every PUBACK (`../shared/LIMITS.md`). A publisher needs CONNECT, PUBLISH out,
PUBACK in and PINGREQ, so this module writes pre-encoded PUBLISH packets straight to the socket,
a thousand per write, and keeps a window of outstanding packet ids per connection (ids 1..65535,
recycled; an id still unacknowledged is skipped). PUBACKs are parsed from whole socket reads.

"Sent" means written to the socket; "acked" means the broker has it (QoS 1). `close()` returns
only when every QoS 1 message was acknowledged. When a connection drops, it reconnects with
backoff and resends every unacknowledged packet (at-least-once: the daemon's keys absorb a
copy the broker already had).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from fleetsvc.mqtt import packets
from fleetsvc.mqtt.address import BrokerAddress

log = structlog.get_logger("fleetsim.publisher")

_U16 = struct.Struct("!H")
_PIDS = [_U16.pack(i) for i in range(65536)]
_CHUNK = 1000  # messages per socket write
_MAX_WINDOW = 60_000  # below 65535 so a free id is always near


class PublisherError(Exception):
    """The broker refused the connection or could not be reached."""


def _mqtt_string(s: str) -> bytes:
    raw = s.encode()
    return _U16.pack(len(raw)) + raw


def connect_packet_clean(
    client_id: str, *, keepalive_s: int, username: str | None, password: str | None
) -> bytes:
    """MQTT 3.1.1 CONNECT with clean session: a publisher keeps no state at the broker."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _mqtt_string("MQTT") + bytes([4, flags]) + _U16.pack(keepalive_s)
    body += _mqtt_string(client_id)
    if username is not None:
        body += _mqtt_string(username)
    if password is not None:
        body += _mqtt_string(password)
    return bytes([packets.CONNECT << 4]) + packets.encode_varint(len(body)) + body


@dataclass
class _Counters:
    sent: int = 0
    acked: int = 0
    resent: int = 0
    reconnects: int = 0


class _Conn(asyncio.Protocol):
    """One connection: its packet ids, unacknowledged packets and the window's wake-up."""

    def __init__(self, owner: MqttPublisher, client_id: str) -> None:
        self.owner = owner
        self.client_id = client_id
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.connack: asyncio.Future[packets.ConnAck] | None = None
        self.ready = asyncio.Event()  # connected and CONNACK accepted
        self.room = asyncio.Event()  # the window has room again
        self.writable = asyncio.Event()  # the socket's write buffer is below its high mark
        self.writable.set()
        self.inflight: list[bytes | None] = [None] * 65536
        self.outstanding = 0
        self.next_id = 0
        self.lost_exc: Exception | None = None

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf.clear()
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        inflight = self.inflight
        acked = 0
        while pos + 2 <= end:
            first = buf[pos]
            rl = buf[pos + 1]
            hdr = 2
            if rl & 0x80:
                decoded = packets.decode_varint(buf, pos + 1)
                if decoded is None:
                    break
                rl, body_at = decoded
                hdr = body_at - pos
            if pos + hdr + rl > end:
                break
            kind = first >> 4
            body_at = pos + hdr
            if kind == packets.PUBACK:
                pid = (buf[body_at] << 8) | buf[body_at + 1]
                if inflight[pid] is not None:
                    inflight[pid] = None
                    acked += 1
            elif kind == packets.CONNACK and self.connack is not None and not self.connack.done():
                self.connack.set_result(packets.parse_connack(bytes(buf[body_at : body_at + rl])))
            # PINGRESP and anything else: nothing to do.
            pos = body_at + rl
        del buf[:pos]
        if acked:
            self.outstanding -= acked
            self.owner.counters.acked += acked
            # Wake the producer once a tenth of the window is free, not on every ack.
            if self.outstanding <= self.owner.window - self.owner.window // 10:
                self.room.set()
            if not self.outstanding:
                self.owner._all_acked_check()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.ready.clear()
        self.lost_exc = exc or ConnectionResetError("connection closed by broker")
        if self.connack is not None and not self.connack.done():
            self.connack.set_exception(PublisherError(f"connection lost: {self.lost_exc}"))
        self.writable.set()
        self.room.set()  # let waiters notice
        self.owner._on_lost(self)

    # -- sending --
    def encode(self, messages: Sequence[tuple[str, bytes]], qos: int) -> bytes:
        """PUBLISH packets for `messages`, recording QoS 1 ones as unacknowledged."""
        owner = self.owner
        topics = owner._topic_cache
        fixed = owner._fixed_cache
        parts: list[bytes] = []
        if qos == 0:
            for topic, payload in messages:
                th = topics.get(topic)
                if th is None:
                    th = topics[topic] = _mqtt_string(topic)
                rl = len(th) + len(payload)
                fh = fixed.get((0x30, rl))
                if fh is None:
                    fh = fixed[(0x30, rl)] = b"\x30" + packets.encode_varint(rl)
                parts.append(fh + th + payload)
            return b"".join(parts)
        inflight = self.inflight
        pid = self.next_id
        for topic, payload in messages:
            th = topics.get(topic)
            if th is None:
                th = topics[topic] = _mqtt_string(topic)
            rl = len(th) + 2 + len(payload)
            fh = fixed.get((0x32, rl))
            if fh is None:
                fh = fixed[(0x32, rl)] = b"\x32" + packets.encode_varint(rl)
            pid = pid % 65535 + 1
            while inflight[pid] is not None:  # still unacknowledged: skip it
                pid = pid % 65535 + 1
            pkt = fh + th + _PIDS[pid] + payload
            inflight[pid] = pkt
            parts.append(pkt)
        self.next_id = pid
        self.outstanding += len(messages)
        return b"".join(parts)


class MqttPublisher:
    """Pipelined QoS 0/1 publisher over `connections` sockets to one broker."""

    def __init__(
        self,
        url: str,
        *,
        qos: int = 1,
        connections: int = 2,
        window: int = 5000,
        client_id_prefix: str = "fleet-sim",
        keepalive_s: int = 60,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = 10.0,
        max_reconnect_s: float = 60.0,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("--qos must be 0 or 1")
        if connections < 1:
            raise ValueError("--connections must be >= 1")
        self.address = BrokerAddress.parse(url)
        self.qos = qos
        self.window = max(100, min(window, _MAX_WINDOW))
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.max_reconnect_s = max_reconnect_s
        self._ssl = ssl_context or (ssl.create_default_context() if self.address.tls else None)
        tag = f"{client_id_prefix}-{os.getpid()}-{id(self) % 100_000}"
        self._conns = [_Conn(self, f"{tag}-{k}") for k in range(connections)]
        self.counters = _Counters()
        self._topic_cache: dict[str, bytes] = {}
        self._fixed_cache: dict[tuple[int, int], bytes] = {}
        self._rr = 0
        self._closing = False
        self._closed = False
        self._all_acked = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: Exception | None = None

    # -- counters --
    @property
    def sent(self) -> int:
        """Messages written to a socket (resends not counted twice)."""
        return self.counters.sent

    @property
    def acked(self) -> int:
        """QoS 1 messages the broker acknowledged."""
        return self.counters.acked

    @property
    def outstanding(self) -> int:
        """QoS 1 messages sent and not yet acknowledged."""
        return sum(c.outstanding for c in self._conns)

    @property
    def errors(self) -> int:
        """Connection losses (each followed by a reconnect and resend)."""
        return self.counters.reconnects

    # -- lifecycle --
    async def connect(self) -> None:
        """Open every connection; raises PublisherError when the broker refuses or is away."""
        await asyncio.gather(*(self._open(c) for c in self._conns))
        ping = asyncio.create_task(self._ping_loop(), name="fleetsim-ping")
        self._tasks.add(ping)
        ping.add_done_callback(self._tasks.discard)

    async def _open(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        a = self.address
        conn.connack = loop.create_future()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    a.host,
                    a.port,
                    ssl=self._ssl,
                    server_hostname=a.host if self._ssl else None,
                ),
                self.connect_timeout_s,
            )
            assert conn.transport is not None
            conn.transport.write(
                connect_packet_clean(
                    conn.client_id,
                    keepalive_s=self.keepalive_s,
                    username=a.username,
                    password=a.password,
                )
            )
            ack = await asyncio.wait_for(conn.connack, self.connect_timeout_s)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise PublisherError(f"cannot connect to {a.host}:{a.port}: {exc}") from exc
        if ack.code:
            if conn.transport is not None:
                conn.transport.close()
            raise PublisherError(
                f"broker refused the connection: {packets.connack_reason(ack.code, v5=False)}"
            )
        conn.lost_exc = None
        conn.ready.set()
        conn.room.set()

    def _on_lost(self, conn: _Conn) -> None:
        if self._closed or (self._closing and not conn.outstanding):
            return
        self.counters.reconnects += 1
        log.warning("publisher_connection_lost", client_id=conn.client_id, error=str(conn.lost_exc))
        task = asyncio.get_running_loop().create_task(self._reconnect(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self, conn: _Conn) -> None:
        delay, waited = 0.2, 0.0
        while True:
            await asyncio.sleep(delay)
            waited += delay
            try:
                await self._open(conn)
                break
            except PublisherError as exc:
                if waited >= self.max_reconnect_s:
                    self._failure = exc
                    self._all_acked.set()
                    conn.room.set()
                    return
                delay = min(delay * 2, 5.0)
        # Clean session: the broker forgot everything unacknowledged; send it all again.
        again = [p for p in conn.inflight if p is not None]
        if again and conn.transport is not None:
            self.counters.resent += len(again)
            conn.transport.write(b"".join(again))
        log.info("publisher_reconnected", client_id=conn.client_id, resent=len(again))

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s / 2)
            for c in self._conns:
                if c.transport is not None and c.ready.is_set():
                    c.transport.write(packets.PINGREQ_PACKET)

    def _all_acked_check(self) -> None:
        if self._closing and not self.outstanding:
            self._all_acked.set()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise PublisherError(str(self._failure))

    # -- publishing --
    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Write every message; returns when all are on a socket (QoS 1: acks may be pending).

        Waits whenever a connection's window of unacknowledged messages is full, so memory
        stays bounded and the broker sets the pace.
        """
        qos = self.qos
        window = self.window
        conns = self._conns
        for k in range(0, len(messages), _CHUNK):
            part = messages[k : k + _CHUNK]
            conn = conns[self._rr % len(conns)]
            self._rr += 1
            while True:
                self._raise_if_failed()
                if not conn.ready.is_set():
                    await conn.ready.wait()
                    continue
                if not conn.writable.is_set():
                    await conn.writable.wait()
                    continue
                if qos and conn.outstanding + len(part) > window:
                    conn.room.clear()
                    await conn.room.wait()
                    continue
                break
            assert conn.transport is not None
            conn.transport.write(conn.encode(part, qos))
            self.counters.sent += len(part)
            # Let PUBACKs and the status line run between writes.
            await asyncio.sleep(0)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every QoS 1 message sent so far is acknowledged."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while self.outstanding:
            self._raise_if_failed()
            if deadline is not None and loop.time() > deadline:
                raise TimeoutError(f"{self.outstanding} messages not acknowledged")
            await asyncio.sleep(0.005)

    async def close(self, timeout_s: float = 120.0) -> None:
        """Wait for every acknowledgement, then DISCONNECT. Raises if acks never come."""
        self._closing = True
        try:
            if self.qos:
                await self.flush(timeout_s)
        finally:
            for t in list(self._tasks):
                t.cancel()
            for t in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self._closed = True
            for c in self._conns:
                if c.transport is not None:
                    c.transport.write(packets.DISCONNECT_PACKET)
                    c.transport.close()
