"""Charger diagnosis: how efficiently each metering unit's charger converts AC to DC, apart
from what its site draws on standby.

The billed ratio ΣDC/ΣAC mixes two things: the converter's losses and the meter's standby draw
(30-90 W of electronics, display and contactor), which counts as loss however little a vehicle
charged. Per meter, over the window's whole UTC hours h, we fit

    AC_h = DC_h / η + P_standby · Δt_h

by least squares (two unknowns, no intercept): DC_h is the energy of the vehicles assigned to
the meter for the whole hour, Δt_h the time the meter reported (its readings × the interval).
Hourly rollups are the data: exact sums that a day's fit reads as 24 points per meter without
touching a raw reading, and because the model is linear an hour mixing charging and idle
minutes obeys it just as a minute does. Hours in which a meter's assignment changes are left
out (their DC cannot be attributed), and so are a window's partial edge hours.

η̂ gets a status (≥ 85 % optimal, ≥ 75 % degraded, else critical; above 100 % meter_error)
once the meter saw at least MIN_CHARGING_HOURS hours with charging; before that, and when the
two columns cannot be told apart, insufficient_data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np

from fleetctl.energy import DB
from fleetctl.hourly import Hourly, fleet_hourly
from fleetctl.status import DEGRADED_MIN_PERCENT, OPTIMAL_MIN_PERCENT
from fleetctl.window import Window, iso

MIN_CHARGING_HOURS = 2

MESSAGES = {
    "optimal": "Converter efficiency normal",
    "degraded": "Converter losing more than 15% of the energy: schedule a check",
    "critical": "Converter losing more than 25% of the energy: inspect now",
    "meter_error": "Fitted efficiency above 100%: meter or assignment is wrong",
    "insufficient_data": f"Fewer than {MIN_CHARGING_HOURS} hours of charging in the window",
}
_ORDER = {"critical": 0, "degraded": 1, "meter_error": 2, "optimal": 3, "insufficient_data": 4}

_SPANS = """
SELECT vehicle_id, meter_id, greatest(valid_from, $1) AS s, least(coalesce(valid_to, $2), $2) AS e
  FROM vehicle_meter_assignments
 WHERE tstzrange(valid_from, valid_to) && tstzrange($1, $2)
