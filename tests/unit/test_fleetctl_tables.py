"""fleetctl's tables fit an 80-column terminal with production-sized ids and values; -o wide
shows every column."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fleetctl.cli.alerts import show_alerts
from fleetctl.cli.app import Output
from fleetctl.cli.rejects import show_rejects
from fleetctl.cli.reports import (
    show_anomalies,
    show_chargers,
    show_current,
    show_fleet,
    show_performance,
)

WINDOW = {"start": "2026-11-19T11:00:00Z", "end": "2026-11-20T11:00:00Z"}
NARROW, WIDE = Output(colour=False), Output(colour=False, wide=True)


def _vehicle(i: int) -> dict[str, Any]:
    return {
        "vehicleId": f"VEHICLE-{i:05d}",
        "meters": [{"meterId": f"METER-{i:05d}"}],
        "totalAcKwh": 1234.567891,
        "totalDcKwh": 1049.382707,
        "lossKwh": 185.185184,
        "efficiencyPercent": 85.0,
        "status": "insufficient_data",
        "batteryTemp": {"avg": 31.25},
        "coveragePercent": {"vehicle": 99.9},
        "meterShared": True,
        "sharedWith": [f"VEHICLE-{i + 1:05d}"],
    }


FLEET = {
    "window": WINDOW,
    "totals": {
        "vehicles": 10_000,
        "meters": 10_000,
        "efficiencyPercent": 88.1,
        "totalAcKwh": 123_456.789,
        "totalDcKwh": 108_765.432,
        "lossKwh": 14_691.357,
    },
    "statusCounts": {"optimal": 9000, "degraded": 700, "critical": 200, "meter_error": 100},
    "newestReadingAt": "2026-11-20T10:59:00Z",
    "dataAgeSeconds": 61.0,
    "vehicles": [_vehicle(i) for i in range(1, 4)],
}
ANOMALIES = {
    "count": 3,
    "threshold": 0.85,
    "window": WINDOW,
    "vehicles": FLEET["vehicles"],
    "meterErrors": FLEET["vehicles"][:1],
}
CHARGERS = {
    "count": 10_000,
    "statusCounts": {"critical": 100, "degraded": 500, "optimal": 9000, "insufficient_data": 400},
    "window": WINDOW,
    "model": "AC = DC / eta + standby x time, least squares per meter on whole charging hours",
    "chargers": [
        {
            "meterId": f"METER-{i:05d}",
            "status": "insufficient_data",
            "reason": "interval_too_wide",
            "conversionEfficiency": 0.912,
            "standbyW": 1234.4,
            "boundActive": "efficiency",
            "ci95": {"conversionEfficiency": [0.6123, 1.0], "standbyW": [0.0, 4211.35]},
            "fit": {"chargingHours": 24, "rmseWh": 12.34},
            "billed": {"efficiency": 0.871},
            "vehicles": [f"VEHICLE-{i:05d}", f"VEHICLE-{i + 1:05d}"],
        }
        for i in range(1, 4)
    ],
}
ALERTS = {
    "open": 2,
    "openByKind": {"charger_critical": 1, "device_offline": 1},
    "alerts": [
        {
            "state": "resolved",
            "kind": "charger_degraded",
            "subject": "METER-00042",
            "lastValue": 0.8123,
            "openedAt": "2026-11-20T08:00:00.123456Z",
            "resolvedAt": "2026-11-20T10:00:00.123456Z",
        }
    ],
}
REJECTS = {
    "total": 12_345,
    "since": "2026-11-19T11:00:00.123456Z",
    "counts": [
        {
            "kind": "vehicles",
            "field": "timestamp",
            "rule": "more than 300s in the future (clock skew or a bad firmware)",
            "count": 12_000,
            "firstSeen": "2026-11-19T11:00:00.123456Z",
            "lastSeen": "2026-11-20T10:59:59.123456Z",
            "newest": "2026-11-20T10:59:59.123456Z",
            "example": {
                "id": 7,
                "receivedAt": "2026-11-20T10:59:59.123456Z",
                "deviceId": "VEHICLE-00042-WITH-A-PRODUCTION-SIZED-ID",
                "topic": "vehicles/VEHICLE-00042-WITH-A-PRODUCTION-SIZED-ID/telemetry",
                "reason": "timestamp: 31449600s in the future (limit 300s)",
            },
        }
    ],
    "newest": [
        {
            "receivedAt": "2026-11-20T10:59:59.123456Z",
            "topic": "vehicles/VEHICLE-00042/telemetry",
            "reason": "timestamp: more than 300 s in the future (got 2027-01-01T00:00:00Z)",
            "payload": '{"vehicleId": "VEHICLE-00042", "timestamp": "2027-01-01T00:00:00Z"}',
        }
    ],
}
CURRENT = {
    "kind": "vehicles",
    "asOf": "2026-11-20T11:00:00Z",
    "offlineAfterSeconds": 180,
    "count": 10_000,
    "offline": 12,
    "devices": [
        {
            "vehicleId": "VEHICLE-00042",
            "timestamp": "2026-11-20T10:59:00Z",
            "soc": 55.5,
            "kwhDeliveredDc": 12.345678,
            "batteryTemp": 31.2,
            "lastSeenSeconds": 60.0,
            "offline": True,
        }
    ],
}

PERFORMANCE = {
    **_vehicle(42),
    "window": WINDOW,
    "status": "meter_error",
    "message": "More DC delivered than AC billed: meter or assignment is wrong",
    "meters": [
        {"meterId": "METER-00042", "from": "2026-11-01T00:00:00Z", "to": "2026-11-20T08:00:00Z"}
    ],
    "vehicleDcKwh": 1049.382707,
    "chargers": [{**CHARGERS["chargers"][0], "meterId": "METER-00042"}],
    "batteryTemp": {"avg": 31.25, "min": -10.5, "max": 45.25},
    "soc": {"first": 20.5, "last": 80.25},
    "readings": {"vehicle": 1440, "meter": 1440},
    "expectedReadings": {"vehicle": 1440, "meter": 1440},
    "coveragePercent": {"vehicle": 100.0, "meter": 100.0},
    "hourly": [
        {
            "hour": "2026-11-20T10:00:00Z",
            "acKwh": 12.345678,
            "dcKwh": 10.5,
            "efficiency": 0.8505,
            "readings": {"vehicle": 60, "meter": 60},
        }
    ],
}

TABLES: list[tuple[str, Callable[[Any, Output], str], Any]] = [
    ("performance", show_performance, PERFORMANCE),
    ("fleet", show_fleet, FLEET),
    (
        "fleet --chargers",
        show_fleet,
        {
            **FLEET,
            "vehicles": [
                {**v, "charger": {**CHARGERS["chargers"][0], "meterId": f"METER-{i:05d}"}}
                for i, v in enumerate(FLEET["vehicles"], 10_001)  # type: ignore[call-overload]
            ],
        },
    ),
    ("anomalies", show_anomalies, ANOMALIES),
    ("chargers", show_chargers, CHARGERS),
    ("alerts", show_alerts, ALERTS),
    ("rejects", show_rejects, REJECTS),
    ("current", show_current, CURRENT),
]


@pytest.mark.parametrize(("name", "show", "result"), TABLES)
def test_the_default_table_fits_80_columns(
    name: str, show: Callable[[Any, Output], str], result: Any
) -> None:
    for line in show(result, NARROW).splitlines():
        assert len(line) <= 80, (name, len(line), line)


@pytest.mark.parametrize(("name", "show", "result"), TABLES)
def test_wide_shows_every_column(
    name: str, show: Callable[[Any, Output], str], result: Any
) -> None:
    narrow, wide = show(result, NARROW), show(result, WIDE)
    assert len(wide) >= len(narrow), name
    if name in ("fleet", "anomalies"):
        assert "coverage" in wide
        assert "coverage" not in narrow
    if name == "chargers":
        assert "VEHICLE-00002" in wide
        assert "interval_too_wide" in wide
    if name in ("chargers", "fleet --chargers", "performance"):
        assert "0.612-1.000" in narrow
        assert "0.0-4,211.4" in narrow
    if name == "rejects":
        assert "(clock skew or a bad firmware)" in wide
