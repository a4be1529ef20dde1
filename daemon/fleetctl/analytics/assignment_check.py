"""Assignment check: does each vehicle's hourly DC line up with the hourly AC of the meter it is
assigned to, and which meter's AC fits it best?

A wrong vehicle -> meter mapping is invisible in the efficiency reports: the vehicle's real
meter looks idle with a large standby, and its registered meter looks fine or a little odd.
What gives it away is time: a vehicle charges in hours when its meter drew nothing beyond its
standby (physically impossible: AC >= DC / eta >= DC), and the real meter drew power in hours
when no vehicle assigned to it charged.

For every vehicle, over the window's whole UTC hours (hourly rollups and the cold tier, as the
charger diagnosis reads them, fleetctl.analytics.hourly):

1. **Signatures.** A vehicle's charging hours (DC >= CHARGING_KWH) and a meter's drawing hours
   (AC beyond its standby by AC_EXCESS_KWH) are bit rows; the overlap of every vehicle with every
   meter is one matrix product (float32, in chunks of vehicles), and the CANDIDATES meters of
   highest Jaccard index are kept: 10,000 x 10,000 pairs cost a second, not a fit each.
2. **Fit.** On the assigned meter (hour by hour, so a vehicle reassigned mid-window is judged
   against the meter of each hour) and on each candidate: `AC_h - P_standby * dt_h = DC_h / eta`
   by least squares, with the meter's standby estimated from its quietest hour (capped at
   MAX_STANDBY_KW), where DC_h is the vehicle's own DC, or its DC plus that of the other vehicles
   assigned to the meter in that hour (a shared meter), whichever fits better. The fit's
   relative error is ||residual|| / ||DC part||: ~0 for the meter a vehicle charges at, order 1
   for any other; a fitted eta outside ETA_RANGE is no fit.
3. **Verdict.** `suspect` when the vehicle charged in hours its meter drew nothing (at least
   MIN_HOURS_WITHOUT_AC of them and MISSING_SHARE of its charging hours), or when the assigned
   meter's fit is poor (> POOR_FIT) while another meter fits well (<= GOOD_FIT); the meter that
   fits best is the suggestion, with the evidence (counts of mismatched hours, both fits).
   `insufficient_data` below MIN_CHARGING_HOURS hours of charging against a reporting meter;
   `unassigned` without an assignment in the window (the best meter is still named).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetctl.analytics.energy import DB
from fleetctl.analytics.hourly import Hourly, fleet_hourly, unix_s
from fleetctl.analytics.units import OVERLAPPING
from fleetctl.analytics.window import Window, iso

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

CHARGING_KWH = 0.25  # DC in an hour for the hour to count as charging (~2 min at 7 kW)
AC_EXCESS_KWH = 0.25  # AC beyond standby in an hour for the meter to count as drawing
MAX_STANDBY_KW = 0.15  # a meter's standby estimate is capped here (chargers draw 30-90 W)
NO_AC_RATIO = 0.5  # a charging hour "without AC" when its meter drew < half the vehicle's DC
NO_DC_RATIO = 0.3  # a drawing hour "without DC" when its vehicles took < 30 % of the excess
MIN_CHARGING_HOURS = 2
MIN_HOURS_WITHOUT_AC = 2
MISSING_SHARE = 0.15
GOOD_FIT = 0.05
POOR_FIT = 0.3
CANDIDATES = 16
FULL_HOUR = 0.9  # an hour is judged when both sides reported this share of it
ETA_RANGE = (0.3, 1.05)  # a fitted efficiency outside this is no fit
_CHUNK = 1024  # vehicles per matrix product / fit batch (bounded memory at 10,000 x 168 h)

MESSAGES = {
    "ok": "Charging hours line up with the assigned meter",
    "suspect": "The assigned meter does not see this vehicle's charging: check the assignment",
    "unassigned": "No assignment in the window",
    "insufficient_data": f"Fewer than {MIN_CHARGING_HOURS} hours of charging against a "
    "reporting meter",
}
STATUSES = ("suspect", "unassigned", "ok", "insufficient_data")


@dataclass
class Grid:
    """The window's whole hours as matrices: row = device, column = hour."""

    meters: list[str]
    vehicles: list[str]
    ac: F64  # (meters, hours) kWh
    meter_h: F64  # (meters, hours) hours reported (readings x interval)
    dc: F64  # (vehicles, hours) kWh
    vehicle_h: F64  # (vehicles, hours) hours reported (readings x interval)
    assigned: I64  # (vehicles, hours) meter row assigned for the whole hour, -1 none or partial
    latest: I64  # (vehicles,) meter row of the vehicle's last span in the window, -1 none