"""


def status_of(eta: float | None, charging_hours: int) -> str:
    """The status of a fitted conversion efficiency."""
    if eta is None or charging_hours < MIN_CHARGING_HOURS:
        return "insufficient_data"
    if eta > 1.0:
        return "meter_error"
    if eta * 100 >= OPTIMAL_MIN_PERCENT:
        return "optimal"
    if eta * 100 >= DEGRADED_MIN_PERCENT:
        return "degraded"
    return "critical"


def _ts(t: datetime) -> int:
    return int(t.timestamp())


class _Points:
    """Per (meter, hour): AC, meter readings, DC, and whether the hour is usable."""

    def __init__(self) -> None:
        self.ac: dict[tuple[str, int], int] = {}
        self.n: dict[tuple[str, int], int] = {}
        self.dc: dict[tuple[str, int], int] = defaultdict(int)
        self.excluded: set[tuple[str, int]] = set()
        self.vehicles: dict[str, set[str]] = defaultdict(set)


def _points(meters: Hourly, vehicles: Hourly, spans: list[Any]) -> _Points:
    pts = _Points()
    for dev, h, k, n in zip(meters.devices, meters.hour_s.tolist(), meters.kwh_u.tolist(),
                            meters.n.tolist(), strict=True):  # fmt: skip
        key = (dev, h)
        pts.ac[key] = pts.ac.get(key, 0) + k
        pts.n[key] = pts.n.get(key, 0) + n
    by_vehicle: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for r in spans:
        by_vehicle[r["vehicle_id"]].append((r["meter_id"], _ts(r["s"]), _ts(r["e"])))
        pts.vehicles[r["meter_id"]].add(r["vehicle_id"])
    for dev, h, k in zip(vehicles.devices, vehicles.hour_s.tolist(), vehicles.kwh_u.tolist(),
                         strict=True):  # fmt: skip
        for meter, s, e in by_vehicle.get(dev, ()):
            if s <= h and h + 3600 <= e:
                pts.dc[(meter, h)] += k
            elif s < h + 3600 and h < e:
                pts.excluded.add((meter, h))  # the assignment changes inside this hour
    return pts


def _fit(x: np.ndarray, t: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """(a, b, rms residual) of y = a x + b t by least squares, or None if x and t cannot be
    told apart."""
    sxx, sxt, stt = float(x @ x), float(x @ t), float(t @ t)
    sxy, sty = float(x @ y), float(t @ y)
    det = sxx * stt - sxt * sxt
    if det <= 1e-12 * max(sxx * stt, 1e-30):
        return None
    a = (sxy * stt - sty * sxt) / det
    b = (sty * sxx - sxy * sxt) / det
    resid = y - a * x - b * t
    dof = max(len(y) - 2, 1)
    return a, b, math.sqrt(float(resid @ resid) / dof)


def diagnose(meters: Hourly, vehicles: Hourly, spans: list[Any], interval_s: int
             ) -> list[dict[str, Any]]:  # fmt: skip
    """One row per meter that reported in the window (pure: testable without a database)."""
    pts = _points(meters, vehicles, spans)
    per_meter: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for key, ac in pts.ac.items():
        if key in pts.excluded:
            continue
        dc = pts.dc.get(key, 0)
        hours = pts.n[key] * interval_s / 3600
        per_meter[key[0]].append((dc / 1e6, hours, ac / 1e6))
    rows: list[dict[str, Any]] = []
    for meter in sorted(per_meter):
        x, t, y = (np.asarray(c) for c in zip(*per_meter[meter], strict=True))
        charging = int((x > 0).sum())
        fit = _fit(x, t, y) if charging else None
        eta: float | None = None
        standby: float | None = None
        rmse: float | None = None
        if fit is not None and fit[0] > 0:
            eta, standby, rmse = 1 / fit[0], fit[1] * 1000, fit[2] * 1000
        status = status_of(eta, charging)
        ac_kwh, dc_kwh = float(y.sum()), float(x.sum())
        rows.append({
            "meterId": meter,
            "vehicles": sorted(pts.vehicles.get(meter, ())),
            "status": status,
            "message": MESSAGES[status],
            "conversionEfficiency": None if eta is None else round(eta, 4),
            "standbyW": None if standby is None else round(standby, 1),
            "fit": {"hours": len(x), "chargingHours": charging,
                    "rmseWh": None if rmse is None else round(rmse, 2)},
            "billed": {"acKwh": round(ac_kwh, 6), "dcKwh": round(dc_kwh, 6),
                       "efficiency": round(dc_kwh / ac_kwh, 6) if ac_kwh > 0 else None},
        })  # fmt: skip
    rows.sort(key=lambda r: (_ORDER[r["status"]], r["conversionEfficiency"] or 9.0, r["meterId"]))
    return rows


async def chargers(db: DB, window: Window, *, interval_s: int = 60) -> dict[str, Any]:
    """Every charger's fitted conversion efficiency and standby draw, worst first."""
    meters = await fleet_hourly(db, "meter", window.start, window.end)
    vehicles = await fleet_hourly(db, "vehicle", window.start, window.end)
    spans = await db.fetch(_SPANS, window.start, window.end)
    rows = diagnose(meters, vehicles, list(spans), interval_s)
    counts = dict.fromkeys(_ORDER, 0)
    for r in rows:
        counts[r["status"]] += 1
    return {
        "window": {"start": iso(window.start), "end": iso(window.end)},
        "model": "AC_h = DC_h / eta + P_standby * dt_h, least squares over whole UTC hours",
        "count": len(rows),
        "statusCounts": counts,
        "chargers": rows,
    }
