"""A gateway's MQTT message (`gateways/{id}/telemetry`) into readings: the readings of several
devices, meters and vehicles mixed, in the shapes an HTTP ingest body takes and read by the same
code (fleetd.ingest.http_items): one reading, a JSON array of them or `{"data": [...]}`, each
element a reading or `{"type": "METER"|"VEHICLE", "payload": {...}}`. An element's kind is its
`type`, else the id it carries (`meterId` or `vehicleId`); it is validated as the MQTT message of
its device's own topic would be (fleetdb.ingest.messages). Pure, no I/O.

Which devices a gateway may speak for: those FLEET_GATEWAYS_FILE grants it
(fleetd.ingest.gateway_grants), else any, and who may publish on a gateway's topic at all is the
broker's ACL to decide (docs/ingest.md)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from fleetd.ingest.gateway_grants import GatewayGrants
from fleetd.ingest.http_items import BodyError, decode_item, elements
from fleetdb.ingest.messages import (
    DEVICE_ID,
    MAX_PAYLOAD_BYTES,
    Decoded,
    Rejected,
    array_count_refused,
    array_too_large,
)

TOPIC_FILTER = "gateways/+/telemetry"
_PREFIX = "gateways/"


def is_gateway_topic(topic: str) -> bool:
    """Does `topic` belong to a gateway (anything under `gateways/`, well formed or not)?"""
    return topic.startswith(_PREFIX)


def decode_gateway(
    topic: str,
    payload: bytes,
    now: datetime,
    *,
    max_future: timedelta = timedelta(minutes=5),
    max_past: timedelta = timedelta(days=3650),
    grants: GatewayGrants | None = None,
) -> list[Decoded]:
    """Validate one gateway message: one result per element, in order. With `grants`, an element
    of a device they do not grant this gateway is a reject under the gateway's topic (never its
    device's: a replay must not store it). A bad element is a reject of its own whose reason
    names the gateway and the element's index; it is kept under its device's topic when the
    element names a usable device id (so `fleetctl rejects` counts it with that device and
    `fleetctl rejects replay` reads it as that device's message), else under the gateway's. A
    message that cannot be read as a whole (bad topic, not JSON, empty, too large) is one
    reject."""
    levels = topic.split("/")
    if len(levels) != 3 or levels[0] != "gateways" or levels[2] != "telemetry":
        rule = "must be gateways/{id}/telemetry"
        return [Rejected(topic, payload, f"topic: {rule}", "topic", rule)]
    gateway = levels[1]
    if not DEVICE_ID.fullmatch(gateway):
        rule = "gateway id must match [A-Za-z0-9_.:-]{1,64}"
        return [Rejected(topic, payload, f"topic: {rule}", "topic", rule)]
    if (large := array_too_large(topic, payload)) is not None:
        return [large]
    try:
        items = elements(payload, "payload")
    except BodyError as exc:
        return [Rejected(topic, payload, str(exc), "payload", exc.rule)]
    if (count := array_count_refused(topic, payload, len(items))) is not None:
        return [count]
    out: list[Decoded] = []
    for index, element in enumerate(items):
        device, item = decode_item(element, None, now, max_future=max_future, max_past=max_past)
        if device and grants is not None and not grants.allows(gateway, device):
            out.append(_not_granted(topic, gateway, index, device, element))
            continue
        if isinstance(item, Rejected):
            # A device's topic only when the element named a usable device id (decode_item
            # returns "" otherwise, its reject under "http"): else the gateway's.
            own = item.topic if device and item.field != "topic" else topic
            reason = f"gateway {gateway} item {index}: {item.reason}"
            item = Rejected(own, item.payload, reason, item.field, item.rule)
        out.append(item)
    return out


def _not_granted(topic: str, gateway: str, index: int, device: str, element: Any) -> Rejected:
    rule = "a device FLEET_GATEWAYS_FILE does not grant this gateway"
    reason = f"gateway {gateway} item {index}: device {device!r} is {rule}"
    payload = json.dumps(element, separators=(",", ":")).encode()[:MAX_PAYLOAD_BYTES]
    return Rejected(topic, payload, reason, "device", rule)
