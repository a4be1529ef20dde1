"""The MQTT 3.1.1 / 5.0 packets our clients send, encoded by hand.

Only what fleet-telemetry uses: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH and PUBACK (both
ways), PINGREQ, DISCONNECT. Pure functions over bytes, so they are unit-tested directly;
`reader.py` frames and checks what the broker sends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
UNSUBSCRIBE, UNSUBACK = 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

# MQTT 5 reason codes fleetd sends or acts on.
MALFORMED_PACKET, PROTOCOL_ERROR, SESSION_TAKEN_OVER, PACKET_TOO_LARGE = 0x81, 0x82, 0x8E, 0x95
UNSUPPORTED_PROTOCOL_V5, UNACCEPTABLE_PROTOCOL_V3 = 0x84, 0x01

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # normal disconnect; the session is kept (v3 and v5)
_U16 = struct.Struct("!H")


class ProtocolError(Exception):
    """The broker sent something we cannot trust; `reason_code` is what DISCONNECT says (v5)."""

    def __init__(self, message: str, reason_code: int = MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason_code = reason_code


def encode_varint(n: int) -> bytes:
    """MQTT variable byte integer (remaining length, property lengths)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, next position), or None if the buffer ends inside the integer."""
    value = shift = 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ProtocolError("variable byte integer longer than 4 bytes")


def mqtt_string(s: str | bytes) -> bytes:
    """A UTF-8 string (or binary data) with its two-byte length, as MQTT encodes both."""
    raw = s.encode() if isinstance(s, str) else s
    return _U16.pack(len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    keepalive_s: int,
    v5: bool,
    username: str | None = None,
    password: str | None = None,
    session_expiry_s: int = 0,
    receive_maximum: int = 65535,
    maximum_packet_bytes: int = 0,
    clean: bool = False,
) -> bytes:
    """CONNECT. By default for a durable session (clean session/start off, a fixed client id:
    fleetd); `clean=True` for a client that keeps no state at the broker (a publisher). In v5 a
    non-zero `maximum_packet_bytes` asks the broker to send nothing larger."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean else 0
    body = bytearray(mqtt_string("MQTT"))
    body += bytes([5 if v5 else 4, flags]) + _U16.pack(keepalive_s)
    if v5:
        props = b"\x11" + struct.pack("!I", session_expiry_s) + b"\x21" + _U16.pack(receive_maximum)
        if maximum_packet_bytes:
            props += b"\x27" + struct.pack("!I", maximum_packet_bytes)
        body += encode_varint(len(props)) + props
    body += mqtt_string(client_id)
    if username is not None:
        body += mqtt_string(username)
    if password is not None:
        body += mqtt_string(password)
    return _packet(CONNECT << 4, bytes(body))


def subscribe_packet(packet_id: int, filters: tuple[str, ...], *, v5: bool, qos: int = 1) -> bytes:
    """SUBSCRIBE to every filter with the given maximum QoS."""
    body = bytearray(_U16.pack(packet_id))
    if v5:
        body += b"\x00"  # no properties
    for f in filters:
        body += mqtt_string(f) + bytes([qos])
    return _packet((SUBSCRIBE << 4) | 0x02, bytes(body))


def unsubscribe_packet(packet_id: int, filters: tuple[str, ...], *, v5: bool) -> bytes:
    """UNSUBSCRIBE from every filter (a durable session keeps what it subscribed before)."""
    body = bytearray(_U16.pack(packet_id))
    if v5:
        body += b"\x00"  # no properties
    for f in filters:
        body += mqtt_string(f)
    return _packet((UNSUBSCRIBE << 4) | 0x02, bytes(body))


def unsuback_reason(code: int) -> str:
    """Human text for an MQTT 5 UNSUBACK code (>= 0x80: refused), with the code itself."""
    codes = {
        0x00: "success",
        0x11: "no subscription existed",
        0x80: "unspecified error",
        0x83: "implementation specific error",
        0x87: "not authorised",
        0x8F: "topic filter invalid",
        0x91: "packet identifier in use",
    }
    return f"{codes.get(code, 'refused')} ({code:#04x})"


