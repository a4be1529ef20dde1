"""Validation rules: every rule rejects with a reason naming the field; valid input passes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fleetd.messages import MeterReading, Rejected, VehicleReading, decode

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
        body = {"vehicleId": "V1", "soc": 50, "kwhDeliveredDc": 0, "batteryTemp": -50,
                "timestamp": "2026-11-23T11:59:00.123456Z"}  # fmt: skip
        r = decode("vehicles/V1/telemetry", json.dumps(body).encode(), NOW)
        assert isinstance(r, VehicleReading)
        assert (r.soc, r.kwh_delivered_dc, r.battery_temp) == (50.0, 0.0, -50.0)
        assert r.ts.microsecond == 123456

    def test_bounds_are_inclusive_where_the_rule_says_so(self) -> None:
        assert isinstance(decode("meters/M1/telemetry", meter(voltage=1000), NOW), MeterReading)
        r = decode("meters/M1/telemetry", meter(timestamp="2026-11-23T12:05:00Z"), NOW)
        assert isinstance(r, MeterReading)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("meters/M1/telemetry", b"\xc3\x28", "payload: not UTF-8"),
        ("meters/M1/telemetry", b"", "payload: not valid JSON"),
        ("meters/M1/telemetry", b"null", "payload: must be a JSON object"),
        ("meters/M1/telemetry", meter(voltage=None), "voltage: must be a number"),
        ("meters/M1/telemetry", meter(kwhConsumedAc=-0.001), "kwhConsumedAc: must be >= 0"),
        ("meters/M1/telemetry", meter(kwhConsumedAc=1e6), "kwhConsumedAc: must be <= 100000"),
        ("meters/M1/telemetry", meter(voltage=-1), "voltage: must be > 0"),
        ("meters/M1/telemetry", meter(timestamp="2026-11-23"), "timestamp: must be RFC 3339"),
        ("meters/M1/telemetry", meter(timestamp="2026-11-23T12:05:01Z"), "1s in the future"),
        ("meters/M1/telemetry", meter(timestamp="1990-01-01T00:00:00Z"), "timestamp: older than"),
        ("meters/M1/telemetry", meter(meterId=7), "meterId: must be a string"),
        ("meters/M1/telemetry", b" " * 8193, "payload: 8193 bytes exceeds 8192"),
        ("meters/M1/status", meter(), "topic: must be"),
        ("meters//telemetry", meter(meterId=""), "topic: device id must match"),
    ],
)
def test_invalid_input_is_rejected_with_reason(topic: str, payload: bytes, reason: str) -> None:
    r = decode(topic, payload, NOW)
    assert isinstance(r, Rejected)
    assert reason in r.reason
    assert r.payload == payload
    assert r.topic == topic


def test_several_errors_are_all_reported() -> None:
    body = {"vehicleId": "V1", "soc": 101, "kwhDeliveredDc": 1, "batteryTemp": 200,
            "timestamp": "2026-11-23T11:59:00Z"}  # fmt: skip
    r = decode("vehicles/V1/telemetry", json.dumps(body).encode(), NOW)
    assert isinstance(r, Rejected)
    assert r.reason == "soc: must be <= 100.0 (got 101); batteryTemp: must be <= 150.0 (got 200)"
