"""An incremental reader of what an MQTT broker sends a client: bytes in, checked packets out.

Pure (no I/O, no clock): `feed()` appends whatever the socket gave, `next()` returns one whole
packet or None until more bytes arrive. Nothing from the broker is trusted: every length is
checked against the packet that holds it, reserved flags and packet types the client's role
never receives are refused, and a packet larger than `max_packet_bytes` is never buffered. Any
of these raises `ProtocolError` (and keeps raising it: the stream has lost its framing), which
the client answers with DISCONNECT.

Two roles. A subscriber (fleetd) receives CONNACK, SUBACK, UNSUBACK, PUBLISH, PINGRESP and
DISCONNECT; a
publisher (alert delivery, the simulator) CONNACK, PUBACK, PINGRESP and DISCONNECT, and a
PUBLISH is a protocol error for it (it subscribes to nothing).

One exception to "refuse": a PUBLISH that is only too large is well framed, and refusing it would
make the broker redeliver it on every reconnect forever (MQTT 3.1.1 has no way to tell the broker
our limit). Its header is read, its body skipped as it arrives, and it comes out as a `Publish`
with an empty payload and its `size`, so the daemon can keep it as a reject and ack it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal, NamedTuple

from fleetsvc.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    PACKET_TOO_LARGE,
    PINGRESP,
    PROTOCOL_ERROR,
    PUBACK,
    PUBLISH,
    SUBACK,
    UNSUBACK,
    ConnAck,
    ProtocolError,
)

# Packet type names for errors, indexed by type (MQTT 2.1.2).
_NAMES = (
    "reserved type 0",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
)
Role = Literal["subscriber", "publisher"]
# The packets other than PUBLISH each role may receive.
_CONTROL: dict[Role, frozenset[int]] = {
    "subscriber": frozenset({CONNACK, SUBACK, UNSUBACK, PINGRESP, DISCONNECT}),
    "publisher": frozenset({CONNACK, PUBACK, PINGRESP, DISCONNECT}),
}

# MQTT 5 property identifiers -> value type (MQTT 5.0 section 2.2.2.2).
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE,  # Payload Format Indicator
    0x02: _FOUR,  # Message Expiry Interval
    0x03: _UTF8,  # Content Type
    0x08: _UTF8,  # Response Topic
    0x09: _BINARY,  # Correlation Data
    0x0B: _VARINT,  # Subscription Identifier
    0x11: _FOUR,  # Session Expiry Interval
    0x12: _UTF8,  # Assigned Client Identifier
    0x13: _TWO,  # Server Keep Alive
    0x15: _UTF8,  # Authentication Method
    0x16: _BINARY,  # Authentication Data
    0x17: _BYTE,  # Request Problem Information
    0x18: _FOUR,  # Will Delay Interval
    0x19: _BYTE,  # Request Response Information
    0x1A: _UTF8,  # Response Information
    0x1C: _UTF8,  # Server Reference
    0x1F: _UTF8,  # Reason String
    0x21: _TWO,  # Receive Maximum
    0x22: _TWO,  # Topic Alias Maximum
    0x23: _TWO,  # Topic Alias
    0x24: _BYTE,  # Maximum QoS
    0x25: _BYTE,  # Retain Available
    0x26: _PAIR,  # User Property
    0x27: _FOUR,  # Maximum Packet Size
    0x28: _BYTE,  # Wildcard Subscription Available
    0x29: _BYTE,  # Subscription Identifier Available
    0x2A: _BYTE,  # Shared Subscription Available
}
# Which properties each packet may carry. Topic Alias (0x23) is absent from PUBLISH: we never
# announce a Topic Alias Maximum, so a broker must not use aliases toward us.
_ALLOWED_PROPERTIES = {
    PUBLISH: frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x26}),
    # 0x24-0x2A: Maximum QoS ... Shared Subscription Available
    CONNACK: frozenset(
        {0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, *range(0x24, 0x2B)}
    ),
    SUBACK: frozenset({0x1F, 0x26}),
    UNSUBACK: frozenset({0x1F, 0x26}),
    PUBACK: frozenset({0x1F, 0x26}),
    DISCONNECT: frozenset({0x11, 0x1C, 0x1F, 0x26}),
}
_REPEATABLE = frozenset({0x0B, 0x26})
_SERVER_KEEP_ALIVE, _REASON_STRING, _RECEIVE_MAXIMUM = 0x13, 0x1F, 0x21
_SUBACK_CODES_V3 = frozenset({0x00, 0x01, 0x02, 0x80})
_SUBACK_CODES_V5 = frozenset(
    {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
)
_UNSUBACK_CODES_V5 = frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})
# MQTT 5 PUBACK reason codes (3.4.2.1); 0x10 "no matching subscribers" is a success.
_PUBACK_CODES_V5 = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
_U16 = struct.Struct("!H")


class Publish(NamedTuple):
    """A message for us. `size` > 0: the packet had that many bytes, over the limit, and its
    payload was skipped (`payload` is empty)."""

    topic: str
    payload: bytes
    packet_id: int  # 0 for QoS 0
    qos: int
    size: int = 0


class PubAck(NamedTuple):
    """The broker has our QoS 1 message `packet_id`; in MQTT 5 a `reason_code` >= 0x80 says it
    refused it (0 in MQTT 3.1.1, which cannot refuse)."""

    packet_id: int
    reason_code: int = 0


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    codes: tuple[int, ...]  # granted QoS, or >= 0x80 for a refused filter
    reason_string: str | None = None  # MQTT 5: the broker's words for a refusal


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int
    codes: tuple[int, ...] = ()  # MQTT 5: one per filter (>= 0x80 refused); none in 3.1.1
    reason_string: str | None = None


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int  # 0 in MQTT 3.1.1, where a broker should not send DISCONNECT at all
    reason_string: str | None = None


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


Packet = Publish | PubAck | ConnAck | SubAck | UnsubAck | Disconnect | PingResp


class PacketReader:
    """Frames and checks the broker's byte stream for one connection of a client in `role`."""

    def __init__(self, *, v5: bool, max_packet_bytes: int, role: Role = "subscriber") -> None:
        self.v5 = v5
        self.max_packet_bytes = max_packet_bytes
        self._control = _CONTROL[role]
        # The PUBLISH packet type where a PUBLISH is welcome, else a type no packet has: the
        # subscriber's hot path compares with it exactly as it compared with PUBLISH before.
        self._publish_kind = PUBLISH if role == "subscriber" else -1
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already returned as packets
        self._skip = 0  # bytes of an oversized PUBLISH still to arrive and be dropped
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> None:
        """Append bytes received from the broker."""
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buf) - self._pos

    def next(self) -> Packet | None:
        """The next whole packet, or None if it has not fully arrived. Raises ProtocolError."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _next(self) -> Packet | None:
        buf, pos = self._buf, self._pos
        n = len(buf)
        if n - pos < 2:
            return None
        first = buf[pos]
        kind, flags = first >> 4, first & 0x0F
        if kind == self._publish_kind:
            qos = (flags >> 1) & 0x03
            if qos == 3:
                raise ProtocolError("PUBLISH with QoS 3")
            if qos == 2:
                raise ProtocolError("PUBLISH with QoS 2 on a QoS 1 subscription", PROTOCOL_ERROR)
            if qos == 0 and flags & 0x08:
                raise ProtocolError("QoS 0 PUBLISH with the DUP flag set")
        elif kind not in self._control:
            raise ProtocolError(f"unexpected {_NAMES[kind]} packet from the broker", PROTOCOL_ERROR)
        elif flags:
            raise ProtocolError(f"{_NAMES[kind]} with reserved flags {flags:#x}")
        # Remaining length: a variable byte integer of at most 4 bytes, minimally encoded.
        length = shift = 0
        i = pos + 1
        while True:
            if i >= n:
                return None
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if byte < 0x80:
                break
            shift += 7
            if shift > 21:
                raise ProtocolError("remaining length longer than 4 bytes")
        if byte == 0 and i - pos > 2:
            raise ProtocolError("remaining length not minimally encoded")
        end = i + length
        if end - pos > self.max_packet_bytes:
            if kind == PUBLISH:
                return self._oversized(i, end, flags)
            raise ProtocolError(
                f"{_NAMES[kind]} of {end - pos} bytes exceeds the maximum packet size "
                f"{self.max_packet_bytes}",
                PACKET_TOO_LARGE,
            )
        if end > n:
            return None
        self._pos = end
        if kind == PUBLISH:
            return self._publish(i, end, flags)
        if kind == PUBACK:
            return self._puback(i, end)
        body = bytes(buf[i:end])
        if kind == CONNACK:
            return self._connack(body)
        if kind == SUBACK:
            return self._suback(body)
        if kind == UNSUBACK:
            return self._unsuback(body)
        if kind == DISCONNECT:
            return self._disconnect(body)
        if body:
            raise ProtocolError(f"PINGRESP with a {len(body)}-byte body")
        return PingResp()

    # --- PUBLISH ------------------------------------------------------------------------------

    def _publish(self, i: int, end: int, flags: int) -> Publish:
        buf = self._buf
        qos = (flags >> 1) & 0x03
        topic, mid, p = self._variable_header(i, end, qos)
        if self.v5:
            # Inline, not _property_block(): this is the subscriber's hot path (a call cost a few %
            # of reading a packet), and most PUBLISH packets carry no property.
            length, p = _varint(buf, p, end, "PUBLISH property length")
            if p + length > end:
                raise ProtocolError("PUBLISH properties overrun the packet")
            if length:
                _properties(buf, p, p + length, PUBLISH)
            p += length
        return Publish(topic, bytes(buf[p:end]), mid, qos)

    def _variable_header(self, i: int, end: int, qos: int) -> tuple[str, int, int]:
        """(topic, packet id or 0, position after them) of the PUBLISH whose body starts at i."""
        buf = self._buf
        topic, p = self._topic(i, end)
        if not qos:
            return topic, 0, p
        if p + 2 > end:
            raise ProtocolError("PUBLISH ends before its packet id")
        mid = (buf[p] << 8) | buf[p + 1]
        if not mid:
            raise ProtocolError("QoS 1 PUBLISH with packet id 0")
        return topic, mid, p + 2

    def _topic(self, i: int, end: int) -> tuple[str, int]:
        buf = self._buf
        if i + 2 > end:
            raise ProtocolError("PUBLISH shorter than its topic length")
        p = i + 2 + ((buf[i] << 8) | buf[i + 1])
        if p > end:
            raise ProtocolError(
                f"PUBLISH topic of {p - i - 2} bytes overruns the packet ({end - i} bytes)"
            )
        if p == i + 2:
            raise ProtocolError("PUBLISH with an empty topic")
        try:
            topic = buf[i + 2 : p].decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("PUBLISH topic is not UTF-8") from exc
        if "+" in topic or "#" in topic or "\x00" in topic:
            raise ProtocolError("PUBLISH topic contains a wildcard or NUL")
        return topic, p

    def _oversized(self, i: int, end: int, flags: int) -> Publish | None:
        """Read an oversized PUBLISH's topic and packet id, then drop its body as it comes."""
        qos = (flags >> 1) & 0x03
        buf, n = self._buf, len(self._buf)
        if i + 2 > n:
            return None
        header_end = i + 2 + ((buf[i] << 8) | buf[i + 1]) + (2 if qos else 0)
        if header_end > n:
            return None  # at most 64 KiB of topic to wait for, never the body
        size = end - self._pos
        topic, mid, _ = self._variable_header(i, end, qos)
        self._pos = min(end, n)
        self._skip = end - self._pos
        return Publish(topic, b"", mid, qos, size)

    # --- PUBACK (a publisher's) -----------------------------------------------------------

    def _puback(self, i: int, end: int) -> PubAck:
        buf = self._buf
        length = end - i
        if length < 2 or (not self.v5 and length != 2):
            raise ProtocolError(f"PUBACK of {length} bytes")
        packet_id = (buf[i] << 8) | buf[i + 1]
        if not packet_id:
            raise ProtocolError("PUBACK for packet id 0")
        if length == 2:
            return PubAck(packet_id)
        code = buf[i + 2]
        if code not in _PUBACK_CODES_V5:
            raise ProtocolError(f"PUBACK with reason code {code:#04x}")
        if length > 3:
            _property_block(buf, i + 3, end, PUBACK, fills=True)
        return PubAck(packet_id, code)

    # --- control packets ----------------------------------------------------------------------

    def _connack(self, body: bytes) -> ConnAck:
        # A broker that speaks only 3.1.1 answers our v5 CONNECT with a 2-byte v3 CONNACK.
        if len(body) < 2 or (not self.v5 and len(body) != 2):
            raise ProtocolError(f"CONNACK of {len(body)} bytes")
        if body[0] & 0xFE:
            raise ProtocolError(f"CONNACK with reserved flags {body[0]:#x}")
        keepalive = receive_maximum = None
        if self.v5 and len(body) > 2:
            props, _ = _property_block(body, 2, len(body), CONNACK, fills=True)
            value = props.get(_SERVER_KEEP_ALIVE)
            keepalive = value if isinstance(value, int) else None
            value = props.get(_RECEIVE_MAXIMUM)
            receive_maximum = value if isinstance(value, int) else None
            if receive_maximum == 0:
                raise ProtocolError("CONNACK with Receive Maximum 0", PROTOCOL_ERROR)
        return ConnAck(bool(body[0] & 0x01), body[1], keepalive, receive_maximum)

    def _suback(self, body: bytes) -> SubAck:
        if len(body) < 3:
            raise ProtocolError(f"SUBACK of {len(body)} bytes")
        packet_id = _U16.unpack_from(body, 0)[0]
        p = 2
        reason = None
        if self.v5:
            props, p = _property_block(body, p, len(body), SUBACK, fills=False)
            value = props.get(_REASON_STRING)
            reason = value if isinstance(value, str) else None
        codes = tuple(body[p:])
        allowed = _SUBACK_CODES_V5 if self.v5 else _SUBACK_CODES_V3
        if not codes or any(c not in allowed for c in codes):
            raise ProtocolError(f"SUBACK with return codes {codes}")
        return SubAck(packet_id, codes, reason)

    def _unsuback(self, body: bytes) -> UnsubAck:
        if len(body) < 2 or (not self.v5 and len(body) != 2):
            raise ProtocolError(f"UNSUBACK of {len(body)} bytes")
        packet_id = _U16.unpack_from(body, 0)[0]
        if not self.v5:
            return UnsubAck(packet_id)
        props, p = _property_block(body, 2, len(body), UNSUBACK, fills=False)
        value = props.get(_REASON_STRING)
        codes = tuple(body[p:])
        if not codes or any(c not in _UNSUBACK_CODES_V5 for c in codes):
            raise ProtocolError(f"UNSUBACK with reason codes {codes}")
        return UnsubAck(packet_id, codes, value if isinstance(value, str) else None)

    def _disconnect(self, body: bytes) -> Disconnect:
        if not self.v5 or not body:
            if body:
                raise ProtocolError(f"MQTT 3.1.1 DISCONNECT with a {len(body)}-byte body")
            return Disconnect(0)
        reason = None
        if len(body) > 1:
            props, _ = _property_block(body, 1, len(body), DISCONNECT, fills=True)
            value = props.get(_REASON_STRING)
            reason = value if isinstance(value, str) else None
        return Disconnect(body[0], reason)


