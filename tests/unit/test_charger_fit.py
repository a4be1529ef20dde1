"""The charger fit (fleetctl.analytics.charger_fit, chargers.judge) on synthetic meters with a
known efficiency and standby draw: bounds respected, intervals that cover the truth, a status
only when it is sure."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fleetctl.analytics.charger_fit import BOUND_EFFICIENCY, BOUND_STANDBY, NO_BOUND, t975
from fleetctl.analytics.charger_fit import fit_many as fit
from fleetctl.analytics.chargers import fit_points, judge

Arr = npt.NDArray[np.float64]


def _meters(
    rng: np.random.Generator, eta: Arr, standby_kw: Arr, hours: int, noise_kwh: float
) -> tuple[Arr, Arr, Arr]:
    """Each meter charges a random power in a random half of its hours; AC as the model says
    plus Gaussian noise."""
    m = len(eta)
    x = rng.uniform(5, 60, (m, hours)) * (rng.random((m, hours)) < 0.5)
    t = np.ones((m, hours))
    y = x / eta[:, None] + standby_kw[:, None] * t + rng.normal(0, noise_kwh, (m, hours))
    return x, t, y


def test_t_quantiles() -> None:
    got = t975(np.array([1, 2, 9, 10, 22, 30, 120, 10_000]))
    want = [12.7062, 4.3027, 2.2622, 2.2281, 2.0739, 2.0423, 1.9799, 1.9602]
    assert np.allclose(got, want, atol=2e-4)


def test_intervals_cover_the_truth_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(25)
    n = 4000
    eta = rng.uniform(0.6, 0.95, n)
    standby = rng.uniform(0.03, 0.09, n)
    x, t, y = _meters(rng, eta, standby, 24, 0.02)
    f = fit(x, t, y, np.ones(x.shape, dtype=bool))
    eta_in = ((f.eta_lo <= eta) & (eta <= f.eta_hi)).mean()
    standby_in = ((f.standby_lo <= standby) & (standby <= f.standby_hi)).mean()
    # 4,000 meters: the binomial's standard error is 0.35 points.
    assert 0.94 <= eta_in <= 0.97, eta_in
    assert 0.94 <= standby_in <= 0.97, standby_in


def test_short_windows_stay_physical_and_cover_the_truth() -> None:
    """3 hours, a vehicle charging in every one: the unconstrained fit can go anywhere."""
    rng = np.random.default_rng(3)
    n = 4000
    eta = rng.uniform(0.85, 0.99, n)
    standby = rng.uniform(0.0, 0.09, n)
    x = rng.uniform(40, 41, (n, 3))
    t = np.ones((n, 3))
    y = x / eta[:, None] + standby[:, None] + rng.normal(0, 0.05, (n, 3))
    f = fit(x, t, y, np.ones(x.shape, dtype=bool))
    assert (1 / f.beta <= 1.0).all()
    assert (1 / f.beta > 0).all()
    assert (f.standby >= 0).all()
    assert set(np.unique(f.bound)) <= {NO_BOUND, BOUND_STANDBY, BOUND_EFFICIENCY, 3}
    assert (f.bound != NO_BOUND).any()
    has = ~np.isnan(f.eta_lo)
    assert ((f.eta_lo <= eta) & (eta <= f.eta_hi))[has].mean() >= 0.95
    assert ((f.standby_lo <= standby) & (standby <= f.standby_hi))[has].mean() >= 0.95
    statuses = [judge(f, i)[0] for i in range(n)]
    # Nothing confident is wrong: every optimal one is in the optimal band.
    assert all(eta[i] >= 0.85 for i, s in enumerate(statuses) if s == "optimal")
    assert "critical" not in statuses


def test_the_bounded_solution_is_the_constrained_minimum() -> None:
    """Against a fine grid of the feasible set near the solution."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        x, t, y = _meters(rng, np.array([0.97]), np.array([0.0]), 4, 0.3)
        f = fit(x, t, y, np.ones(x.shape, dtype=bool))
        a, b = float(f.beta[0]), float(f.standby[0])
        assert a >= 1.0
        assert b >= 0.0
        best = float(((y[0] - a * x[0] - b * t[0]) ** 2).sum())
        for da in np.linspace(-0.05, 0.05, 21):
            for db in np.linspace(-0.5, 0.5, 21):
                a2, b2 = max(a + da, 1.0), max(b + db, 0.0)
                assert ((y[0] - a2 * x[0] - b2 * t[0]) ** 2).sum() >= best - 1e-9


def test_an_exact_meter_is_judged_and_its_bound_named() -> None:
    x = np.array([[10.0, 0.0, 20.0, 5.0, 0.0, 30.0]])
    t = np.ones_like(x)
    use = np.ones(x.shape, dtype=bool)
    f = fit(x, t, x / 0.8 + 0.05, use)
    assert abs(1 / f.beta[0] - 0.8) < 1e-9
    assert abs(f.standby[0] - 0.05) < 1e-9
    assert judge(f, 0) == ("degraded", None)
    # No standby at all, and a tiny noise: the bound may hold, never be crossed.
    f = fit(x, t, x / 0.9 - 0.001 * np.array([[1, 0, -1, 1, 0, -1]]), use)
    assert f.standby[0] >= 0
    assert f.bound[0] in (NO_BOUND, BOUND_STANDBY)
    # More DC than AC: efficiency pinned at 1, and surely above 1 is a meter error.
    f = fit(x, t, x / 1.2 + 0.05, use)
    assert f.beta[0] == 1.0
    assert f.bound[0] & BOUND_EFFICIENCY
    assert judge(f, 0) == ("meter_error", "efficiency_above_1")


def test_insufficient_data_says_why() -> None:
    def reason(points: list[tuple[float, float, float]]) -> str | None:
        r = fit_points(points)
        assert r["status"] == "insufficient_data"
        return r["reason"]  # type: ignore[no-any-return]

    assert reason([(10.0, 1.0, 11.2), (0.0, 1.0, 0.05)]) == "few_charging_hours"
    assert reason([(10.0, 1.0, 11.2), (20.0, 1.0, 22.3)]) == "few_hours"
    # The same load every hour: η and standby cannot be told apart.
    assert reason([(10.0, 1.0, 11.2)] * 5) == "collinear"
    assert reason([(10.0, 1.0, 11.2), (10.01, 1.0, 11.0), (10.02, 1.0, 11.4)]) == "collinear"
    noisy = [(10.0, 1.0, 12.4), (0.0, 1.0, 0.05), (20.0, 1.0, 23.0), (5.0, 1.0, 7.0)]
    assert reason(noisy) == "interval_too_wide"
    assert fit_points([])["reason"] == "few_charging_hours"


def test_a_sure_fit_carries_its_interval() -> None:
    points = [(x, 1.0, x / 0.9 + 0.06) for x in (0.0, 10.0, 0.0, 25.0, 7.0, 0.0, 3.0)]
    r = fit_points(points)
    assert r["status"] == "optimal"
    assert r["reason"] is None
    assert r["boundActive"] is None
    lo, hi = r["ci95"]["conversionEfficiency"]
    assert lo <= 0.9 <= hi
    lo, hi = r["ci95"]["standbyW"]
    assert lo <= 60.0 <= hi
