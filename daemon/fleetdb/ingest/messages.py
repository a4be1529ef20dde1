"""Decode and validate one MQTT message into typed readings or rejections with a reason.

Pure functions, no I/O: fleetd's MQTT layer calls `decode_many()` for every message it receives
(one reading, or a JSON array of them: a device flushing its offline buffer), `decode()` for
one; the reject replay (fleetdb.ingest.replay) decodes stored rejects again. The topic names
the kind (fleetdb.kinds: `{kind.topic}/{device}/telemetry`), whose payload model is built from
its registry entry (payload_model()).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, create_model

from fleetdb.kinds import MAX_KWH_PER_READING, METER, REGISTRY, VEHICLE, DeviceKind
from fleetdb.readings import MeterReading, Reading, VehicleReading

__all__ = [
    "MAX_ARRAY_ITEMS",
    "MAX_ARRAY_PAYLOAD_BYTES",
    "MAX_KWH_PER_READING",
    "MAX_PAYLOAD_BYTES",
    "Decoded",
    "MeterPayload",
    "MeterReading",
    "Reading",
    "Rejected",
    "VehiclePayload",
    "VehicleReading",
    "array_count_refused",
    "array_too_large",
    "decode",
    "decode_many",
    "payload_model",
]

MAX_PAYLOAD_BYTES = 8 * 1024
# A JSON array of readings (a device's offline buffer, flushed at once): ~8,000 readings fit in
# 1 MiB, FLEET_MQTT_MAX_PACKET_BYTES' default; each element is held to MAX_PAYLOAD_BYTES.
MAX_ARRAY_PAYLOAD_BYTES = 1024 * 1024
MAX_ARRAY_ITEMS = 10_000
DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that failed validation, kept with the reason (field, rule and the value or ids
    that broke it) and its group: `field` and `rule` without values, ids or offsets, stored
    with the reject so that one broken firmware is counted as one group, not one per device."""

    topic: str
    payload: bytes
    reason: str
    field: str
    rule: str


# A reading of any kind (the kind's `reading` class: MeterReading or VehicleReading for the
# built-in ones), or a reject.
Decoded = MeterReading | VehicleReading | Reading | Rejected


class _Strict(BaseModel):
    # strict: "12" is not a number and 1700000000 is not a timestamp; unknown fields are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


@lru_cache(maxsize=32)
def payload_model(kind: DeviceKind) -> type[BaseModel]:
    """The payload of `kind`'s topic: its id field, its columns by their wire names with their
    bounds, and the timestamp, in that order (the order errors are reported in)."""
    fields: dict[str, Any] = {kind.id_wire: (str, ...)}
    for c in kind.columns:
        fields[c.wire] = (float, Field(ge=c.ge, gt=c.gt, le=c.le))
    fields["timestamp"] = (AwareDatetime, ...)
    name = f"{kind.name.title()}Payload"
    model: type[BaseModel] = create_model(
        name, __base__=_Strict, __doc__=f"{kind.topic}/{{{kind.id_wire}}}/telemetry.", **fields
    )
    return model


MeterPayload = payload_model(METER)
VehiclePayload = payload_model(VEHICLE)


_MESSAGES = {
    "missing": "is required",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "finite_number": "must be a finite number (NaN/Infinity are not allowed)",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "timezone_aware": "must be RFC 3339 with a UTC offset (e.g. 2026-01-01T00:00:00Z)",
    "datetime_type": "must be an RFC 3339 string with a UTC offset",
    "datetime_parsing": "must be RFC 3339 with a UTC offset",
    "datetime_from_date_parsing": "must be RFC 3339 with a UTC offset",
}


