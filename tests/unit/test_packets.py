"""MQTT packet encoding/decoding: the shared codec of fleetd, alert delivery and the simulator."""

from __future__ import annotations

import pytest

from fleetsvc.mqtt import packets


class TestVarint:
    """Variable byte integers (MQTT 1.5.5)."""

    @pytest.mark.parametrize(
        ("value", "encoded"),
        [
            (0, b"\x00"),
            (127, b"\x7f"),
            (128, b"\x80\x01"),
            (16383, b"\xff\x7f"),
            (16384, b"\x80\x80\x01"),
            (268_435_455, b"\xff\xff\xff\x7f"),
        ],
    )
    def test_round_trip(self, value: int, encoded: bytes) -> None:
        assert packets.encode_varint(value) == encoded
        assert packets.decode_varint(encoded, 0) == (value, len(encoded))

    def test_incomplete_returns_none(self) -> None:
        assert packets.decode_varint(b"\x80", 0) is None

    def test_more_than_four_bytes_is_an_error(self) -> None:
        with pytest.raises(packets.ProtocolError):
            packets.decode_varint(b"\x80\x80\x80\x80\x01", 0)


class TestConnect:
    """CONNECT asks for a durable session (clean flag off) with optional credentials."""

    def test_v311_with_credentials(self) -> None:
        pkt = packets.connect_packet("fleetd", keepalive_s=30, v5=False, username="u", password="p")
        assert pkt[0] == 0x10
        body = pkt[2:]
        assert body[:6] == b"\x00\x04MQTT"
        assert body[6] == 4  # protocol level 3.1.1
        assert body[7] == 0xC0  # username + password, clean session off
        assert body[8:10] == b"\x00\x1e"
        assert body.endswith(b"\x00\x06fleetd\x00\x01u\x00\x01p")

    def test_v5_carries_session_expiry_and_receive_maximum(self) -> None:
        pkt = packets.connect_packet("c", keepalive_s=60, v5=True, session_expiry_s=3600)
        body = pkt[2:]
        assert body[6] == 5
        assert body[7] == 0x00  # no credentials, clean start off
        props = body[11 : 11 + body[10]]
        assert props == b"\x11\x00\x00\x0e\x10\x21\xff\xff"


def test_subscribe_v5_has_empty_properties_and_qos1_options() -> None:
    pkt = packets.subscribe_packet(1, ("a/+/b",), v5=True)
    assert pkt == b"\x82\x0b\x00\x01\x00\x00\x05a/+/b\x01"


def test_unsubscribe_has_no_options_and_v5_empty_properties() -> None:
    assert packets.unsubscribe_packet(3, ("a/+/b",), v5=False) == b"\xa2\x09\x00\x03\x00\x05a/+/b"
    assert (
        packets.unsubscribe_packet(3, ("a/+/b",), v5=True) == b"\xa2\x0a\x00\x03\x00\x00\x05a/+/b"
    )
    assert packets.unsuback_reason(0x11) == "no subscription existed (0x11)"
    assert packets.unsuback_reason(0x87) == "not authorised (0x87)"


def test_puback() -> None:
    assert packets.puback_packet(0x1234) == b"\x40\x02\x12\x34"


def test_connack_reasons() -> None:
    assert packets.connack_reason(0x86, v5=True) == "bad username or password"
    assert packets.connack_reason(5, v5=False) == "not authorised"


class TestPublish:
    """PUBLISH as the publishers send it: QoS 1 with a packet id, QoS 0 without, retain."""

    def test_qos1_retained(self) -> None:
        pkt = packets.publish_packet("a/b", b"xy", packet_id=0x0102, retain=True)
        assert pkt == b"\x33\x09\x00\x03a/b\x01\x02xy"

    def test_qos0_has_no_packet_id(self) -> None:
        assert packets.publish_packet("a/b", b"xy", qos=0) == b"\x30\x07\x00\x03a/bxy"

    def test_v5_has_empty_properties(self) -> None:
        pkt = packets.publish_packet("a/b", b"", packet_id=1, v5=True)
        assert pkt == b"\x32\x08\x00\x03a/b\x00\x01\x00"

    def test_a_long_payload_has_a_multi_byte_length(self) -> None:
        pkt = packets.publish_packet("t", b"z" * 200, packet_id=1)
        assert pkt[:3] == b"\x32\xcd\x01"  # 3 + 2 + 200 = 205

    @pytest.mark.parametrize(("qos", "packet_id"), [(1, 0), (1, 65536), (2, 1)])
    def test_what_it_cannot_send(self, qos: int, packet_id: int) -> None:
        with pytest.raises(ValueError):
            packets.publish_packet("t", b"", packet_id=packet_id, qos=qos)


def test_clean_connect_for_a_publisher() -> None:
    pkt = packets.connect_packet("p", keepalive_s=60, v5=False, clean=True)
    assert pkt[9] == 0x02


def test_puback_reason() -> None:
    assert packets.puback_reason(0x10) == "no matching subscribers"
    assert packets.puback_reason(0x87) == "not authorised"