def _varint(buf: bytes | bytearray, pos: int, end: int, what: str) -> tuple[int, int]:
    """(value, next position) of a variable byte integer that must lie before `end`."""
    value = shift = 0
    for i in range(pos, min(end, pos + 4)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise ProtocolError(f"{what}: truncated or longer than 4 bytes")


def _property_block(
    buf: bytes | bytearray, pos: int, end: int, kind: int, *, fills: bool
) -> tuple[dict[int, object], int]:
    """The MQTT 5 property block of packet `kind` at buf[pos:end] (its length, then its
    properties): (the properties by id, the position after them). `fills`: nothing may follow
    them (SUBACK's codes may)."""
    name = _NAMES[kind]
    length, p = _varint(buf, pos, end, f"{name} property length")
    stop = p + length
    if fills and stop != end:
        raise ProtocolError(f"{name} properties do not fill the packet")
    if stop > end:
        raise ProtocolError(f"{name} properties overrun the packet")
    return _properties(buf, p, stop, kind), stop


def _properties(buf: bytes | bytearray, pos: int, end: int, kind: int) -> dict[int, object]:
    """Check the MQTT 5 properties in buf[pos:end] for packet `kind`; return them by id."""
    allowed = _ALLOWED_PROPERTIES[kind]
    props: dict[int, object] = {}
    while pos < end:
        ident = buf[pos]
        pos += 1
        if ident not in allowed:
            raise ProtocolError(f"{_NAMES[kind]} with property {ident:#04x}", PROTOCOL_ERROR)
        if ident in props and ident not in _REPEATABLE:
            raise ProtocolError(f"{_NAMES[kind]} repeats property {ident:#04x}", PROTOCOL_ERROR)
        value: object
        kind_of = _PROPERTY_TYPES[ident]
        if kind_of == _VARINT:
            value, pos = _varint(buf, pos, end, f"property {ident:#04x}")
        elif kind_of in (_BYTE, _TWO, _FOUR):
            width = {_BYTE: 1, _TWO: 2, _FOUR: 4}[kind_of]
            if pos + width > end:
                raise ProtocolError(f"property {ident:#04x} overruns its packet")
            value = int.from_bytes(buf[pos : pos + width], "big")
            pos += width
        else:
            value, pos = _string(buf, pos, end, ident, utf8=kind_of != _BINARY)
            if kind_of == _PAIR:
                _, pos = _string(buf, pos, end, ident, utf8=True)
        props[ident] = value
    return props


def _string(
    buf: bytes | bytearray, pos: int, end: int, ident: int, *, utf8: bool
) -> tuple[str | bytes, int]:
    if pos + 2 > end:
        raise ProtocolError(f"property {ident:#04x} overruns its packet")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise ProtocolError(f"property {ident:#04x} overruns its packet")
    raw = bytes(buf[pos + 2 : stop])
    if not utf8:
        return raw, stop
    try:
        return raw.decode(), stop
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"property {ident:#04x} is not UTF-8") from exc