def _describe(topic: str, payload: bytes, exc: ValidationError) -> Rejected:
    """`field: rule (got value)` for each error, e.g. `soc: must be <= 100 (got 120)`; grouped
    by the first error's field and rule."""
    parts: list[str] = []
    groups: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        kind = err["type"]
        field = ".".join(str(p) for p in err["loc"]) or "payload"
        if kind == "json_invalid":
            # The parser's message names a line and column: the reason keeps it, the rule not.
            ctx = err.get("ctx") or {}
            parts.append(f"payload: not valid JSON ({ctx.get('error', err['msg'])})")
            groups.append(("payload", "not valid JSON"))
            continue
        rule = _MESSAGES.get(kind)
        if rule is None:
            ctx = err.get("ctx") or {}
            bound = {
                "greater_than_equal": ">= {ge}",
                "greater_than": "> {gt}",
                "less_than_equal": "<= {le}",
                "less_than": "< {lt}",
            }.get(kind)
            rule = f"must be {bound.format(**ctx)}" if bound else err["msg"]
        got = err.get("input")
        suffix = f" (got {got!r})" if kind != "missing" and _short(got) else ""
        parts.append(f"{field}: {rule}{suffix}")
        groups.append((field, rule))
    return Rejected(topic, payload, "; ".join(parts), *groups[0])


def _short(value: Any) -> bool:
    return isinstance(value, int | float | str | bool) and len(repr(value)) <= 64


# Device ids repeat (20,000 of them, once a minute each): remember the valid ones instead of
# running the regex on every message. Bounded so a flood of random ids cannot grow it forever.
_VALID_IDS: set[str] = set()
_VALID_IDS_MAX = 1_000_000


def _check_id(device_id: str) -> bool:
    if not DEVICE_ID.fullmatch(device_id):
        return False
    if len(_VALID_IDS) < _VALID_IDS_MAX:
        _VALID_IDS.add(device_id)
    return True


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to decode one kind's payload (looked up once per kinds tuple, not per message)."""

    kind: DeviceKind
    model: type[BaseModel]
    wires: tuple[str, ...]


@lru_cache(maxsize=32)
def _plans(kinds: tuple[DeviceKind, ...]) -> dict[str, _Plan]:
    """The kinds' decoding plans by topic level."""
    return {k.topic: _Plan(k, payload_model(k), tuple(c.wire for c in k.columns)) for k in kinds}


@lru_cache(maxsize=32)
def _topic_rule(kinds: tuple[DeviceKind, ...]) -> str:
    return "must be " + " or ".join(f"{k.topic}/{{id}}/telemetry" for k in kinds)


def decode(
    topic: str,
    payload: bytes,
    now: datetime,
    *,
    max_future: timedelta = timedelta(minutes=5),
    max_past: timedelta = timedelta(days=3650),
    kinds: tuple[DeviceKind, ...] = REGISTRY,
) -> Decoded:
    """Validate one message. `now` is the receive time (UTC), used for the future/past bounds;
    `kinds` are the device kinds whose topics are known."""
    levels = topic.split("/")
    plan = _plans(kinds).get(levels[0]) if len(levels) == 3 and levels[2] == "telemetry" else None
    if plan is None:
        rule = _topic_rule(kinds)
        return Rejected(topic, payload, f"topic: {rule}", "topic", rule)
    device_id = levels[1]
    if device_id not in _VALID_IDS and not _check_id(device_id):
        rule = "device id must match [A-Za-z0-9_.:-]{1,64}"
        return Rejected(topic, payload, f"topic: {rule}", "topic", rule)
    if len(payload) > MAX_PAYLOAD_BYTES:
        reason = f"payload: {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        return Rejected(topic, payload, reason, "payload", f"larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"payload: not UTF-8 (byte {exc.start})"
        return Rejected(topic, payload, reason, "payload", "not UTF-8")

    try:
        msg = plan.model.model_validate_json(payload)
    except ValidationError as exc:
        return _describe(topic, payload, exc)

    values = msg.__dict__  # the validated fields by wire name
    ts: datetime = values["timestamp"]
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    if ts > now + max_future:
        ahead, limit = (ts - now).total_seconds(), max_future.total_seconds()
        reason = f"timestamp: {ahead:.0f}s in the future (limit {limit:.0f}s)"
        rule = f"more than {limit:.0f}s in the future"
        return Rejected(topic, payload, reason, "timestamp", rule)
    if ts < now - max_past:
        rule = f"older than {max_past.days} days"
        return Rejected(topic, payload, f"timestamp: {rule}", "timestamp", rule)

    kind = plan.kind
    body_id = values[kind.id_wire]
    if body_id != device_id:
        return _mismatch(topic, payload, kind.id_wire, body_id, device_id)
    reading: Reading = kind.reading(device_id, ts, *[values[w] for w in plan.wires])
    return reading


