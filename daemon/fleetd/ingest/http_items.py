"""An HTTP ingest body into items: one reading, a JSON array of them, or the seeds' shapes
(`{"type": "METER"|"VEHICLE", "payload": {...}}`, `{"data": [...]}`), each item decoded by the
same rules as an MQTT message of its device's topic (fleetdb.ingest.messages). A gateway's MQTT
message is read by the same code (fleetd.ingest.gateway_items). Pure, no I/O."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from fleetdb.ingest.messages import DEVICE_ID, MAX_PAYLOAD_BYTES, Decoded, Rejected, decode
from fleetdb.kinds import REGISTRY

# A kind's name (fleetdb.kinds): the seeds' `type` is its upper case, its id field names it.
Kind = str
_ID_FIELD: dict[Kind, str] = {k.name: k.id_wire for k in REGISTRY}
_TOPIC: dict[Kind, str] = {k.name: k.topic for k in REGISTRY}
_TYPES: dict[str, Kind] = {k.name.upper(): k.name for k in REGISTRY}
_TYPE_RULE = "must be " + " or ".join(_TYPES)
_ID_RULE = "needs " + " or ".join(_ID_FIELD.values())


class BodyError(ValueError):
    """The body as a whole cannot be read (not JSON, not one of the shapes): a 400. `rule` is
    the reason without values or offsets (a reject's group, for a gateway's message)."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


def elements(body: bytes, what: str = "body") -> list[Any]:
    """The items of a body: an array's elements, `data`'s elements, or the one object. `what`
    names the whole in the error's message ("payload" for an MQTT message)."""
    try:
        # NaN/Infinity stay strings, so the item's own validation names the field.
        parsed = json.loads(body, parse_constant=str)
    except UnicodeDecodeError as exc:
        raise BodyError(f"{what}: not UTF-8 (byte {exc.start})", "not UTF-8") from None
    except ValueError as exc:
        raise BodyError(f"{what}: not valid JSON ({exc})", "not valid JSON") from None
    except RecursionError:
        raise BodyError(f"{what}: nested too deeply", "not valid JSON") from None
    if isinstance(parsed, dict) and "data" in parsed and isinstance(parsed["data"], list):
        parsed = parsed["data"]
    if isinstance(parsed, list):
        return parsed
    if isinstance(parsed, dict):
        return [parsed]
    rule = 'must be a reading, an array of readings or {"data": [...]}'
    raise BodyError(f"{what}: {rule}", rule)


def device_of(element: Any, kind: Kind | None) -> tuple[Kind, str, Any] | Rejected:
    """(kind, device id, reading object) of one item, or why it has none. `kind` comes from
    the route (/meter, /vehicle) or, when None, from the item: `type`, else which id it has."""
    reading = element
    if isinstance(element, dict) and "payload" in element and "type" in element:
        named = _TYPES.get(str(element["type"]).upper())
        if named is None:
            rule = _TYPE_RULE
            return _reject("http", element, f"type: {rule} (got {element['type']!r})", "type", rule)
        if kind is not None and named != kind:
            rule = "does not match the route"
            return _reject("http", element, f"type: {named} {rule}", "type", rule)
        kind, reading = named, element["payload"]
    if not isinstance(reading, dict):
        rule = "must be a JSON object"
        return _reject("http", element, f"payload: {rule}", "payload", rule)
    if kind is None:
        kind = next((name for name, field in _ID_FIELD.items() if field in reading), None)
        if kind is None:
            rule = _ID_RULE
            return _reject("http", element, f"payload: {rule}", "payload", rule)
    field = _ID_FIELD[kind]
    device = reading.get(field)
    if not isinstance(device, str):
        rule = "is required" if device is None else "must be a string"
        return _reject(_TOPIC[kind], element, f"{field}: {rule}", field, rule)
    if not DEVICE_ID.fullmatch(device):
        # Checked here, not left to the topic built from it: an item has no topic of its own,
        # so "topic: ..." would name nothing the sender wrote (and "a/b" would break the topic).
        rule = "must match [A-Za-z0-9_.:-]{1,64}"
        got = f" (got {device!r})" if len(device) <= 64 else f" ({len(device)} characters)"
        return _reject("http", element, f"{field}: {rule}{got}", field, rule)
    return kind, device, reading


def decode_item(
    element: Any,
    kind: Kind | None,
    now: datetime,
    *,
    max_future: timedelta,
    max_past: timedelta,
) -> tuple[str, Decoded]:
    """(device id or "", reading or reject) of one item, validated as the MQTT message
    `{kind's topic}/{device}/telemetry` with the reading as its payload would be."""
    found = device_of(element, kind)
    if isinstance(found, Rejected):
        return "", found
    kind, device, reading = found
    topic = f"{_TOPIC[kind]}/{device}/telemetry"
    payload = json.dumps(reading, separators=(",", ":")).encode()
    return device, decode(topic, payload, now, max_future=max_future, max_past=max_past)


def _reject(topic: str, element: Any, reason: str, field: str, rule: str) -> Rejected:
    payload = json.dumps(element, separators=(",", ":")).encode()[:MAX_PAYLOAD_BYTES]
    return Rejected(topic, payload, reason, field, rule)
