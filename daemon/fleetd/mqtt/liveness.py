"""Is the broker still there? Keepalive deadlines, the TCP-level view used while reading is
paused, and the pattern of a client-id clash.

A live broker answers every PINGREQ (sent every half keepalive) within milliseconds, so on a
live link fleetd never goes more than half a keepalive plus a round trip without a packet. We
call the link *silent* once a PINGREQ has gone unanswered for PINGRESP_WAIT_S (unhealthy from
then on) and *dead* after 1.5 x keepalive without a packet, the limit at which the broker gives
up on us too ([MQTT-3.1.2-24]); the connection is then aborted and fleetd reconnects.

While fleetd has paused reading (backpressure) the broker's packets, PINGRESP included, wait
unread in the socket: silence at the MQTT level then says nothing. The kernel still sees the
TCP acknowledgements of what we send, and we keep sending a PINGREQ every half keepalive, so a
live link has a fresh ACK at most half a keepalive plus a round trip old, and a dead one none.
Resuming just long enough to read a PINGRESP is no option: it sits behind up to a Receive
Maximum of messages that we would have to buffer, which is what pausing avoids.
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from typing import Protocol

# The first fields of Linux's struct tcp_info (linux/tcp.h): 8 bytes of u8 fields, then u32s:
# rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, fackets, last_data_sent,
# last_ack_sent, last_data_recv, last_ack_recv (milliseconds ago).
_TCP_INFO = struct.Struct("=8B13I")
_LAST_ACK_RECV = 8 + 12

PINGRESP_WAIT_MAX_S = 5.0
# A connection the broker closes (no DISCONNECT, no reason code) this soon after CONNACK is
# "short"; this many in a row look like another client taking our client id back and forth.
CLASH_CONNECTION_S = 5.0
CLASH_STREAK = 3


class _HasExtraInfo(Protocol):
    def get_extra_info(self, name: str, default: object = None) -> object: ...


def pingresp_wait_s(keepalive_s: float) -> float:
    """How long a PINGREQ may go unanswered before the link counts as silent."""
    return min(PINGRESP_WAIT_MAX_S, keepalive_s / 2)


def give_up_after_s(keepalive_s: float) -> float:
    """Silence after which the connection is dead: 1.5 x keepalive, as the broker judges us."""
    return 1.5 * keepalive_s


def tcp_last_ack_age_s(transport: _HasExtraInfo) -> float | None:
    """Seconds since the peer's TCP stack last acknowledged anything on this connection (Linux
    TCP_INFO), or None where the kernel does not tell (then a paused link counts as alive)."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_INFO", None)
    if option is None or not hasattr(sock, "getsockopt"):
        return None
    try:
        raw: bytes = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO.size)
    except OSError:
        return None
    if len(raw) < _TCP_INFO.size:
        return None
    age_ms: int = _TCP_INFO.unpack_from(raw)[_LAST_ACK_RECV]
    return age_ms / 1000


class ClashWatch:
    """Counts connections the broker closed right after CONNACK without saying why (all a
    3.1.1 broker can do when another client connects with our client id)."""

    def __init__(self) -> None:
        self.streak = 0
        self._lived: deque[float] = deque(maxlen=CLASH_STREAK)

    def ended(self, lived_s: float, *, hung_up_by_broker: bool) -> bool:
        """Record one connection's end; True when this one completes a suspicious streak (every
        CLASH_STREAK-th short connection in a row, so the log repeats but does not flood)."""
        if not hung_up_by_broker or lived_s >= CLASH_CONNECTION_S:
            self.streak = 0
            self._lived.clear()
            return False
        self.streak += 1
        self._lived.append(lived_s)
        return self.streak % CLASH_STREAK == 0

    @property
    def longest_s(self) -> float:
        """The longest of the last CLASH_STREAK short connections."""
        return max(self._lived, default=0.0)