def _mismatch(topic: str, payload: bytes, field: str, body_id: str, topic_id: str) -> Rejected:
    reason = f"{field}: {body_id!r} does not match topic id {topic_id!r}"
    return Rejected(topic, payload, reason, field, "does not match the topic's id")


def decode_many(
    topic: str,
    payload: bytes,
    now: datetime,
    *,
    max_future: timedelta = timedelta(minutes=5),
    max_past: timedelta = timedelta(days=3650),
    kinds: tuple[DeviceKind, ...] = REGISTRY,
) -> list[Decoded]:
    """Validate one message: a reading, or a JSON array of readings for the topic's device, each
    element validated on its own (a bad one is rejected with its index, the others stored). An
    array that cannot be read as one (not JSON, empty, too large) is one reject."""
    first = payload[:1]
    if first in b" \t\r\n":  # b"" too
        first = payload.lstrip()[:1]
    if first != b"[":
        return [decode(topic, payload, now, max_future=max_future, max_past=max_past, kinds=kinds)]
    elements = _array(topic, payload)
    if isinstance(elements, Rejected):
        return [elements]
    out: list[Decoded] = []
    for index, element in enumerate(elements):
        item = decode(topic, element, now, max_future=max_future, max_past=max_past, kinds=kinds)
        if isinstance(item, Rejected):
            # The reason names the element; the group (field, rule) is the element's own.
            item = Rejected(
                item.topic, element, f"item {index}: {item.reason}", item.field, item.rule
            )
        out.append(item)
    return out


def array_too_large(topic: str, payload: bytes) -> Rejected | None:
    """The reject of a message of several readings (a device's array, a gateway's message)
    larger than MAX_ARRAY_PAYLOAD_BYTES, else None."""
    if len(payload) <= MAX_ARRAY_PAYLOAD_BYTES:
        return None
    reason = f"payload: {len(payload)} bytes exceeds {MAX_ARRAY_PAYLOAD_BYTES}"
    rule = f"array larger than {MAX_ARRAY_PAYLOAD_BYTES} bytes"
    return Rejected(topic, payload, reason, "payload", rule)


def array_count_refused(topic: str, payload: bytes, count: int) -> Rejected | None:
    """The reject of a message of `count` readings when that is none or over MAX_ARRAY_ITEMS,
    else None."""
    if not count:
        return Rejected(topic, payload, "payload: an empty array", "payload", "an empty array")
    if count > MAX_ARRAY_ITEMS:
        reason = f"payload: {count} readings in one array exceed {MAX_ARRAY_ITEMS}"
        rule = f"more than {MAX_ARRAY_ITEMS} readings in one array"
        return Rejected(topic, payload, reason, "payload", rule)
    return None


def _array(topic: str, payload: bytes) -> list[bytes] | Rejected:
    """The elements of a JSON array payload, each re-encoded as its own JSON document."""
    if (large := array_too_large(topic, payload)) is not None:
        return large
    try:
        # NaN/Infinity stay strings, so the element's own validation names the field.
        elements = json.loads(payload, parse_constant=str)
    except UnicodeDecodeError as exc:
        return Rejected(
            topic, payload, f"payload: not UTF-8 (byte {exc.start})", "payload", "not UTF-8"
        )
    except ValueError as exc:  # json.JSONDecodeError
        return Rejected(
            topic, payload, f"payload: not valid JSON ({exc})", "payload", "not valid JSON"
        )
    except RecursionError:  # "[[[[..." deeper than the interpreter's stack
        rule = "not valid JSON"
        return Rejected(topic, payload, "payload: nested too deeply", "payload", rule)
    if not isinstance(elements, list):  # whitespace then "[" is always an array; kept for mypy
        return Rejected(topic, payload, "payload: not a JSON array", "payload", "not valid JSON")
    if (count := array_count_refused(topic, payload, len(elements))) is not None:
        return count
    return [json.dumps(e, separators=(",", ":")).encode() for e in elements]
