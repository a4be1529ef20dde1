"""One vehicle's report row: what every report (one vehicle, the fleet, anomalies) prints for it.

Energies arrive as exact integers in micro-kWh (kWh are numeric(12,6), so every sum is one), the
status is decided on those integers, and they become JSON numbers only here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fleetctl.analytics.energy import VehicleStats
from fleetctl.analytics.status import MESSAGES, min_ac_micro, verdict_micro
from fleetctl.analytics.window import Window

DEFAULT_INTERVAL_S = 60


@dataclass(slots=True)
class VehicleFigures:
    """Everything a row says about one vehicle, besides its own readings (`own`)."""

    vehicle_id: str
    meters: list[dict[str, Any]]  # the meter spans that fed it: meterId, from, to, shared
    ac_u: int  # Σ AC of the metering unit(s) it belongs to
    dc_u: int  # Σ DC of those units' vehicles (its own alone unless a meter is shared)
    meter_readings: int
    expected_meter: int
    assigned_s: float
    shared_with: list[str]
    own: VehicleStats | None
    assigned: bool = True


@dataclass(frozen=True, slots=True)
class RowContext:
    """What is the same for every row of one report."""

    expected_vehicle: int
    min_ac_u: int
    # Coverage of a count against expected_vehicle, computed once per distinct count: a fleet
    # report's 20,000 counts take a few hundred values.
    coverages: dict[int, float | None]

    @classmethod
    def of(cls, window: Window, *, min_ac_kwh: float, interval_s: int) -> RowContext:
        expected = expected_readings(window.seconds, interval_s)
        return cls(expected, min_ac_micro(min_ac_kwh), {})

    def coverage(self, readings: int, expected: int) -> float | None:
        """coverage(readings, expected), memoised for the report's own expected count."""
        if expected != self.expected_vehicle:
            return coverage(readings, expected)
        if readings not in self.coverages:
            self.coverages[readings] = coverage(readings, expected)
        return self.coverages[readings]


def expected_readings(seconds: float, interval_s: int) -> int:
    """Aligned readings in a half-open window: a partial interval still holds one."""
    return math.ceil(seconds / interval_s)


def coverage(readings: int, expected: int) -> float | None:
    """Readings received as a percentage of those expected."""
    return None if expected <= 0 else round(100 * readings / expected, 2)


def build_row(f: VehicleFigures, ctx: RowContext) -> dict[str, Any]:
    """The JSON row (camelCase keys, in this order) of one vehicle."""
    own = f.own
    if own is None or not own.readings:
        n_vehicle, own_dc = 0, 0.0
        temp: dict[str, float | None] = {"avg": None, "min": None, "max": None}
        soc: dict[str, float | None] = {"first": None, "last": None}
    else:
        n_vehicle, own_dc = own.readings, own.dc_u / 1e6
        # Sensors are real columns (float32 values): two decimals is their resolution.
        temp = {
            "avg": round(own.temp_sum / own.readings, 2),
            "min": round(own.temp_min, 2),
            "max": round(own.temp_max, 2),
        }
        soc = {"first": round(own.soc_first, 2), "last": round(own.soc_last, 2)}
    if f.assigned:
        status, ratio = verdict_micro(f.ac_u, f.dc_u, ctx.min_ac_u)
        message = MESSAGES[status]
    else:
        status, message, ratio = "insufficient_data", MESSAGES["no_assignment"], None
    return {
        "vehicleId": f.vehicle_id,
        "meters": f.meters,
        "totalAcKwh": f.ac_u / 1e6,  # int / float: the double nearest the exact kWh
        "totalDcKwh": f.dc_u / 1e6,
        "lossKwh": (f.ac_u - f.dc_u) / 1e6,
        "efficiency": None if ratio is None else round(ratio, 6),
        "efficiencyPercent": None if ratio is None else round(ratio * 100, 2),
        "status": status,
        "message": message,
        "meterShared": bool(f.shared_with),
        "sharedWith": f.shared_with,
        "vehicleDcKwh": own_dc,
        "assignedSeconds": f.assigned_s,
        "batteryTemp": temp,
        "soc": soc,
        "readings": {"vehicle": n_vehicle, "meter": f.meter_readings},
        "expectedReadings": {"vehicle": ctx.expected_vehicle, "meter": f.expected_meter},
        "coveragePercent": {
            "vehicle": ctx.coverage(n_vehicle, ctx.expected_vehicle),
            "meter": ctx.coverage(f.meter_readings, f.expected_meter),
        },
    }
