"""Publishing through gateways (`fleet-sim --gateways N`): the fleet's devices split among N
gateways, each publishing its devices' readings of a tick as JSON arrays on
`gateways/GATEWAY-xxxxx/telemetry` (fleetd's gateway topic, docs/ingest.md), meters and vehicles
mixed, instead of one message per device on its own topic.

Gateway g holds the g-th of N equal runs of meters and of vehicles, so with vehicle i charging
at meter i // K a depot's vehicles mostly share their meters' gateway. A gateway's readings are
split into messages of at most MAX_READINGS, under the repo's mosquitto.conf `max_packet_size`
(64 KiB)."""

from __future__ import annotations

from fleetsim.faults import Outgoing
from fleetsim.model import Fleet

# A vehicle reading is ~130 bytes: 400 of them stay under 64 KiB.
MAX_READINGS = 400


def gateway_topic(index: int) -> str:
    """The topic of gateway `index` (0-based): gateways/GATEWAY-00001/telemetry for 0."""
    return f"gateways/GATEWAY-{index + 1:05d}/telemetry"


class Gateways:
    """Regroups a tick's device messages into gateway messages."""

    def __init__(self, fleet: Fleet, count: int) -> None:
        if count < 1:
            raise ValueError("--gateways must be >= 1")
        self.count = count
        self._of: dict[str, int] = {}
        for topics in (fleet.meter_topics, fleet.vehicle_topics):
            for i, topic in enumerate(topics):
                self._of[topic] = i * count // len(topics)
        self._topics = [gateway_topic(g) for g in range(count)]

    def group(self, out: list[Outgoing]) -> list[Outgoing]:
        """The device messages `out` as gateway messages: each gateway's readings in their
        order, at most MAX_READINGS a message, gateways in the order of their first reading."""
        held: dict[int, list[bytes]] = {}
        for topic, payload in out:
            held.setdefault(self._of[topic], []).append(payload)
        grouped: list[Outgoing] = []
        for g, payloads in held.items():
            for k in range(0, len(payloads), MAX_READINGS):
                body = b"[" + b",".join(payloads[k : k + MAX_READINGS]) + b"]"
                grouped.append((self._topics[g], body))
        return grouped
