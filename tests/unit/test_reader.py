"""The packet reader: whole, checked packets out of any split of the byte stream; a
ProtocolError for anything it cannot trust."""

from __future__ import annotations

import struct

import pytest

from fleetsvc.mqtt import packets
from fleetsvc.mqtt.reader import (
    Disconnect,
    PacketReader,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    UnsubAck,
)

MIB = 1 << 20


def pkt(first: int, body: bytes) -> bytes:
    """A packet with a correct remaining length."""
    return bytes([first]) + packets.encode_varint(len(body)) + body


def props(*items: bytes) -> bytes:
    raw = b"".join(items)
    return packets.encode_varint(len(raw)) + raw


def publish(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 7,
    v5: bool = False,
    properties: bytes = b"\x00",
    flags: int | None = None,
) -> bytes:
    raw = topic.encode() if isinstance(topic, str) else topic
    body = struct.pack("!H", len(raw)) + raw + (struct.pack("!H", mid) if qos else b"")
    body += (properties if v5 else b"") + payload
    return pkt(0x30 | (qos << 1) if flags is None else 0x30 | flags, body)


def read_all(
    data: bytes, *, v5: bool = False, chunk: int = 0, max_bytes: int = MIB
) -> list[object]:
    """Every packet, feeding `data` whole or `chunk` bytes at a time."""
    reader = PacketReader(v5=v5, max_packet_bytes=max_bytes)
    out: list[object] = []
    pieces = [data] if not chunk else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        reader.feed(piece)
        while (p := reader.next()) is not None:
            out.append(p)
    assert reader.buffered == 0
    return out


GOOD = [
    (
        "v3 QoS 1 publish",
        False,
        publish("meters/M1/telemetry", b"{}"),
        Publish("meters/M1/telemetry", b"{}", 7, 1),
    ),
    ("v3 QoS 0 publish", False, publish("a/b", b"x", qos=0), Publish("a/b", b"x", 0, 0)),
    ("v3 retained, dup", False, publish("a/b", b"x", flags=0x0B), Publish("a/b", b"x", 7, 1)),
    (
        "v5 publish with properties",
        True,
        publish(
            "a/b",
            b"x",
            v5=True,
            properties=props(b"\x01\x01", b"\x26\x00\x01k\x00\x01v", b"\x0b\x05", b"\x0b\x06"),
        ),
        Publish("a/b", b"x", 7, 1),
    ),
    ("v5 publish, empty payload", True, publish("a/b", b"", v5=True), Publish("a/b", b"", 7, 1)),
    ("v3 CONNACK", False, b"\x20\x02\x01\x00", packets.ConnAck(True, 0)),
    (
        "v5 CONNACK with Server Keep Alive",
        True,
        pkt(0x20, b"\x00\x00" + props(b"\x13\x00\x0f", b"\x21\x00\x0a")),
        packets.ConnAck(False, 0, 15, 10),
    ),
    ("v3-only broker refusing v5", True, b"\x20\x02\x00\x01", packets.ConnAck(False, 1)),
    ("v3 SUBACK", False, b"\x90\x04\x00\x01\x01\x80", SubAck(1, (1, 0x80))),
    (
        "v5 SUBACK",
        True,
        pkt(0x90, b"\x00\x01" + props(b"\x1f\x00\x02ok") + b"\x01\x01"),
        SubAck(1, (1, 1), "ok"),  # its Reason String kept (the words of a refusal)
    ),
    ("v3 UNSUBACK", False, b"\xb0\x02\x00\x03", UnsubAck(3)),
    (
        "v5 UNSUBACK",
        True,
        pkt(0xB0, b"\x00\x03" + props(b"\x1f\x00\x02no") + b"\x87"),
        UnsubAck(3, (0x87,), "no"),
    ),
    (
        "v5 UNSUBACK, no subscription existed",
        True,
        b"\xb0\x04\x00\x03\x00\x11",
        UnsubAck(3, (0x11,)),
    ),
    ("PINGRESP", False, b"\xd0\x00", PingResp()),
    ("v3 DISCONNECT", False, b"\xe0\x00", Disconnect(0)),
    (
        "v5 DISCONNECT, taken over",
        True,
        pkt(0xE0, b"\x8e" + props(b"\x1f\x00\x03dup")),
        Disconnect(0x8E, "dup"),
    ),
    ("v5 DISCONNECT, no body", True, b"\xe0\x00", Disconnect(0)),
]


