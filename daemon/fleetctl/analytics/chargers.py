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
out (their DC cannot be attributed), and so are a window's partial edge hours and the hours
that lost a reading (fewer than 3600 / interval_s) of a vehicle, or of a meter while it
charged: their DC and AC no longer cover the same minutes (a vehicle with no reading at all
in an hour is taken as asleep: no DC).

The fit is bounded to what a charger can be (η in (0, 1], standby ≥ 0; `boundActive` names
the parameter pinned at its bound) and carries 95 % intervals from its residuals
(fleetctl.analytics.charger_fit). A status (≥ 85 % optimal, ≥ 75 % degraded, else critical)
is given only when it is sure: η's interval lies inside one band, or is narrower than
`max_interval` (then η̂ decides). Otherwise insufficient_data with its `reason`: fewer than
MIN_CHARGING_HOURS hours with charging, fewer than 3 usable hours (no residual left),
charging and standby collinear (the same load every hour), or an interval too wide.
meter_error when the data cannot come from a charger: η surely above 1 or standby surely
negative (a wrong meter or assignment).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetctl.analytics.charger_fit import (
    BOUND_NAMES,
    CONFIDENCE,
    MAX_INTERVAL,
    Fits,
    fit_many,
)
from fleetctl.analytics.energy import DB
from fleetctl.analytics.hourly import Hourly, fleet_hourly, unix_s
from fleetctl.analytics.status import DEGRADED_MIN_PERCENT, OPTIMAL_MIN_PERCENT
from fleetctl.analytics.units import OVERLAPPING
from fleetctl.analytics.window import Window, iso
from fleetctl.errors import InvalidRequestError

MIN_CHARGING_HOURS = 2

MESSAGES = {
    "optimal": "Converter efficiency normal",
    "degraded": "Converter losing more than 15% of the energy: schedule a check",
    "critical": "Converter losing more than 25% of the energy: inspect now",
    "meter_error": "Not what a charger can do (efficiency above 100% or negative standby): "
    "meter or assignment is wrong",
}
REASONS = {
    "few_charging_hours": f"Fewer than {MIN_CHARGING_HOURS} hours of charging in the window",
    "few_hours": "Fewer than 3 usable hours: no residual left to judge the fit",
    "collinear": "Charging and standby cannot be told apart (the same load every hour): "
    "use a longer window",
    "interval_too_wide": "Efficiency too uncertain to judge (its 95% interval spans two "
    "bands): use a longer window",
    "efficiency_above_1": "Fitted efficiency surely above 100%",
    "negative_standby": "Fitted standby draw surely negative",
}
_ORDER = {"critical": 0, "degraded": 1, "meter_error": 2, "optimal": 3, "insufficient_data": 4}


def status_of(eta: float | None, charging_hours: int) -> str:
    """The band of an efficiency (a point figure with no interval: the bands alone)."""
    if eta is None or charging_hours < MIN_CHARGING_HOURS:
        return "insufficient_data"
    if eta > 1.0:
        return "meter_error"
    return _band(eta)


def _band(eta: float) -> str:
    if eta * 100 >= OPTIMAL_MIN_PERCENT:
        return "optimal"
    if eta * 100 >= DEGRADED_MIN_PERCENT:
        return "degraded"
    return "critical"


def judge(f: Fits, i: int, max_interval: float = MAX_INTERVAL) -> tuple[str, str | None]:
    """(status, reason) of meter i's fit: a band only when its interval is sure of it."""
    if f.charging[i] < MIN_CHARGING_HOURS:
        return "insufficient_data", "few_charging_hours"
    if not f.solvable[i]:
        return "insufficient_data", "collinear"
    if f.points[i] < 3:
        return "insufficient_data", "few_hours"
    if f.above_one[i]:
        return "meter_error", "efficiency_above_1"
    if f.below_zero[i]:
        return "meter_error", "negative_standby"
    lo, hi = float(f.eta_lo[i]), float(f.eta_hi[i])
    if _band(lo) == _band(hi) or hi - lo <= max_interval:
        return _band(1 / float(f.beta[i])), None
    return "insufficient_data", "collinear" if f.collinear[i] else "interval_too_wide"


