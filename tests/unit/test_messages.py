"""Validation rules: every rule rejects with a reason naming the field; valid input passes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fleetdb.ingest.messages import MeterReading, Rejected, VehicleReading, decode

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def meter(**kw: object) -> bytes:
    body = {
        "meterId": "M1",
        "kwhConsumedAc": 1.5,
        "voltage": 230.0,
        "timestamp": "2026-11-23T11:59:00Z",
    }
    return json.dumps(body | kw).encode()


class TestValidReadings:
    """Valid payloads decode to typed readings in UTC; extra fields are ignored."""

    def test_meter(self) -> None:
        r = decode("meters/M1/telemetry", meter(extra="ignored"), NOW)
        assert r == MeterReading("M1", datetime(2026, 11, 23, 11, 59, tzinfo=UTC), 1.5, 230.0)

    def test_offset_is_converted_to_utc(self) -> None:
        r = decode("meters/M1/telemetry", meter(timestamp="2026-11-23T13:59:00+02:00"), NOW)
        assert isinstance(r, MeterReading)
        assert r.ts == datetime(2026, 11, 23, 11, 59, tzinfo=UTC)
        assert r.ts.utcoffset() == timedelta(0)

    def test_vehicle_with_integer_numbers(self) -> None:
        body = {
            "vehicleId": "V1",
            "soc": 50,
            "kwhDeliveredDc": 0,
            "batteryTemp": -50,
            "timestamp": "2026-11-23T11:59:00.123456Z",
        }
        r = decode("vehicles/V1/telemetry", json.dumps(body).encode(), NOW)
        assert isinstance(r, VehicleReading)
        assert (r.soc, r.kwh_delivered_dc, r.battery_temp) == (50.0, 0.0, -50.0)
        assert r.ts.microsecond == 123456

    def test_bounds_are_inclusive_where_the_rule_says_so(self) -> None:
        assert isinstance(decode("meters/M1/telemetry", meter(voltage=1000), NOW), MeterReading)
        r = decode("meters/M1/telemetry", meter(timestamp="2026-11-23T12:05:00Z"), NOW)
        assert isinstance(r, MeterReading)


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "group"),
    [
        ("meters/M1/telemetry", b"\xc3\x28", "payload: not UTF-8", ("payload", "not UTF-8")),
        ("meters/M1/telemetry", b"", "payload: not valid JSON", ("payload", "not valid JSON")),
        ("meters/M1/telemetry", b'{"a": 1', "line 1 column 7", ("payload", "not valid JSON")),
        ("meters/M1/telemetry", b"null", "payload: must be a JSON object", None),
        ("meters/M1/telemetry", meter(voltage=None), "voltage: must be a number", None),
        ("meters/M1/telemetry", meter(kwhConsumedAc=-0.001), "kwhConsumedAc: must be >= 0", None),
        ("meters/M1/telemetry", meter(kwhConsumedAc=1e6), "kwhConsumedAc: must be <= 100000", None),
        (
            "meters/M1/telemetry",
            meter(voltage=-1),
            "voltage: must be > 0",
            ("voltage", "must be > 0.0"),
        ),
        ("meters/M1/telemetry", meter(timestamp="2026-11-23"), "timestamp: must be RFC 3339", None),
        (
            "meters/M1/telemetry",
            meter(timestamp="2026-11-23T12:05:01Z"),
            "1s in the future",
            ("timestamp", "more than 300s in the future"),
        ),
        (
            "meters/M1/telemetry",
            meter(timestamp="1990-01-01T00:00:00Z"),
            "timestamp: older than",
            ("timestamp", "older than 3650 days"),
        ),
        ("meters/M1/telemetry", meter(meterId=7), "meterId: must be a string", None),
        (
            "meters/M1/telemetry",
            meter(meterId="M2"),
            "meterId: 'M2' does not match topic id 'M1'",
            ("meterId", "does not match the topic's id"),
        ),
        (
            "meters/M1/telemetry",
            b" " * 8193,
            "payload: 8193 bytes exceeds 8192",
            ("payload", "larger than 8192 bytes"),
        ),
        ("meters/M1/status", meter(), "topic: must be", None),
        ("meters//telemetry", meter(meterId=""), "topic: device id must match", None),
    ],
)
def test_invalid_input_is_rejected_with_reason(
    topic: str, payload: bytes, reason: str, group: tuple[str, str] | None
) -> None:
    r = decode(topic, payload, NOW)
    assert isinstance(r, Rejected)
    assert reason in r.reason
    assert r.payload == payload
    assert r.topic == topic
    # The group is the reason's field and rule without the value, id or offset it quotes.
    assert r.reason.startswith(f"{r.field}: ")
    assert (r.field, r.rule) == (group or (r.field, r.rule))
    assert "got" not in r.rule
    assert "M1" not in r.rule
    assert "M2" not in r.rule


def test_rejects_of_one_rule_are_one_group_whatever_the_values() -> None:
    """Ids, values and parser offsets stay in the reason, never in the group."""
    rejects = []
    for i in range(1, 4):
        good = {"vehicleId": f"V{i}", "soc": 1, "kwhDeliveredDc": 1, "batteryTemp": 1}
        good["timestamp"] = "2026-11-23T11:59:00Z"
        for body in (
            json.dumps(good | {"vehicleId": f"XV{i}"}).encode(),
            json.dumps(good).encode()[: 20 + i],
            json.dumps(good | {"soc": 100 + i}).encode(),
        ):
            r = decode(f"vehicles/V{i}/telemetry", body, NOW)
            assert isinstance(r, Rejected)
            rejects.append(r)
    assert len({r.reason for r in rejects}) == 9
    assert {(r.field, r.rule) for r in rejects} == {
        ("vehicleId", "does not match the topic's id"),
        ("payload", "not valid JSON"),
        ("soc", "must be <= 100.0"),
    }


def test_several_errors_are_all_reported() -> None:
    body = {
        "vehicleId": "V1",
        "soc": 101,
        "kwhDeliveredDc": 1,
        "batteryTemp": 200,
        "timestamp": "2026-11-23T11:59:00Z",
    }
    r = decode("vehicles/V1/telemetry", json.dumps(body).encode(), NOW)
    assert isinstance(r, Rejected)
    assert r.reason == "soc: must be <= 100.0 (got 101); batteryTemp: must be <= 150.0 (got 200)"
    assert (r.field, r.rule) == ("soc", "must be <= 100.0")