@pytest.mark.parametrize(
    ("v5", "data", "expected"), [c[1:] for c in GOOD], ids=[c[0] for c in GOOD]
)
@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_well_formed_packets_come_out_whole_however_split(
    v5: bool, data: bytes, expected: object, chunk: int
) -> None:
    assert read_all(data + b"\xd0\x00", v5=v5, chunk=chunk) == [expected, PingResp()]


BAD = [
    ("topic overruns the packet", False, pkt(0x32, b"\x00\x40ab\x00\x07"), "overruns the packet"),
    ("packet shorter than the topic length", False, pkt(0x30, b"\x00"), "shorter than its topic"),
    ("QoS 3", False, publish("a/b", b"x", flags=0x06), "QoS 3"),
    ("QoS 2", False, publish("a/b", b"x", qos=2), "QoS 2"),
    ("QoS 0 with DUP", False, publish("a/b", b"x", qos=0, flags=0x08), "DUP"),
    ("packet id 0", False, publish("a/b", b"x", mid=0), "packet id 0"),
    ("no room for the packet id", False, pkt(0x32, b"\x00\x03a/b\x00"), "before its packet id"),
    ("empty topic", False, publish("", b"x"), "empty topic"),
    ("topic not UTF-8", False, publish(b"a/\xff", b"x"), "not UTF-8"),
    ("wildcard in topic", False, publish("a/+", b"x"), "wildcard"),
    ("CONNACK reserved flags", False, b"\x21\x02\x00\x00", "reserved flags"),
    ("CONNACK ack flags", False, b"\x20\x02\x02\x00", "reserved flags"),
    ("v3 CONNACK too long", False, b"\x20\x03\x00\x00\x00", "CONNACK of 3 bytes"),
    ("reserved type 0", False, b"\x00\x00", "reserved type 0"),
    ("CONNECT", False, b"\x10\x00", "unexpected CONNECT"),
    ("PUBACK", False, b"\x40\x02\x00\x01", "unexpected PUBACK"),
    ("SUBSCRIBE", False, b"\x82\x00", "unexpected SUBSCRIBE"),
    ("PINGREQ", False, b"\xc0\x00", "unexpected PINGREQ"),
    ("AUTH", True, b"\xf0\x00", "unexpected AUTH"),
    ("remaining length of 5 bytes", False, b"\x30\x80\x80\x80\x80\x01", "longer than 4 bytes"),
    ("remaining length not minimal", False, b"\xd0\x80\x00", "minimally"),
    ("PINGRESP with a body", False, b"\xd0\x01\x00", "PINGRESP with a 1-byte body"),
    ("SUBACK without codes", False, b"\x90\x02\x00\x01", "SUBACK of 2 bytes"),
    ("SUBACK bad code", False, b"\x90\x03\x00\x01\x05", "return codes"),
    ("v3 DISCONNECT with a body", False, b"\xe0\x01\x00", "DISCONNECT with a 1-byte body"),
    (
        "v5 properties overrun",
        True,
        publish("a/b", b"", v5=True, properties=b"\x05\x01"),
        "overrun",
    ),
    (
        "v5 unknown property",
        True,
        publish("a/b", b"x", v5=True, properties=props(b"\x7f\x00")),
        "property 0x7f",
    ),
    (
        "v5 topic alias",
        True,
        publish("a/b", b"x", v5=True, properties=props(b"\x23\x00\x01")),
        "property 0x23",
    ),
    (
        "v5 repeated property",
        True,
        publish("a/b", b"x", v5=True, properties=props(b"\x01\x00", b"\x01\x01")),
        "repeats",
    ),
    (
        "v5 string property overruns",
        True,
        publish("a/b", b"x", v5=True, properties=props(b"\x03\x00\x09ab")),
        "overruns",
    ),
    ("v3 UNSUBACK with codes", False, b"\xb0\x03\x00\x03\x00", "UNSUBACK of 3 bytes"),
    ("v5 UNSUBACK without codes", True, b"\xb0\x03\x00\x03\x00", "UNSUBACK with reason codes"),
    (
        "v5 UNSUBACK, unknown code",
        True,
        b"\xb0\x04\x00\x03\x00\x01",
        "UNSUBACK with reason codes .1,.",
    ),
    ("v5 CONNACK properties short", True, pkt(0x20, b"\x00\x00\x03\x13\x00"), "do not fill"),
    ("control packet over the size limit", False, b"\x20\xff\xff\xff\x7f", "maximum packet size"),
]