def disconnect_packet(reason_code: int, *, v5: bool) -> bytes:
    """DISCONNECT; v3 has no reason code, v5 carries one (0 = normal, session kept)."""
    if not v5 or reason_code == 0:
        return DISCONNECT_PACKET
    return bytes([DISCONNECT << 4, 1, reason_code])


def publish_first_byte(*, qos: int, retain: bool = False, dup: bool = False) -> int:
    """The fixed header's first byte of a PUBLISH."""
    return (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)


def publish_packet(
    topic: str,
    payload: bytes,
    *,
    packet_id: int = 0,
    qos: int = 1,
    retain: bool = False,
    v5: bool = False,
) -> bytes:
    """PUBLISH (QoS 0: no packet id; QoS 1: `packet_id` 1..65535); v5 with no properties."""
    if qos not in (0, 1):
        raise ValueError(f"QoS {qos}: only 0 and 1 are supported")
    if qos and not 0 < packet_id < 65536:
        raise ValueError(f"packet id {packet_id} out of 1..65535")
    body = mqtt_string(topic) + (_U16.pack(packet_id) if qos else b"") + (b"\x00" if v5 else b"")
    return _packet(publish_first_byte(qos=qos, retain=retain), body + payload)


def puback_packet(packet_id: int) -> bytes:
    """PUBACK; in v5 a remaining length of 2 means reason code 0 (success)."""
    return b"\x40\x02" + _U16.pack(packet_id)


@dataclass(frozen=True, slots=True)
class ConnAck:
    """A CONNACK, as the reader returns it."""

    session_present: bool
    code: int  # 0 = accepted (v3 return code / v5 reason code)
    server_keepalive_s: int | None = None  # MQTT 5 Server Keep Alive: overrides ours
    receive_maximum: int | None = None  # MQTT 5: QoS 1 messages we may have unacked at once


def connack_reason(code: int, *, v5: bool) -> str:
    """Human text for a refused CONNACK."""
    v3 = {
        1: "unacceptable protocol version",
        2: "client id rejected",
        3: "server unavailable",
        4: "bad username or password",
        5: "not authorised",
    }
    v5_codes = {
        0x01: "unacceptable protocol version (the broker speaks MQTT 3.1.1)",
        0x84: "unsupported protocol version",
        0x85: "client id not valid",
        0x86: "bad username or password",
        0x87: "not authorised",
        0x88: "server unavailable",
        0x89: "server busy",
        0x8A: "banned",
    }
    return (v5_codes if v5 else v3).get(code, f"code {code:#x}")


def suback_reason(code: int, *, v5: bool) -> str:
    """Human text for a SUBACK code refusing a filter (>= 0x80), with the code itself."""
    codes = {
        0x80: "unspecified error" if v5 else "refused",
        0x83: "implementation specific error",
        0x87: "not authorised",
        0x8F: "topic filter invalid",
        0x91: "packet identifier in use",
        0x97: "quota exceeded",
        0x9E: "shared subscriptions not supported",
        0xA1: "subscription identifiers not supported",
        0xA2: "wildcard subscriptions not supported",
    }
    return f"{codes.get(code, 'refused')} ({code:#04x})"


def puback_reason(code: int) -> str:
    """Human text for an MQTT 5 PUBACK reason code (>= 0x80: the broker refused the message)."""
    codes = {
        0x00: "success",
        0x10: "no matching subscribers",
        0x80: "unspecified error",
        0x83: "implementation specific error",
        0x87: "not authorised",
        0x90: "topic name invalid",
        0x91: "packet identifier in use",
        0x97: "quota exceeded",
        0x99: "payload format invalid",
    }
    return codes.get(code, f"code {code:#x}")
