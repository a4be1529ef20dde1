"""The charger model's fit, for many meters at once: AC = β·DC + P·Δt with β = 1/η ≥ 1
(η in (0, 1]) and P ≥ 0, by bounded least squares, with 95 % intervals from the residuals.

Bounded fit: two parameters with lower bounds only, so the closed form is exact. When the
unconstrained solution is feasible it is the answer; otherwise the minimum of the (convex)
squared error lies on the boundary, on the edge β = 1 or the edge P = 0, and the minimum on
each edge is that edge's one-parameter least squares clamped to its bound: the better of the
two is the bounded solution (`bound` says which parameter it pins).

Intervals: standard errors of the unconstrained fit, (XᵀX)⁻¹ σ̂² with σ̂² = RSS / (n − 2), a
Student t quantile for n − 2 degrees of freedom (a table, no scipy); β's interval is turned
into η's by η = 1/β (monotone, so a 95 % interval of β is one of η: no delta method). Each
interval is then intersected with the physical range (η ≤ 1, P ≥ 0) and widened to hold the
bounded estimate: since the truth lies in that range, the intersection covers it whenever
the unconstrained interval does. An unconstrained interval entirely outside the range
(η surely above 1, standby surely negative) means the data do not fit a charger at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetctl.params import CHARGER_MAX_INTERVAL

Arr = npt.NDArray[np.float64]

CONFIDENCE = 0.95
MAX_INTERVAL = CHARGER_MAX_INTERVAL  # `--max-interval`, `?maxInterval=`
# Two-sided 95 %: Student t quantiles at 0.975 for 1..9 degrees of freedom.
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622)
_Z975 = 1.959963984540054

NO_BOUND, BOUND_STANDBY, BOUND_EFFICIENCY, BOUND_BOTH = 0, 1, 2, 3
BOUND_NAMES: dict[int, str | None] = {
    NO_BOUND: None,
    BOUND_STANDBY: "standby",
    BOUND_EFFICIENCY: "efficiency",
    BOUND_BOTH: "both",
}


def t975(dof: npt.NDArray[Any]) -> Arr:
    """The 0.975 quantile of Student's t for each number of degrees of freedom (≥ 1): the table
    up to 9, beyond it the Cornish-Fisher expansion around the normal quantile (four terms:
    2.2280 for 10, against 2.2281; closer the more degrees of freedom)."""
    v = np.maximum(np.asarray(dof, dtype=np.float64), 1.0)
    z = _Z975
    series = (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )
    table = np.asarray(_T975)[np.clip(v.astype(np.int64), 1, 9) - 1]
    return np.where(v <= 9, table, series)


@dataclass(frozen=True)
class Fits:
    """One entry per meter. beta = 1/η̂ and standby (kW) of the bounded fit; `bound` which
    parameter it pins (NO_BOUND, BOUND_*); eta_lo..standby_hi the 95 % intervals (NaN where
    none: unsolvable, or fewer than 3 points); rmse of the bounded fit (kWh); `above_one` where
    η's unconstrained interval lies above 1, `below_zero` where standby's lies below 0 (the
    data do not fit a charger: no interval then); `collinear` where DC
    and time are nearly proportional (1 − r² below COLLINEAR, uncentred)."""

    points: npt.NDArray[np.int64]
    charging: npt.NDArray[np.int64]
    solvable: npt.NDArray[np.bool_]
    beta: Arr
    standby: Arr
    bound: npt.NDArray[np.int64]
    rmse: Arr
    eta_lo: Arr
    eta_hi: Arr
    standby_lo: Arr
    standby_hi: Arr
    above_one: npt.NDArray[np.bool_]
    below_zero: npt.NDArray[np.bool_]
    collinear: npt.NDArray[np.bool_]


COLLINEAR = 0.01


def fit_many(x: Arr, t: Arr, y: Arr, use: npt.NDArray[np.bool_]) -> Fits:
    """Fit every row of (meters × hours) arrays: x the DC kWh, t the hours reported, y the AC
    kWh of each point; `use` marks the points that count (the others are ignored)."""
    x, t, y = np.where(use, x, 0.0), np.where(use, t, 0.0), np.where(use, y, 0.0)
    sxx, sxt, stt = (x * x).sum(1), (x * t).sum(1), (t * t).sum(1)
    sxy, sty = (x * y).sum(1), (t * y).sum(1)
    points = use.sum(1)
    charging = (use & (x > 0)).sum(1)
    det = sxx * stt - sxt * sxt
    solvable = (sxx > 0) & (stt > 0) & (det > 1e-12 * np.maximum(sxx * stt, 1e-30))
    safe = np.where(solvable, det, 1.0)
    a_u = (sxy * stt - sty * sxt) / safe
    b_u = (sty * sxx - sxy * sxt) / safe

    def rss(a: Arr, b: Arr) -> Arr:
        r = np.where(use, y - a[:, None] * x - b[:, None] * t, 0.0)
        return (r * r).sum(1)  # type: ignore[no-any-return]

    # The two edges' clamped one-parameter solutions, then the better one where the
    # unconstrained solution is infeasible.
    a_edge = np.maximum(sxy / np.where(sxx > 0, sxx, 1.0), 1.0)  # P = 0
    b_edge = np.maximum((sty - sxt) / np.where(stt > 0, stt, 1.0), 0.0)  # β = 1
    zeros, ones = np.zeros_like(a_u), np.ones_like(a_u)
    on_p = rss(a_edge, zeros) <= rss(ones, b_edge)
    inside = (a_u >= 1.0) & (b_u >= 0.0)
    beta = np.where(inside, a_u, np.where(on_p, a_edge, 1.0))
    standby = np.where(inside, b_u, np.where(on_p, 0.0, b_edge))
    bound = np.where(
        inside,
        NO_BOUND,
        np.where(beta == 1.0, BOUND_EFFICIENCY, 0) + np.where(standby == 0.0, BOUND_STANDBY, 0),
    ).astype(np.int64)
    rmse = np.sqrt(rss(beta, standby) / np.maximum(points - 2, 1))

    dof = points - 2
    sigma2 = rss(a_u, b_u) / np.maximum(dof, 1)
    q = t975(np.maximum(dof, 1))
    se_a = np.sqrt(sigma2 * stt / safe)
    se_b = np.sqrt(sigma2 * sxx / safe)
    a_lo, a_hi = a_u - q * se_a, a_u + q * se_a
    b_lo, b_hi = b_u - q * se_b, b_u + q * se_b
    has = solvable & (dof >= 1)
    above_one, below_zero = has & (a_hi < 1.0), has & (b_hi < 0.0)
    nan = np.full_like(a_u, np.nan)
    eta = 1.0 / beta
    # β's upper end at or below 0 leaves η unbounded below: 0 is the honest lower end.
    eta_lo = np.where(a_hi > 0, 1.0 / np.where(a_hi > 0, a_hi, 1.0), 0.0)
    eta_hi = 1.0 / np.maximum(a_lo, 1.0)
    ok = has & ~above_one & ~below_zero
    return Fits(
        points=points,
        charging=charging,
        solvable=solvable,
        beta=beta,
        standby=standby,
        bound=bound,
        rmse=rmse,
        eta_lo=np.where(ok, np.minimum(eta_lo, eta), nan),
        eta_hi=np.where(ok, np.maximum(eta_hi, eta), nan),
        standby_lo=np.where(ok, np.minimum(np.maximum(b_lo, 0.0), standby), nan),
        standby_hi=np.where(ok, np.maximum(b_hi, standby), nan),
        above_one=above_one,
        below_zero=below_zero,
        collinear=solvable & (det < COLLINEAR * sxx * stt),
    )