def _index(names: list[str], index: dict[str, int]) -> npt.NDArray[np.int64]:
    """Position of each name in `index`, adding the ones it lacks."""
    get = index.setdefault
    return np.fromiter((get(n, len(index)) for n in names), dtype=np.int64, count=len(names))


def _floor(v: float, digits: int) -> float:
    return float(np.floor(v * 10**digits) / 10**digits)


def _ceil(v: float, digits: int) -> float:
    return float(np.ceil(v * 10**digits) / 10**digits)


def _verdict(f: Fits, i: int, ac_kwh: float, dc_kwh: float, max_interval: float) -> dict[str, Any]:
    """The figures of meter i's fit (rounded outwards: an interval never shrinks)."""
    status, reason = judge(f, i, max_interval)
    fitted = bool(f.solvable[i]) and f.charging[i] > 0
    eta = 1 / float(f.beta[i]) if fitted else None
    interval = None
    if fitted and f.eta_lo[i] == f.eta_lo[i]:  # not NaN
        interval = {
            "conversionEfficiency": [_floor(f.eta_lo[i], 4), _ceil(f.eta_hi[i], 4)],
            "standbyW": [_floor(f.standby_lo[i] * 1000, 1), _ceil(f.standby_hi[i] * 1000, 1)],
        }
    return {
        "status": status,
        "reason": reason,
        "message": MESSAGES[status] if reason is None else REASONS[reason],
        "conversionEfficiency": None if eta is None else round(eta, 4),
        "standbyW": round(float(f.standby[i]) * 1000, 1) if fitted else None,
        "boundActive": BOUND_NAMES[int(f.bound[i])] if fitted else None,
        "ci95": interval,
        "fit": {
            "hours": int(f.points[i]),
            "chargingHours": int(f.charging[i]),
            "rmseWh": round(float(f.rmse[i]) * 1000, 2) if fitted else None,
        },
        "billed": {
            "acKwh": round(ac_kwh, 6),
            "dcKwh": round(dc_kwh, 6),
            "efficiency": round(dc_kwh / ac_kwh, 6) if ac_kwh > 0 else None,
        },
    }


def fit_points(
    points: list[tuple[float, float, float]], *, max_interval: float = MAX_INTERVAL
) -> dict[str, Any]:
    """The charger figures of one metering unit from its (DC kWh, hours reported, AC kWh)
    points, one per usable whole hour (fleetctl.analytics.vehicle: a vehicle's own report)."""
    cols = [np.asarray([c], dtype=np.float64) for c in zip(*points, strict=True)] or [
        np.zeros((1, 0)) for _ in range(3)
    ]
    x, t, y = cols
    f = fit_many(x, t, y, np.ones(x.shape, dtype=bool))
    return _verdict(f, 0, float(y.sum()), float(x.sum()), max_interval)


