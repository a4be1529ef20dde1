"""MQTT packet encoding/decoding used by the subscriber."""

from __future__ import annotations

import pytest

from fleetsvc.mqtt import packets


class TestVarint:
    """Variable byte integers (MQTT 1.5.5)."""

    @pytest.mark.parametrize(
        ("value", "encoded"),
        [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
         (16384, b"\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f")],
    )  # fmt: skip
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


def test_puback() -> None:
    assert packets.puback_packet(0x1234) == b"\x40\x02\x12\x34"


def test_connack() -> None:
    ack = packets.parse_connack(b"\x01\x00")
    assert ack.session_present
    assert ack.code == 0
    assert packets.connack_reason(0x86, v5=True) == "bad username or password"
    assert packets.connack_reason(5, v5=False) == "not authorised"