@pytest.mark.parametrize(("v5", "data", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_untrustworthy_packets_raise_a_protocol_error(v5: bool, data: bytes, message: str) -> None:
    reader = PacketReader(v5=v5, max_packet_bytes=MIB)
    reader.feed(publish("ok/1", b"first", mid=1, v5=v5) + data + b"\xd0\x00")
    assert reader.next() == Publish("ok/1", b"first", 1, 1)
    with pytest.raises(packets.ProtocolError, match=message):
        reader.next()
    with pytest.raises(packets.ProtocolError):  # the stream has lost its framing for good
        reader.next()


def test_reason_codes_for_disconnect() -> None:
    cases = (
        (b"\x60\x00", packets.PROTOCOL_ERROR),
        (b"\x21\x02\x00\x00", 0x81),
        (b"\x20\xff\xff\x7f", packets.PACKET_TOO_LARGE),
    )
    for data, code in cases:
        reader = PacketReader(v5=True, max_packet_bytes=MIB)
        reader.feed(data)
        with pytest.raises(packets.ProtocolError) as info:
            reader.next()
        assert info.value.reason_code == code


def test_a_declared_huge_control_packet_fails_before_its_body_arrives() -> None:
    reader = PacketReader(v5=False, max_packet_bytes=MIB)
    reader.feed(b"\x90\xff\xff\xff\x7f")  # SUBACK declaring 256 MiB, nothing more sent
    with pytest.raises(packets.ProtocolError, match="exceeds the maximum packet size"):
        reader.next()


@pytest.mark.parametrize("chunk", [0, 1, 1000])
def test_an_oversized_publish_is_reported_and_skipped_unbuffered(chunk: int) -> None:
    big = publish("meters/M1/telemetry", b"x" * 5000, mid=9)
    data = big + publish("meters/M2/telemetry", b"{}", mid=10)
    got = read_all(data, chunk=chunk, max_bytes=2048)
    assert got == [
        Publish("meters/M1/telemetry", b"", 9, 1, len(big)),
        Publish("meters/M2/telemetry", b"{}", 10, 1),
    ]


def test_a_packet_of_exactly_the_maximum_size_is_read() -> None:
    data = publish("a/b", b"y" * 100)
    assert read_all(data, max_bytes=len(data)) == [Publish("a/b", b"y" * 100, 7, 1)]
    assert read_all(data, max_bytes=len(data) - 1)[0] == Publish("a/b", b"", 7, 1, len(data))


def test_connect_announces_the_maximum_packet_size_in_v5() -> None:
    pkt5 = packets.connect_packet("c", keepalive_s=30, v5=True, maximum_packet_bytes=MIB)
    assert b"\x27\x00\x10\x00\x00" in pkt5
    assert b"\x27" not in packets.connect_packet("c", keepalive_s=30, v5=False)


def test_disconnect_packet_reason_codes() -> None:
    assert packets.disconnect_packet(0x81, v5=True) == b"\xe0\x01\x81"
    assert packets.disconnect_packet(0x81, v5=False) == b"\xe0\x00"
    assert packets.disconnect_packet(0, v5=True) == b"\xe0\x00"


# The publisher's role: what alert delivery and the simulator read from the broker.
GOOD_FOR_A_PUBLISHER = [
    ("v3 PUBACK", False, b"\x40\x02\x12\x34", PubAck(0x1234)),
    ("v5 PUBACK, success", True, b"\x40\x02\x00\x01", PubAck(1)),
    ("v5 PUBACK, no subscribers", True, b"\x40\x03\x00\x01\x10", PubAck(1, 0x10)),
    (
        "v5 PUBACK, refused with a reason string",
        True,
        pkt(0x40, b"\x00\x02\x87" + props(b"\x1f\x00\x02no")),
        PubAck(2, 0x87),
    ),
    ("v5 CONNACK", True, b"\x20\x03\x00\x00\x00", packets.ConnAck(False, 0)),
    (
        "v5 CONNACK with Receive Maximum",
        True,
        pkt(0x20, b"\x00\x00" + props(b"\x21\x00\x14")),
        packets.ConnAck(False, 0, None, 20),
    ),
    ("v3 DISCONNECT", False, b"\xe0\x00", Disconnect(0)),
]
BAD_FOR_A_PUBLISHER = [
    ("a PUBLISH", False, publish("a/b", b"x"), "unexpected PUBLISH"),
    ("a SUBACK", False, b"\x90\x03\x00\x01\x01", "unexpected SUBACK"),
    ("an UNSUBACK", False, b"\xb0\x02\x00\x01", "unexpected UNSUBACK"),
    ("v3 PUBACK with a reason code", False, b"\x40\x03\x00\x01\x00", "PUBACK of 3 bytes"),
    ("PUBACK without its packet id", True, b"\x40\x01\x00", "PUBACK of 1 bytes"),
    ("PUBACK for packet id 0", False, b"\x40\x02\x00\x00", "packet id 0"),
    ("PUBACK reserved flags", False, b"\x42\x02\x00\x01", "reserved flags"),
    ("v5 PUBACK unknown reason", True, b"\x40\x03\x00\x01\x05", "reason code 0x05"),
    (
        "v5 PUBACK property not allowed",
        True,
        pkt(0x40, b"\x00\x01\x00" + props(b"\x01\x00")),
        "property 0x01",
    ),
    ("v5 PUBACK properties overrun", True, b"\x40\x05\x00\x01\x00\x05\x1f", "do not fill"),
    ("a PUBACK over the size limit", False, b"\x40\xff\xff\x7f", "maximum packet size"),
]


@pytest.mark.parametrize(
    ("v5", "data", "expected"),
    [c[1:] for c in GOOD_FOR_A_PUBLISHER],
    ids=[c[0] for c in GOOD_FOR_A_PUBLISHER],
)
@pytest.mark.parametrize("chunk", [0, 1])
def test_a_publisher_reads_its_acks_however_split(
    v5: bool, data: bytes, expected: object, chunk: int
) -> None:
    reader = PacketReader(v5=v5, max_packet_bytes=MIB, role="publisher")
    pieces = [data] if not chunk else [data[i : i + chunk] for i in range(len(data))]
    out = []
    for piece in [*pieces, b"\xd0\x00"]:
        reader.feed(piece)
        while (p := reader.next()) is not None:
            out.append(p)
    assert out == [expected, PingResp()]


@pytest.mark.parametrize(
    ("v5", "data", "message"),
    [c[1:] for c in BAD_FOR_A_PUBLISHER],
    ids=[c[0] for c in BAD_FOR_A_PUBLISHER],
)
def test_a_publisher_refuses_what_it_cannot_trust(v5: bool, data: bytes, message: str) -> None:
    reader = PacketReader(v5=v5, max_packet_bytes=1024, role="publisher")
    reader.feed(b"\x40\x02\x00\x07" + data)
    assert reader.next() == PubAck(7)
    with pytest.raises(packets.ProtocolError, match=message):
        reader.next()
