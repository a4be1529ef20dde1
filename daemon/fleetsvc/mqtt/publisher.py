"""A small asyncio MQTT publisher: one connection, QoS 1 (or 0), a window of outstanding
packet ids, every PUBACK counted. Used by fleetctl's alert delivery and, one per connection, by
the simulator's fast publisher.

Why not paho: its QoS 1 publisher reaches ~8,000 msg/s with default settings here and scans its
in-flight list on every PUBACK (`../shared/LIMITS.md`). This one writes pre-encoded PUBLISH
packets straight to the socket, up to a thousand per write, keeps at most `window` packet ids
outstanding (ids 1..65535 recycled; one still unacknowledged is skipped), and reads what the
broker sends with the checked reader in its publisher role (a PUBACK, CONNACK, PINGRESP or
DISCONNECT; anything else, or anything malformed, ends the connection).

It never reconnects by itself: a refused CONNACK raises `ConnectError`, a connection that ends
while messages are unacknowledged raises `ConnectionLostError` naming how many, and a caller
that wants to go on opens a new publisher and hands it the old one's unacknowledged packets
(`resend_unacked`). "Sent" means written to the socket, "acked" that the broker has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from fleetsvc.mqtt import packets
from fleetsvc.mqtt.address import BrokerAddress
from fleetsvc.mqtt.reader import Disconnect, PacketReader, PubAck

MAX_WINDOW = 60_000  # below 65535, so a free packet id is always near
# What we accept from the broker: a publisher receives only small packets (CONNACK with its
# properties is the largest), so anything bigger is refused unread.
MAX_PACKET_BYTES = 65_536
_CHUNK = 1000  # messages per socket write
_PIDS = tuple(struct.pack("!H", i) for i in range(65536))


class PublishError(Exception):
    """The broker did not take every message; `unacked` is how many still lack a PUBACK."""

    def __init__(self, message: str, *, unacked: int = 0) -> None:
        super().__init__(message)
        self.unacked = unacked


class ConnectError(PublishError):
    """The broker could not be reached, or refused the CONNECT (`code`: its CONNACK code)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLostError(PublishError):
    """The connection ended with `unacked` messages unacknowledged; of the messages of the
    publish() call that raised it, the first `written` were written (the rest were not)."""

    def __init__(self, message: str, *, unacked: int, written: int = 0) -> None:
        super().__init__(message, unacked=unacked)
        self.written = written


class _Link(asyncio.Protocol):
    """The socket's callbacks, handed to the publisher that owns it."""

    def __init__(self, owner: Publisher) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.owner._transport = transport

    def data_received(self, data: bytes) -> None:
        self.owner._received(data)

    def pause_writing(self) -> None:
        self.owner._writable.clear()

    def resume_writing(self) -> None:
        self.owner._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._connection_lost(exc)