def candidates(
    charging: Bools, drawing: Bools, k: int = CANDIDATES
) -> tuple[I64, npt.NDArray[np.float32]]:
    """For each row of `charging` (vehicles x hours), the `k` rows of `drawing` (meters x hours)
    of highest Jaccard index |C & A| / |C | A|, best first, and those indices. One float32
    matrix product per chunk of vehicles gives every intersection."""
    nv, nm = charging.shape[0], drawing.shape[0]
    k = min(k, nm)
    out_i = np.zeros((nv, k), np.int64)
    out_j = np.zeros((nv, k), np.float32)
    if nv == 0 or k == 0:
        return out_i, out_j
    a = drawing.astype(np.float32)
    a_n = a.sum(1)
    for lo in range(0, nv, _CHUNK):
        c = charging[lo : lo + _CHUNK].astype(np.float32)
        inter = c @ a.T
        union = c.sum(1)[:, None] + a_n[None, :] - inter
        jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        top = (
            np.argpartition(-jac, k - 1, axis=1)[:, :k]
            if k < nm
            else np.tile(np.arange(nm), (len(c), 1))
        )
        vals = np.take_along_axis(jac, top, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        out_i[lo : lo + len(c)] = np.take_along_axis(top, order, 1)
        out_j[lo : lo + len(c)] = np.take_along_axis(vals, order, 1)
    return out_i, out_j


def fit_candidates(dc: F64, excess: F64, fed: F64, k: int = CANDIDATES) -> I64:
    """For each vehicle, the `k` meters whose excess AC (meters x hours, beyond standby) its DC
    (vehicles x hours) plus the DC of the meter's assigned vehicles (`fed`) fits best by least
    squares, every pair from two matrix products per chunk of vehicles (sums over hours only;
    which hours each side reported is left to the exact fit). What signatures miss on a shared
    meter, whose drawing hours are the union of its vehicles', this finds."""
    nv, nm = dc.shape[0], excess.shape[0]
    k = min(k, nm)
    out = np.zeros((nv, k), np.int64)
    if nv == 0 or k == 0:
        return out
    y, e = excess.astype(np.float32), fed.astype(np.float32)
    syy, see, sey = (y * y).sum(1), (e * e).sum(1), (e * y).sum(1)
    lo_eta, hi_eta = ETA_RANGE
    for lo in range(0, nv, _CHUNK):
        x = dc[lo : lo + _CHUNK].astype(np.float32)
        # x' = x + e: <x', y> and |x'|^2 per pair; the squared relative error of the fit is
        # |y|^2 |x'|^2 / <x', y>^2 - 1, and eta = |x'|^2 / <x', y> must be plausible.
        xy = x @ y.T
        xy += sey
        xx = x @ e.T
        xx *= 2
        xx += see
        xx += (x * x).sum(1)[:, None]
        ok = (xy > 0) & (xx >= lo_eta * xy) & (xx <= hi_eta * xy)
        ratio = np.divide(xx * syy, xy * xy, out=np.full(xy.shape, np.inf, np.float32), where=ok)
        top = (
            np.argpartition(ratio, k - 1, axis=1)[:, :k]
            if k < nm
            else np.tile(np.arange(nm), (len(x), 1))
        )
        out[lo : lo + len(x)] = top
    return out


@dataclass
class Figures:
    """Per (vehicle, meter choice): how the meter's AC lines up with the vehicle's DC."""

    hours: I64  # hours both reported
    charging: I64  # the vehicle's charging hours among them
    without_ac: I64  # charging hours in which the meter drew < NO_AC_RATIO of the DC
    without_dc: I64  # hours the meter drew beyond standby with too little DC of its vehicles
    eta: F64  # fitted efficiency (nan: no fit, or a <= 0)
    error: F64  # ||residual|| / ||DC part|| (inf: no fit)
    score: F64  # error where the fit is plausible (eta in ETA_RANGE), else inf
    shared: Bools  # the better fit counted the meter's other vehicles too


def _standby(grid: Grid) -> F64:
    """Each meter's standby estimate in kW: its lowest hourly draw, capped (a meter that drew
    for charging every hour would otherwise pass a charging hour for standby)."""
    rate = np.divide(
        grid.ac, grid.meter_h, out=np.full_like(grid.ac, np.inf), where=grid.meter_h > 0
    )
    low = rate.min(1, initial=np.inf)
    return np.minimum(np.where(np.isfinite(low), low, 0.0), MAX_STANDBY_KW)


def _assigned_dc(grid: Grid) -> F64:
    """(meters, hours): the DC of the vehicles assigned to each meter for the whole hour."""
    out = np.zeros_like(grid.ac)
    v, h = np.nonzero(grid.assigned >= 0)
    np.add.at(out, (grid.assigned[v, h], h), grid.dc[v, h])
    return out


def _fit(x: F64, excess: F64, use: Bools) -> tuple[F64, F64, Bools]:
    """Per row (last axis = hours): excess = a x by least squares over `use` (the meter's AC
    beyond its standby estimate against DC); (eta = 1/a, relative error, plausible). The
    standby is the meter's own estimate rather than a second unknown: with two, a wrong meter
    "fits" with kilowatts of standby, and a vehicle charging at a constant power every hour
    cannot be fitted at all. nan/inf where x is all zero; plausible when eta lies in
    ETA_RANGE (a poor fit keeps its figures, as evidence)."""
    x, y = np.where(use, x, 0.0), np.where(use, excess, 0.0)
    sxx, sxy = (x * x).sum(-1), (x * y).sum(-1)
    ok = (sxx > 0) & (sxy > 0)
    a = np.where(ok, sxy, 1.0) / np.where(ok, sxx, 1.0)
    resid = np.where(use, y - a[..., None] * x, 0.0)
    part = a * np.sqrt(sxx)
    err = np.sqrt((resid * resid).sum(-1)) / np.where(ok, part, 1.0)
    err = np.where(ok, err, np.inf)
    eta = np.where(ok, 1.0 / a, np.nan)
    plausible = ok & (eta >= ETA_RANGE[0]) & (eta <= ETA_RANGE[1])
    return eta, err, plausible


def figures(grid: Grid, rows: I64, choice: I64, standby: F64, fed: F64) -> Figures:
    """Figures of vehicles `rows` against meter rows `choice` (len(rows), c, hours): -1 where
    there is no meter for the hour. `fed` is _assigned_dc(grid)."""
    valid = choice >= 0
    m = np.where(valid, choice, 0)
    h = np.arange(grid.ac.shape[1])
    meter_ac, meter_h = grid.ac, grid.meter_h
    if not len(meter_ac):
        # No meter reported in the window (every choice is -1): index one meter that reported
        # no hour, so every hour is unusable instead of out of bounds.
        meter_ac = meter_h = fed = np.zeros((1, len(h)))
        standby = np.zeros(1)
    ac, t, others = meter_ac[m, h], meter_h[m, h], fed[m, h]
    dc = grid.dc[rows][:, None, :]
    # Only hours both sides reported (nearly) whole: in an hour a device slept or lost half
    # of, its energy is not the hour's, and a short DC against a whole AC is no evidence.
    use = valid & (t >= FULL_HOUR) & (grid.vehicle_h[rows][:, None, :] >= FULL_HOUR)
    charging = use & (dc >= CHARGING_KWH)
    # The other vehicles assigned to the meter in that hour: its fed DC without this vehicle's.
    own = grid.assigned[rows][:, None, :] == choice
    with_others = dc + others - np.where(own, dc, 0.0)
    excess = ac - standby[m] * t
    alone = _fit(np.broadcast_to(dc, ac.shape), excess, use)
    shared = _fit(with_others, excess, use)
    alone_score = np.where(alone[2], alone[1], np.inf)
    shared_score = np.where(shared[2], shared[1], np.inf)
    pick = (shared_score < alone_score) | (np.isinf(alone_score) & (shared[1] < alone[1]))
    eta, err = (np.where(pick, s, a) for s, a in zip(shared[:2], alone[:2], strict=True))
    x = np.where(pick[..., None], with_others, dc)
    drawing = use & (excess >= AC_EXCESS_KWH)
    return Figures(
        hours=use.sum(-1),
        charging=charging.sum(-1),
        without_ac=(charging & (ac < NO_AC_RATIO * dc)).sum(-1),
        without_dc=(drawing & (x < NO_DC_RATIO * excess)).sum(-1),
        eta=eta,
        error=err,
        score=np.minimum(alone_score, shared_score),
        shared=pick & (with_others != dc).any(-1),
    )


def _side(f: Figures, i: int, j: int, meter: str | None, standby_kw: float) -> dict[str, Any]:
    """One (vehicle, meter) pair's evidence as JSON (standby: the meter's estimate)."""
    fitted = bool(np.isfinite(f.error[i, j]))
    eta = float(f.eta[i, j])
    return {
        "meterId": meter,
        "hours": int(f.hours[i, j]),
        "chargingHours": int(f.charging[i, j]),
        "chargingHoursWithoutAc": int(f.without_ac[i, j]),
        "acHoursWithoutDc": int(f.without_dc[i, j]),
        "fit": {
            "conversionEfficiency": round(eta, 4) if fitted and np.isfinite(eta) else None,
            "standbyW": None if meter is None else round(standby_kw * 1000, 1),
            "relativeError": round(float(f.error[i, j]), 4) if fitted else None,
            "plausible": bool(np.isfinite(f.score[i, j])),
            "withOtherVehicles": bool(f.shared[i, j]),
        },
    }


def _status(reg: Figures, best: Figures, i: int, assigned: bool) -> str:
    if not assigned:
        return "unassigned"
    charging, missing = int(reg.charging[i, 0]), int(reg.without_ac[i, 0])
    if charging < MIN_CHARGING_HOURS:
        return "insufficient_data"
    if missing >= MIN_HOURS_WITHOUT_AC and missing >= MISSING_SHARE * charging:
        return "suspect"
    if reg.score[i, 0] > POOR_FIT and best.score[i, 0] <= GOOD_FIT and not best.without_ac[i, 0]:
        return "suspect"
    return "ok"


def _row(
    grid: Grid,
    v: int,
    reg: tuple[Figures, int],
    best: tuple[Figures, int, int],
    *,
    standby: F64,
    charging_hours: int,
) -> dict[str, Any]:
    """Vehicle v's verdict: its assigned meter's figures (reg[0] at row reg[1]) and the best
    candidate's (best[0] at row best[1], meter row best[2], -1 when no candidate fits)."""
    (rf, i), (bf, j, m) = reg, best
    latest = int(grid.latest[v])
    meter = grid.meters[latest] if latest >= 0 else None
    status = _status(rf, bf, i, latest >= 0)
    best_meter = grid.meters[m] if m >= 0 else None
    fits = best_meter is not None and bool(bf.score[j, 0] <= GOOD_FIT)
    wrong = status in ("suspect", "unassigned") and best_meter != meter
    return {
        "vehicleId": grid.vehicles[v],
        "status": status,
        "message": MESSAGES[status],
        "meterId": meter,
        "suggestedMeterId": best_meter if fits and wrong else None,
        "chargingHours": charging_hours,
        "assigned": _side(rf, i, 0, meter, float(standby[latest]) if latest >= 0 else 0.0),
        "best": _side(bf, j, 0, best_meter, float(standby[m])) if m >= 0 else None,
    }


def judge(grid: Grid, *, k: int = CANDIDATES) -> list[dict[str, Any]]:
    """One row per vehicle (pure: testable without a database), suspects first."""
    nv, width = grid.dc.shape
    if nv == 0:
        return []
    standby = _standby(grid)
    fed = _assigned_dc(grid)
    charging = (grid.dc >= CHARGING_KWH) & (grid.vehicle_h > 0)
    drawing = (grid.ac - standby[:, None] * grid.meter_h >= AC_EXCESS_KWH) & (grid.meter_h > 0)
    by_hours, _ = candidates(charging, drawing, k // 2)
    excess = np.where(grid.meter_h > 0, grid.ac - standby[:, None] * grid.meter_h, 0.0)
    by_fit = fit_candidates(np.where(grid.vehicle_h > 0, grid.dc, 0.0), excess, fed, k - k // 2)
    cand = np.concatenate([by_hours, by_fit], axis=1)
    jac = _jaccard(charging, drawing, cand)
    if not cand.shape[1]:
        cand = np.full((nv, 1), -1, np.int64)  # no meter reported: one candidate, "none"
    rows: list[dict[str, Any]] = []
    for lo in range(0, nv, _CHUNK):
        idx = np.arange(lo, min(nv, lo + _CHUNK))
        reg = figures(grid, idx, grid.assigned[idx][:, None, :], standby, fed)
        cf = figures(grid, idx, np.repeat(cand[idx][:, :, None], width, 2), standby, fed)
        # Best candidate: the lowest fit error; ties by candidate order (signatures first).
        best_j = np.argmin(cf.score, axis=1)
        best = Figures(
            **{k_: np.take_along_axis(v, best_j[:, None], 1) for k_, v in vars(cf).items()}
        )
        for n, v in enumerate(idx.tolist()):
            m = int(cand[v, best_j[n]]) if np.isfinite(best.score[n, 0]) else -1
            row = _row(
                grid,
                v,
                (reg, n),
                (best, n, m),
                standby=standby,
                charging_hours=int(charging[v].sum()),
            )
            if row["best"] is not None:
                row["best"]["jaccard"] = round(float(jac[v, best_j[n]]), 4)
            rows.append(row)
    order = {s: i for i, s in enumerate(STATUSES)}
    rows.sort(key=lambda r: (order[r["status"]], r["vehicleId"]))
    return rows


def _jaccard(charging: Bools, drawing: Bools, cand: I64) -> F64:
    """The Jaccard index of each vehicle's charging hours with each of its candidates'."""
    c = charging[:, None, :]
    a = drawing[cand]
    inter = (c & a).sum(-1)
    union = (c | a).sum(-1)
    out: F64 = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    return out


def build_grid(meters: Hourly, vehicles: Hourly, spans: list[Any], interval_s: int) -> Grid:
    """The matrices of judge() from the hourly energies and the assignment spans."""
    hours = np.concatenate([meters.hour_s, vehicles.hour_s])
    if len(hours):
        h0, width = int(hours.min()), int((hours.max() - hours.min()) // 3600) + 1
    else:
        h0, width = 0, 0
    m_index: dict[str, int] = {}
    v_index: dict[str, int] = {}
    m_rows = _rows(meters.devices, m_index)
    v_rows = _rows(vehicles.devices, v_index)
    for r in spans:
        m_index.setdefault(r["meter_id"], len(m_index))
        v_index.setdefault(r["vehicle_id"], len(v_index))
    nm, nv = len(m_index), len(v_index)
    ac, meter_h = np.zeros((nm, width)), np.zeros((nm, width))
    dc, vehicle_h = np.zeros((nv, width)), np.zeros((nv, width))
    if width:
        mh = (meters.hour_s - h0) // 3600
        np.add.at(ac, (m_rows, mh), meters.kwh_u / 1e6)
        np.add.at(meter_h, (m_rows, mh), meters.n * interval_s / 3600)
        vh = (vehicles.hour_s - h0) // 3600
        np.add.at(dc, (v_rows, vh), vehicles.kwh_u / 1e6)
        np.add.at(vehicle_h, (v_rows, vh), vehicles.n * interval_s / 3600)
    assigned = np.full((nv, width), -1, np.int64)
    latest = np.full(nv, -1, np.int64)
    last_end: dict[int, tuple[int, int]] = {}
    starts = h0 + 3600 * np.arange(width)
    for r in spans:
        v, m = v_index[r["vehicle_id"]], m_index[r["meter_id"]]
        s, e = unix_s(r["s"]), unix_s(r["e"])
        # Hours the span covers whole; an hour it only touches keeps -1 (its DC is not the
        # meter's alone: the assignment changed inside it).
        whole = (starts >= s) & (starts + 3600 <= e)
        assigned[v, whole] = m
        if (e, s) > last_end.get(v, (-(2**62), 0)):
            last_end[v] = (e, s)
            latest[v] = m
    return Grid(list(m_index), list(v_index), ac, meter_h, dc, vehicle_h, assigned, latest)


def _rows(names: list[str], index: dict[str, int]) -> I64:
    get = index.setdefault
    return np.fromiter((get(n, len(index)) for n in names), dtype=np.int64, count=len(names))


async def assignment_check(
    db: DB, window: Window, *, interval_s: int = 60, every: bool = False
) -> dict[str, Any]:
    """Every vehicle's assignment against the meters' hourly AC; `vehicles` lists the suspect
    and unassigned ones (every vehicle with `every`), suspects first."""
    meters = await fleet_hourly(db, "meter", window.start, window.end)
    vehicles = await fleet_hourly(db, "vehicle", window.start, window.end)
    spans = await db.fetch(OVERLAPPING, window.start, window.end)
    rows = judge(build_grid(meters, vehicles, list(spans), interval_s))
    counts = dict.fromkeys(STATUSES, 0)
    for r in rows:
        counts[r["status"]] += 1
    listed = rows if every else [r for r in rows if r["status"] in ("suspect", "unassigned")]
    return {
        "window": {"start": iso(window.start), "end": iso(window.end)},
        "model": "charging hours (DC) against drawing hours (AC beyond standby), then "
        "AC_h - P_standby * dt_h = DC_h / eta on the assigned meter and the best candidates",
        "count": len(rows),
        "statusCounts": counts,
        "vehicles": listed,
    }