def diagnose(
    meters: Hourly,
    vehicles: Hourly,
    spans: list[Any],
    interval_s: int,
    *,
    max_interval: float = MAX_INTERVAL,
) -> list[dict[str, Any]]:
    """One row per meter that reported in the window (pure: testable without a database).
    Vectorised over (meter, hour) points: a day of 10,000 meters is 240,000 of them."""
    if not meters.devices:
        return []
    h0 = int(meters.hour_s.min())
    width = int((meters.hour_s.max() - h0) // 3600) + 1
    m_index: dict[str, int] = {}
    m_row = _index(meters.devices, m_index)
    m_key = m_row * width + (meters.hour_s - h0) // 3600
    size = len(m_index) * width
    ac = np.zeros(size)
    np.add.at(ac, m_key, meters.kwh_u / 1e6)
    n = np.zeros(size)
    np.add.at(n, m_key, meters.n)
    dc = np.zeros(size)
    excluded = np.zeros(size, dtype=bool)
    nominal = 3600 // interval_s
    fed: dict[str, set[str]] = defaultdict(set)
    by_vehicle: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for r in spans:
        fed[r["meter_id"]].add(r["vehicle_id"])
        if r["meter_id"] in m_index:
            by_vehicle[r["vehicle_id"]].append(
                (m_index[r["meter_id"]], unix_s(r["s"]), unix_s(r["e"]))
            )
    v_hour = vehicles.hour_s
    v_kwh = vehicles.kwh_u / 1e6
    # A vehicle's rows against each of its spans in turn (nearly all have one).
    v_spans = [by_vehicle.get(d, []) for d in vehicles.devices]
    for k in range(max((len(x) for x in v_spans), default=0)):
        has = np.fromiter((len(x) > k for x in v_spans), dtype=bool, count=len(v_spans))
        meter = np.fromiter((x[k][0] if len(x) > k else 0 for x in v_spans), np.int64)
        s = np.fromiter((x[k][1] if len(x) > k else 0 for x in v_spans), np.int64)
        e = np.fromiter((x[k][2] if len(x) > k else 0 for x in v_spans), np.int64)
        inside = has & (s <= v_hour) & (v_hour + 3600 <= e) & (v_hour >= h0)
        overlap = has & ~inside & (s < v_hour + 3600) & (v_hour < e) & (v_hour >= h0)
        key = meter * width + (v_hour - h0) // 3600
        ok = inside & (key < size)
        np.add.at(dc, key[ok], v_kwh[ok])
        # The assignment changes inside these hours: their DC cannot be attributed. And a
        # vehicle's missing reading takes its DC from the hour but not its meter's AC.
        excluded[key[overlap & (key < size)]] = True
        excluded[key[ok & (vehicles.n < nominal)]] = True
    # A meter's missing reading is standby time lost (Δt counts the readings), but while
    # charging it is also DC / η of AC the vehicle's readings still hold: such hours go too.
    use = (n > 0) & ~excluded & ~((n < nominal) & (dc > 0))
    x, y = np.where(use, dc, 0.0), np.where(use, ac, 0.0)
    t = np.where(use, n * interval_s / 3600, 0.0)
    shape = (len(m_index), width)
    x2, y2, t2, use2 = x.reshape(shape), y.reshape(shape), t.reshape(shape), use.reshape(shape)
    f = fit_many(x2, t2, y2, use2)
    ac_sum, dc_sum = y2.sum(1), x2.sum(1)
    rows: list[dict[str, Any]] = []
    for i, meter_id in enumerate(m_index):
        if not f.points[i]:
            continue
        rows.append(
            {
                "meterId": meter_id,
                "vehicles": sorted(fed.get(meter_id, ())),
                **_verdict(f, i, float(ac_sum[i]), float(dc_sum[i]), max_interval),
            }
        )
    rows.sort(key=lambda r: (_ORDER[r["status"]], r["conversionEfficiency"] or 9.0, r["meterId"]))
    return rows


async def chargers(
    db: DB, window: Window, *, interval_s: int = 60, max_interval: float = MAX_INTERVAL
) -> dict[str, Any]:
    """Every charger's fitted conversion efficiency and standby draw, worst first.
    `max_interval` in [0, 1] (InvalidRequestError otherwise)."""
    if not 0 <= max_interval <= 1:
        raise InvalidRequestError(f"max interval must be between 0 and 1, got {max_interval}")
    meters = await fleet_hourly(db, "meter", window.start, window.end)
    vehicles = await fleet_hourly(db, "vehicle", window.start, window.end)
    spans = await db.fetch(OVERLAPPING, window.start, window.end)
    rows = diagnose(meters, vehicles, list(spans), interval_s, max_interval=max_interval)
    counts = dict.fromkeys(_ORDER, 0)
    for r in rows:
        counts[r["status"]] += 1
    return {
        "window": {"start": iso(window.start), "end": iso(window.end)},
        "model": "AC_h = DC_h / eta + P_standby * dt_h, least squares over whole UTC hours,"
        " bounded to 0 < eta <= 1 and P_standby >= 0",
        "interval": {
            "level": CONFIDENCE,
            "method": "t on the unconstrained fit's residuals, eta from 1/eta's interval,"
            " cut to the physical range",
            "maxWidthForStatus": max_interval,
        },
        "count": len(rows),
        "statusCounts": counts,
        "chargers": rows,
    }
