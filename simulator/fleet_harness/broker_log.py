"""Who did what at the broker, read from a Mosquitto log written with `log_type all`: per
client, the PUBLISH and PUBACK packets each way, its connections and subscriptions, and how
many messages arrived before anybody had subscribed (the broker acks and drops those).

A test that finds readings missing prints `summary()` so the failure names the side that lost
them: the publisher (fewer PUBLISH in than published), the broker (PUBLISH in without PUBLISH
out), or a daemon (PUBLISH out and PUBACK in, but no row)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

_PUBLISH_IN = re.compile(r"Received PUBLISH from (\S+) \(d(\d)")
_PUBACK_OUT = re.compile(r"Sending PUBACK to (\S+) \(m\d+, rc(\d+)\)")
_PUBLISH_OUT = re.compile(r"Sending PUBLISH to (\S+) \(d(\d)")
_PUBACK_IN = re.compile(r"Received PUBACK from (\S+) ")
_CONNACK = re.compile(r"Sending CONNACK to (\S+) \((\d), (\d+)\)")
_SUBSCRIBE = re.compile(r"Received SUBSCRIBE from (\S+)")
_GONE = re.compile(r"Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)")
_NO_MATCHING_SUBSCRIBERS = 16


@dataclass
class ClientTally:
    """Packets and events of one client id, as the broker logged them."""

    publish_in: int = 0  # PUBLISH received from this client
    puback_out: int = 0  # PUBACK sent to it
    unrouted: int = 0  # of those, "no matching subscribers" (MQTT 5 rc 16): dropped
    publish_out: int = 0  # PUBLISH sent to it
    redelivered: int = 0  # of those, with the DUP flag (resent after a reconnect)
    puback_in: int = 0  # PUBACK received from it
    connects: int = 0  # CONNACK accepted
    session_present: int = 0  # of those, resuming a stored session
    subscribes: int = 0
    gone: int = 0  # disconnected, closed or timed out


@dataclass
class BrokerTally:
    """Every client's tally, and the PUBLISH packets received before the first SUBSCRIBE."""

    clients: dict[str, ClientTally]
    before_first_subscribe: int


def tally(text: str) -> BrokerTally:
    """Count what `text` (a Mosquitto log with `log_type all`) says each client did."""
    clients: dict[str, ClientTally] = {}
    before = 0
    subscribed = False

    def of(client: str) -> ClientTally:
        return clients.setdefault(client, ClientTally())

    for line in text.splitlines():
        if m := _PUBLISH_IN.search(line):
            of(m[1]).publish_in += 1
            before += not subscribed
        elif m := _PUBLISH_OUT.search(line):
            t = of(m[1])
            t.publish_out += 1
            t.redelivered += m[2] == "1"
        elif m := _PUBACK_IN.search(line):
            of(m[1]).puback_in += 1
        elif m := _PUBACK_OUT.search(line):
            t = of(m[1])
            t.puback_out += 1
            t.unrouted += int(m[2]) == _NO_MATCHING_SUBSCRIBERS
        elif m := _CONNACK.search(line):
            if m[3] == "0":
                t = of(m[1])
                t.connects += 1
                t.session_present += m[2] == "1"
        elif m := _SUBSCRIBE.search(line):
            of(m[1]).subscribes += 1
            subscribed = True
        elif m := _GONE.search(line):
            of(m[1]).gone += 1
    return BrokerTally(clients, before)


def summary(text: str) -> str:
    """One line per client with its non-zero counts, and the unrouted head of the stream."""
    counted = tally(text)
    lines = [
        f"broker: {counted.before_first_subscribe} PUBLISH received before the first SUBSCRIBE"
    ]
    for client, t in sorted(counted.clients.items()):
        parts = [f"{f.name}={getattr(t, f.name)}" for f in fields(t) if getattr(t, f.name)]
        lines.append(f"broker: {client}: " + ", ".join(parts))
    return "\n".join(lines)
