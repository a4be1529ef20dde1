"""The subscriber over a fake socket: what it acks, and what it does with a stream it cannot
trust (property tests with random and mutated byte streams split at random points)."""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fleetd.ingest.acks import AckSequencer
from fleetd.ingest.batcher import Batch, Envelope
from fleetd.mqtt.subscriber import MqttSubscriber, _Connection
from fleetdb.ingest.messages import Rejected
from fleetsvc.mqtt import packets

CONNACK_OK = b"\x20\x02\x00\x00"


class FakeTransport(asyncio.Transport):
    """Records what the subscriber writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Wire:
    """A subscriber connected to a fake broker; every message it delivers is acked at once."""

    def __init__(self, *, v5: bool = False, ack: bool = True, gateways: bool = True) -> None:
        self.delivered: list[tuple[str, bytes, int, int]] = []
        self.sub = MqttSubscriber(
            url="mqtt://127.0.0.1:1",
            client_id="t",
            on_message=self._on_message,
            on_oversized=self._on_oversized,
            protocol="5" if v5 else "3.1.1",
            gateways=gateways,
        )
        self.ack = ack
        self.conn = _Connection(self.sub, 1, v5=v5)
        self.transport = FakeTransport()
        self.conn.connection_made(self.transport)
        self.sub._conn = self.conn

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, gen: int) -> None:
        self.delivered.append((topic, payload, mid, qos))
        if self.ack:
            self.sub.ack(mid, qos, gen)

    def _on_oversized(self, topic: str, size: int, mid: int, qos: int, gen: int) -> None:
        self._on_message(topic, b"", mid, qos, gen)

    async def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            if not self.transport.closed:
                self.conn.data_received(chunk)
            await asyncio.sleep(0)  # acks queued by this read leave now

    def acked_ids(self) -> list[int]:
        out, w = [], bytes(self.transport.written)
        # A SUBACK granting the device filters has the gateway filter asked for after it.
        gateway = packets.subscribe_packet(2, ("gateways/+/telemetry",), v5=self.conn.v5)
        while w.startswith((b"\x40\x02", gateway)):
            if w.startswith(gateway):
                w = w[len(gateway) :]
                continue
            out.append(struct.unpack("!H", w[2:4])[0])
            w = w[4:]
        assert w in (b"", b"\xe0\x00", b"\xe0\x01\x81", b"\xe0\x01\x82", b"\xe0\x01\x95"), w
        return out


def publish(topic: bytes, payload: bytes, qos: int, mid: int, flags: int = 0) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    body += payload
    return bytes([0x30 | (qos << 1) | flags]) + packets.encode_varint(len(body)) + body


# --- the ack rules -----------------------------------------------------------------------------


async def test_acks_only_on_the_connection_the_message_came_on() -> None:
    wire = Wire(ack=False)
    await wire.feed(CONNACK_OK, publish(b"a/b", b"1", 1, 5))
    assert wire.sub.ack(5, 1, generation=0) is False  # an earlier connection's message
    assert wire.sub.ack(5, 1, generation=1) is True
    await asyncio.sleep(0)
    assert wire.acked_ids() == [5]
    wire.conn.connection_lost(None)
    assert wire.sub.ack(6, 1, generation=1) is False  # connection gone: the broker resends


async def test_nothing_is_acked_before_connack() -> None:
    wire = Wire(ack=False)
    assert wire.sub.ack(1, 1, generation=1) is False


def _batch(*mids: int, generation: int = 1) -> Batch:
    return Batch(
        [Envelope(Rejected("t", b"", "r", "f", "r"), None, 0.0, m, 1, generation) for m in mids]
    )  # type: ignore[arg-type]


class TestAckSequencer:
    """Batches committed out of order are acked in the order they were cut."""

    def test_a_later_batch_waits_for_the_earlier_one(self) -> None:
        sent: list[int] = []
        seq = AckSequencer(lambda mid, qos, gen: sent.append(mid) or True)
        assert seq.committed(1, _batch(3, 4)) == (0, 0)
        assert seq.waiting == 1
        assert sent == []
        assert seq.committed(0, _batch(1, 2)) == (4, 0)
        assert sent == [1, 2, 3, 4]
        assert seq.waiting == 0

    def test_skipped_acks_are_counted_and_do_not_block_later_batches(self) -> None:
        sent: list[int] = []

        def ack(mid: int, qos: int, gen: int) -> bool:
            if gen != 2:
                return False
            sent.append(mid)
            return True

        seq = AckSequencer(ack)
        assert seq.committed(0, _batch(1, 2, generation=1)) == (0, 2)
        assert seq.committed(1, _batch(9, generation=2)) == (1, 0)
        assert sent == [9]


# --- what the broker sends ----------------------------------------------------------------------


async def test_a_malformed_packet_ends_the_connection_with_disconnect_0x81() -> None:
    wire = Wire(v5=True)
    props = b"\x00"
    good = bytes([0x32, 2 + 3 + 2 + 1 + 1]) + b"\x00\x03a/b\x00\x07" + props + b"x"
    await wire.feed(b"\x20\x03\x00\x00\x00", good)  # v5 CONNACK: code 0, no properties
    bad = b"\x32\x07\x00\x40a/b\x00\x08"  # topic length 64 in a 7-byte packet
    await wire.feed(bad + good)
    assert wire.delivered == [("a/b", b"x", 7, 1)]
    assert wire.acked_ids() == [7]
    assert wire.transport.written.endswith(b"\xe0\x01\x81")
    assert wire.transport.closed
    assert not wire.sub.connected
    assert wire.conn.failed


async def test_session_taken_over_is_a_failed_connection() -> None:
    wire = Wire(v5=True)
    await wire.feed(b"\x20\x03\x00\x00\x00", b"\xe0\x01\x8e")
    assert wire.conn.failed
    assert wire.transport.closed


async def test_server_keep_alive_replaces_ours() -> None:
    wire = Wire(v5=True)
    await wire.feed(b"\x20\x06\x00\x00\x03\x13\x00\x05")
    assert wire.conn.connack.result().server_keepalive_s == 5


# --- property tests -----------------------------------------------------------------------------

_CONTROL_PACKETS = [
    b"\xd0\x00",  # PINGRESP
    b"\x90\x03\x00\x01\x01",  # SUBACK granted
    b"\x90\x03\x00\x01\x80",  # SUBACK refused
    b"\xe0\x00",  # DISCONNECT
    b"\x20\x02\x00\x00",  # a second CONNACK
    b"\x40\x02\x00\x01",  # an unexpected PUBACK
]
_TOPICS = st.sampled_from([b"meters/M1/telemetry", b"v/1", b"a", b"a/+", b"", b"\xff", b"x\x00"])


@st.composite
def _segment(draw: st.DrawFn) -> bytes:
    choice = draw(st.integers(0, 5))
    if choice <= 2:
        qos = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
        flags = draw(st.sampled_from([0, 0, 0, 1, 8, 9]))
        return publish(
            draw(_TOPICS), draw(st.binary(max_size=12)), qos, draw(st.integers(0, 65535)), flags
        )
    if choice == 3:
        return draw(st.sampled_from(_CONTROL_PACKETS))
    return draw(st.binary(min_size=1, max_size=8))


@st.composite
def _stream(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """(the byte stream after CONNACK, the same bytes split into chunks)."""
    data = bytearray(b"".join(draw(st.lists(_segment(), max_size=12))))
    for _ in range(draw(st.integers(0, 3))):  # mutations: flip, drop or insert a byte
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 2))
        if op == 0:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            del data[at]
        else:
            data.insert(at, draw(st.integers(0, 255)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return bytes(data), [bytes(data[a:b]) for a, b in itertools.pairwise(bounds)]


MAX_PACKET = 1 << 20  # the subscriber's default maximum packet size


def _oversized(rest: bytes, flags: int) -> list[tuple[str, bytes, int, int]]:
    """An oversized PUBLISH is delivered (empty payload) once its topic and packet id are in."""
    qos = (flags >> 1) & 3
    if len(rest) < 2 or (qos == 0 and flags & 8):
        return []
    tlen = rest[0] * 256 + rest[1]
    raw, after = rest[2 : 2 + tlen], rest[2 + tlen :]
    if len(raw) < tlen or len(after) < (2 if qos else 0):
        return []
    try:
        topic = raw.decode()
    except UnicodeDecodeError:
        return []
    if not topic or any(c in topic for c in "+#\x00"):
        return []
    mid = after[0] * 256 + after[1] if qos else 0
    if qos and not mid:
        return []
    return [(topic, b"", mid, qos)]


def _oracle_v3(data: bytes) -> list[tuple[str, bytes, int, int]]:
    """MQTT 3.1.1 by the book, written plainly: the messages a subscriber may deliver (and so
    ack) from `data`, stopping at the first packet it must not trust."""
    out: list[tuple[str, bytes, int, int]] = []
    pos = 0
    while pos < len(data):
        start, first = pos, data[pos]
        kind, flags = first >> 4, first & 15
        length, mult, i = 0, 1, pos + 1
        while i < len(data) and i - pos <= 4:
            length += (data[i] & 127) * mult
            mult *= 128
            i += 1
            if data[i - 1] < 128:
                break
        else:
            return out  # incomplete or over-long length
        if data[i - 1] == 0 and i - pos > 2:
            return out
        body, pos = data[i : i + length], i + length
        if kind == 3 and i - start + length > MAX_PACKET and (flags >> 1) & 3 < 2:
            return out + _oversized(data[i:], flags)  # header read, body skipped, then nothing
        if len(body) < length:
            return out  # not arrived yet
        if kind == 3:
            qos = (flags >> 1) & 3
            if qos > 1 or (qos == 0 and flags & 8) or len(body) < 2:
                return out
            tlen = body[0] * 256 + body[1]
            raw_topic, rest = body[2 : 2 + tlen], body[2 + tlen :]
            if len(raw_topic) < tlen or not raw_topic:
                return out
            try:
                topic = raw_topic.decode()
            except UnicodeDecodeError:
                return out
            if any(c in topic for c in "+#\x00"):
                return out
            mid = 0
            if qos:
                if len(rest) < 2 or rest[:2] == b"\x00\x00":
                    return out
                mid, rest = rest[0] * 256 + rest[1], rest[2:]
            out.append((topic, rest, mid, qos))
        elif (kind, flags) == (13, 0) and not body:
            continue  # PINGRESP
        elif (kind, flags) == (9, 0) and len(body) >= 3 and set(body[2:]) <= {0, 1, 2, 0x80}:
            if 0x80 in body[2:]:
                return out  # a refused subscription ends the connection
        else:
            return out  # anything else, including a second CONNACK and DISCONNECT, ends it
    return out


_OVERSIZED = b"\x32\x80\x89\x7a\x00\x03a/b\x00\x07" + b"x" * 10  # declares 2,000,000 bytes


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stream())
@example((_OVERSIZED, [_OVERSIZED[:5], _OVERSIZED[5:]]))
def test_v3_delivers_and_acks_exactly_the_well_formed_qos1_publishes(
    stream: tuple[bytes, list[bytes]],
) -> None:
    data, chunks = stream

    async def scenario() -> Wire:
        wire = Wire()
        await wire.feed(CONNACK_OK, *chunks)
        return wire

    wire = asyncio.run(scenario())
    expected = _oracle_v3(data)
    assert wire.delivered == expected
    qos1 = [mid for _, _, mid, qos in expected if qos == 1]
    acked = wire.acked_ids()
    if wire.conn.failed:  # a protocol error drops the acks of its own read
        assert acked == qos1[: len(acked)]
    else:
        assert acked == qos1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6), st.booleans())
def test_random_bytes_raise_nothing_but_protocol_errors(
    data: bytes, cuts: list[int], v5: bool
) -> None:
    from fleetsvc.mqtt.reader import PacketReader, Publish  # noqa: PLC0415

    reader = PacketReader(v5=v5, max_packet_bytes=64)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    try:
        for a, b in itertools.pairwise(bounds):
            reader.feed(data[a:b])
            while (p := reader.next()) is not None:
                if isinstance(p, Publish) and p.qos == 1:
                    assert 0 < p.packet_id < 65536
    except packets.ProtocolError:
        pass
