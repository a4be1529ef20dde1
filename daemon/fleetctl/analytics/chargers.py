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

from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetctl.analytics.energy import DB
from fleetctl.analytics.hourly import Hourly, fleet_hourly, unix_s
from fleetctl.analytics.status import DEGRADED_MIN_PERCENT, OPTIMAL_MIN_PERCENT
from fleetctl.analytics.units import OVERLAPPING
from fleetctl.analytics.window import Window, iso

MIN_CHARGING_HOURS = 2

MESSAGES = {
    "optimal": "Converter efficiency normal",
    "degraded": "Converter losing more than 15% of the energy: schedule a check",
    "critical": "Converter losing more than 25% of the energy: inspect now",
    "meter_error": "Fitted efficiency above 100%: meter or assignment is wrong",
    "insufficient_data": f"Fewer than {MIN_CHARGING_HOURS} hours of charging in the window",
}
_ORDER = {"critical": 0, "degraded": 1, "meter_error": 2, "optimal": 3, "insufficient_data": 4}


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


def _index(names: list[str], index: dict[str, int]) -> npt.NDArray[np.int64]:
    """Position of each name in `index`, adding the ones it lacks."""
    get = index.setdefault
    return np.fromiter((get(n, len(index)) for n in names), dtype=np.int64, count=len(names))


def _verdict(
    fit: tuple[float, float, float] | None, points: int, charging: int, ac_kwh: float, dc_kwh: float
) -> dict[str, Any]:
    """The figures of one fitted charger (fit = (1/η, standby kW, rms residual kWh))."""
    eta = 1 / fit[0] if fit is not None and fit[0] > 0 else None
    status = status_of(eta, charging)
    good = fit is not None and eta is not None
    return {
        "status": status,
        "message": MESSAGES[status],
        "conversionEfficiency": None if eta is None else round(eta, 4),
        "standbyW": round(fit[1] * 1000, 1) if good and fit else None,
        "fit": {
            "hours": points,
            "chargingHours": charging,
            "rmseWh": round(fit[2] * 1000, 2) if good and fit else None,
        },
        "billed": {
            "acKwh": round(ac_kwh, 6),
            "dcKwh": round(dc_kwh, 6),
            "efficiency": round(dc_kwh / ac_kwh, 6) if ac_kwh > 0 else None,
        },
    }


def fit_points(points: list[tuple[float, float, float]]) -> dict[str, Any]:
    """The charger figures of one metering unit from its (DC kWh, hours reported, AC kWh)
    points, one per usable whole hour (fleetctl.analytics.vehicle: a vehicle's own report)."""
    if not points:
        return _verdict(None, 0, 0, 0.0, 0.0)
    x, t, y = (np.asarray(c, dtype=np.float64) for c in zip(*points, strict=True))
    charging = int((x > 0).sum())
    fit = _fit(x, t, y) if charging else None
    return _verdict(fit, len(points), charging, float(y.sum()), float(x.sum()))


def _fit(
    x: npt.NDArray[np.float64], t: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> tuple[float, float, float] | None:
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
    return a, b, float(np.sqrt(float(resid @ resid) / max(len(y) - 2, 1)))


def diagnose(
    meters: Hourly, vehicles: Hourly, spans: list[Any], interval_s: int
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
        # The assignment changes inside these hours: their DC cannot be attributed.
        excluded[key[overlap & (key < size)]] = True
    use = (n > 0) & ~excluded
    x, y = np.where(use, dc, 0.0), np.where(use, ac, 0.0)
    t = np.where(use, n * interval_s / 3600, 0.0)
    shape = (len(m_index), width)
    x2, y2, t2, use2 = x.reshape(shape), y.reshape(shape), t.reshape(shape), use.reshape(shape)
    sxx, sxt, stt = (x2 * x2).sum(1), (x2 * t2).sum(1), (t2 * t2).sum(1)
    sxy, sty = (x2 * y2).sum(1), (t2 * y2).sum(1)
    det = sxx * stt - sxt * sxt
    solvable = det > 1e-12 * np.maximum(sxx * stt, 1e-30)
    safe = np.where(solvable, det, 1.0)
    a = (sxy * stt - sty * sxt) / safe
    b = (sty * sxx - sxy * sxt) / safe
    resid = np.where(use2, y2 - a[:, None] * x2 - b[:, None] * t2, 0.0)
    points = use2.sum(1)
    rmse = np.sqrt((resid * resid).sum(1) / np.maximum(points - 2, 1))
    charging = (use2 & (x2 > 0)).sum(1)
    fitted = solvable & (charging > 0) & (a > 0)
    names = list(m_index)
    rows: list[dict[str, Any]] = []
    for i, meter_id in enumerate(names):
        if not points[i]:
            continue
        fit = (float(a[i]), float(b[i]), float(rmse[i])) if fitted[i] else None
        rows.append(
            {
                "meterId": meter_id,
                "vehicles": sorted(fed.get(meter_id, ())),
                **_verdict(
                    fit, int(points[i]), int(charging[i]), float(y2[i].sum()), float(x2[i].sum())
                ),
            }
        )
    rows.sort(key=lambda r: (_ORDER[r["status"]], r["conversionEfficiency"] or 9.0, r["meterId"]))
    return rows


async def chargers(db: DB, window: Window, *, interval_s: int = 60) -> dict[str, Any]:
    """Every charger's fitted conversion efficiency and standby draw, worst first."""
    meters = await fleet_hourly(db, "meter", window.start, window.end)
    vehicles = await fleet_hourly(db, "vehicle", window.start, window.end)
    spans = await db.fetch(OVERLAPPING, window.start, window.end)
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