class Publisher:
    """One connection that publishes QoS 1 (or 0) messages with at most `window` of them
    unacknowledged. `async with Publisher(url, client_id=...) as pub:` connects and closes."""

    def __init__(
        self,
        url: str | BrokerAddress,
        *,
        client_id: str,
        window: int = 1000,
        keepalive_s: int = 60,
        v5: bool = False,
        connect_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW}, not {window}")
        self.address = url if isinstance(url, BrokerAddress) else BrokerAddress.parse(url)
        self.client_id = client_id
        self.window = window
        self.keepalive_s = keepalive_s
        self.v5 = v5
        self.connect_timeout_s = connect_timeout_s
        self._ssl = ssl_context or (ssl.create_default_context() if self.address.tls else None)
        self.sent = 0  # messages written to the socket (resends not counted again)
        self.acked = 0  # QoS 1 messages the broker acknowledged (refused ones included)
        self.refused = 0  # MQTT 5: PUBACKs with a reason code >= 0x80
        self.outstanding = 0  # QoS 1 messages written and not yet acknowledged
        self._refusal = 0  # the reason code of the last refusal
        self._reader = PacketReader(v5=v5, max_packet_bytes=MAX_PACKET_BYTES, role="publisher")
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future[packets.ConnAck] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._lost: ConnectionLostError | None = None
        self._inflight: list[bytes | None] = [None] * 65536  # packet id -> its packet
        self._next_id = 0
        self._room = asyncio.Event()  # the window has room again
        self._writable = asyncio.Event()  # the socket's write buffer is below its high mark
        self._writable.set()
        self._settled = asyncio.Event()  # nothing outstanding, or the connection is gone
        self._ping: asyncio.Task[None] | None = None
        self._topics: dict[str, bytes] = {}  # topic -> its encoded string
        self._fixed: dict[tuple[int, int], bytes] = {}  # (first byte, length) -> fixed header

    # --- lifecycle ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection (clean session) and wait for an accepting CONNACK. Raises
        ConnectError when the broker cannot be reached, does not answer or refuses."""
        loop = asyncio.get_running_loop()
        a = self.address
        self._connack = loop.create_future()
        self._closed = loop.create_future()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Link(self),
                    a.host,
                    a.port,
                    ssl=self._ssl,
                    server_hostname=a.host if self._ssl else None,
                ),
                self.connect_timeout_s,
            )
            assert self._transport is not None
            self._transport.write(
                packets.connect_packet(
                    self.client_id,
                    keepalive_s=self.keepalive_s,
                    v5=self.v5,
                    username=a.username,
                    password=a.password,
                    maximum_packet_bytes=MAX_PACKET_BYTES,
                    clean=True,
                )
            )
            ack = await asyncio.wait_for(asyncio.shield(self._connack), self.connect_timeout_s)
        except (OSError, TimeoutError, ssl.SSLError, ConnectError) as exc:
            self._abort()
            if isinstance(exc, ConnectError):
                raise
            why = str(exc) or exc.__class__.__name__
            raise ConnectError(f"cannot connect to {a.host}:{a.port}: {why}") from exc
        if ack.code:
            self._abort()
            reason = packets.connack_reason(ack.code, v5=self.v5)
            raise ConnectError(f"broker refused the connection: {reason}", code=ack.code)
        # MQTT 5: the broker's Receive Maximum bounds our window, its Server Keep Alive our pings.
        if ack.receive_maximum is not None:
            self.window = min(self.window, ack.receive_maximum)
        if ack.server_keepalive_s is not None:
            self.keepalive_s = ack.server_keepalive_s
        self._room.set()
        if self.keepalive_s:
            self._ping = asyncio.create_task(self._keepalive(), name="mqtt-publisher-ping")

    async def close(self) -> None:
        """DISCONNECT (a normal one) and close. Does not wait for acknowledgements: call
        wait_acked() first for that."""
        if self._ping is not None:
            self._ping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ping
            self._ping = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(packets.disconnect_packet(0, v5=self.v5))
            transport.close()
        if self._closed is not None and transport is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), 2.0)
            if not self._closed.done():
                transport.abort()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- publishing -----------------------------------------------------------------------------

    async def publish(
        self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1, retain: bool = False
    ) -> None:
        """Write every (topic, payload); returns once all are on the socket (their PUBACKs may
        still be on their way: wait_acked() waits for them). Waits while the window is full, so
        memory stays bounded and the broker sets the pace. Raises ConnectionLostError when the
        connection is gone (its `written` says how many of these messages went out)."""
        if qos not in (0, 1):
            raise ValueError(f"QoS {qos}: only 0 and 1 are supported")
        step = min(_CHUNK, self.window)
        for k in range(0, len(messages), step):
            part = messages[k : k + step]
            await self._wait_room(len(part) if qos else 0, written=k)
            assert self._transport is not None
            self._transport.write(self._encode(part, qos, retain))
            self.sent += len(part)
            await asyncio.sleep(0)  # let PUBACKs in between writes

    async def wait_acked(self, timeout_s: float | None = None) -> None:
        """Return once every QoS 1 message written is acknowledged. Raises ConnectionLostError
        when the connection ends first, PublishError after `timeout_s` (both naming how many
        are unacknowledged) and PublishError when the broker refused some (MQTT 5)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while self.outstanding:
            self._raise_if_lost(0)
            self._settled.clear()
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(self._settled.wait(), left)
            except TimeoutError:
                raise PublishError(
                    f"{self.outstanding} of {self.sent} messages not acknowledged by the broker "
                    f"within {timeout_s:g} s",
                    unacked=self.outstanding,
                ) from None
        if self.refused:
            raise PublishError(
                f"{self.refused} of {self.sent} messages refused by the broker "
                f"({packets.puback_reason(self._refusal)})"
            )

    def resend_unacked(self, old: Publisher) -> int:
        """Write again, under the same packet ids, what `old` (whose connection was lost) sent
        and never saw acknowledged; returns how many. With a clean session the broker forgot
        them along with the old connection, so they count as this connection's now."""
        if self.outstanding or self._transport is None:
            raise RuntimeError("resend_unacked() needs a fresh, connected publisher")
        again: list[bytes] = []
        for pid, pkt in enumerate(old._inflight):
            if pkt is not None:
                self._inflight[pid] = pkt
                again.append(pkt)
                old._inflight[pid] = None
        old.outstanding = 0
        self.outstanding = len(again)
        if again:
            self._transport.write(b"".join(again))
        return len(again)

    async def _wait_room(self, n: int, *, written: int) -> None:
        while True:
            self._raise_if_lost(written)
            if not self._writable.is_set():
                await self._writable.wait()
            elif self.outstanding + n > self.window:
                self._room.clear()
                await self._room.wait()
            else:
                return

    def _raise_if_lost(self, written: int) -> None:
        lost = self._lost
        if lost is None and self._transport is None:
            lost = ConnectionLostError("not connected", unacked=self.outstanding)
        if lost is not None:
            raise ConnectionLostError(
                f"{lost} ({self.outstanding} messages unacknowledged)",
                unacked=self.outstanding,
                written=written,
            )

    def _encode(self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool) -> bytes:
        """PUBLISH packets (as packets.publish_packet builds them, with cached headers),
        recording QoS 1 ones as unacknowledged."""
        topics, fixed = self._topics, self._fixed
        first = packets.publish_first_byte(qos=qos, retain=retain)
        props = b"\x00" if self.v5 else b""  # v5: no properties
        extra = len(props) + (2 if qos else 0)
        parts: list[bytes] = []
        inflight = self._inflight
        pid = self._next_id
        for topic, payload in messages:
            th = topics.get(topic)
            if th is None:
                th = topics[topic] = packets.mqtt_string(topic)
            length = len(th) + extra + len(payload)
            fh = fixed.get((first, length))
            if fh is None:
                fh = fixed[(first, length)] = bytes([first]) + packets.encode_varint(length)
            if not qos:
                parts.append(fh + th + props + payload)
                continue
            pid = pid % 65535 + 1
            while inflight[pid] is not None:  # still unacknowledged: skip it
                pid = pid % 65535 + 1
            pkt = fh + th + _PIDS[pid] + props + payload
            inflight[pid] = pkt
            parts.append(pkt)
        if qos:
            self._next_id = pid
            self.outstanding += len(messages)
        return b"".join(parts)

    # --- from the socket ------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        inflight = self._inflight
        acked = 0
        try:
            while (pkt := reader.next()) is not None:
                if type(pkt) is PubAck:
                    if inflight[pkt.packet_id] is None:
                        continue  # not ours (already acked): nothing to count
                    inflight[pkt.packet_id] = None
                    acked += 1
                    if pkt.reason_code >= 0x80:
                        self.refused += 1
                        self._refusal = pkt.reason_code
                elif isinstance(pkt, packets.ConnAck):
                    self._on_connack(pkt)
                elif isinstance(pkt, Disconnect):
                    self._fail(f"the broker sent DISCONNECT {pkt.reason_code:#04x}", None)
                # PINGRESP: nothing to do.
        except packets.ProtocolError as exc:
            self._fail(f"protocol error: {exc}", exc.reason_code)
        if acked:
            self.outstanding -= acked
            self.acked += acked
            # Wake the producer once a tenth of the window is free, not on every ack.
            if self.outstanding <= self.window - self.window // 10:
                self._room.set()
            if not self.outstanding:
                self._settled.set()

    def _on_connack(self, ack: packets.ConnAck) -> None:
        if self._connack is None or self._connack.done():
            raise packets.ProtocolError("a second CONNACK", packets.PROTOCOL_ERROR)
        self._connack.set_result(ack)

    def _fail(self, why: str, reason_code: int | None) -> None:
        """End the connection: DISCONNECT with `reason_code` (None: the broker ended it)."""
        if self._lost is None:
            self._lost = ConnectionLostError(why, unacked=self.outstanding)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if reason_code is not None:
                transport.write(packets.disconnect_packet(reason_code, v5=self.v5))
            transport.close()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            why = f"connection lost: {exc}" if exc else "connection closed by the broker"
            self._lost = ConnectionLostError(why, unacked=self.outstanding)
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectError(f"{self._lost} before CONNACK"))
            self._connack.exception()  # retrieved: nobody may be waiting any more
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        # Wake every waiter: each sees the loss and raises.
        self._room.set()
        self._writable.set()
        self._settled.set()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s / 2)
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(packets.PINGREQ_PACKET)
