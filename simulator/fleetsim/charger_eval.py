"""How well the charger diagnosis (fleetctl.analytics.chargers) finds what the simulator drew: each
meter's charger efficiency η and standby draw, whether its 95 % intervals hold them, and which
chargers are degraded or critical."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from fleetsim.model import Fleet

MIN_CHARGING_HOURS = 2
FLAGGED = ("degraded", "critical")


def _quantiles(errors: list[float]) -> dict[str, float | None]:
    errors = sorted(errors)
    if not errors:
        return {"p50": None, "p95": None, "max": None}
    p50, p95 = (errors[min(len(errors) - 1, int(q * len(errors)))] for q in (0.5, 0.95))
    return {"p50": p50, "p95": p95, "max": errors[-1]}


def score(report: dict[str, Any], fleet: Fleet) -> dict[str, Any]:
    """Accuracy of a `chargers` report against the fleet's truth."""
    return score_rows(report["chargers"], fleet)


def score_rows(rows: Iterable[dict[str, Any]], fleet: Fleet) -> dict[str, Any]:
    """Accuracy of charger rows (one report's, or several windows' together: each row is
    judged on its own) against the fleet's truth.

    judged: rows that charged at least 2 h. Over them: |η̂ − η| and |standby − truth|
    quantiles, the coverage of the 95 % intervals (rows that have one), negative standby
    figures. Recall and precision of degraded + critical count every row that charged 2 h:
    a faulty charger left `insufficient_data` is a miss (`faultyUndecided` says how many)."""
    per_h = 3600 / fleet.config.interval_s
    eta = dict(zip(fleet.meter_ids, fleet.meter_eff, strict=True))
    standby = {m: s * per_h * 1000 for m, s in zip(fleet.meter_ids, fleet._m_standby, strict=True)}
    band = dict(zip(fleet.meter_ids, fleet.meter_band, strict=True))
    rows = [r for r in rows if r["meterId"] in eta]
    judged = [r for r in rows if r["fit"]["chargingHours"] >= MIN_CHARGING_HOURS]
    eta_err = [
        abs(r["conversionEfficiency"] - eta[r["meterId"]])
        for r in judged
        if r["conversionEfficiency"] is not None
    ]
    standby_err = [
        abs(r["standbyW"] - standby[r["meterId"]]) for r in judged if r["standbyW"] is not None
    ]
    with_ci = [r for r in judged if r.get("ci95")]
    eta_in = sum(
        r["ci95"]["conversionEfficiency"][0]
        <= eta[r["meterId"]]
        <= r["ci95"]["conversionEfficiency"][1]
        for r in with_ci
    )
    standby_in = sum(
        r["ci95"]["standbyW"][0] <= standby[r["meterId"]] <= r["ci95"]["standbyW"][1]
        for r in with_ci
    )
    bad = [r for r in judged if band[r["meterId"]] != "normal"]
    flagged = [r for r in rows if r["status"] in FLAGGED]
    hits = sum(band[r["meterId"]] != "normal" for r in flagged)
    n = max(len(judged), 1)
    return {
        "chargers": len(rows),
        "judged": len(judged),
        "etaWithin001": sum(e <= 0.01 for e in eta_err) / n,
        "etaMaxError": max(eta_err, default=None),
        "etaError": _quantiles(eta_err),
        "standbyWithin5W": sum(e <= 5 for e in standby_err) / n,
        "standbyMaxErrorW": max(standby_err, default=None),
        "standbyErrorW": _quantiles(standby_err),
        "negativeStandby": sum(r["standbyW"] is not None and r["standbyW"] < 0 for r in rows),
        "efficiencyAbove1": sum((r["conversionEfficiency"] or 0) > 1 for r in rows),
        "withInterval": len(with_ci),
        "etaCoverage": eta_in / len(with_ci) if with_ci else None,
        "standbyCoverage": standby_in / len(with_ci) if with_ci else None,
        "statuses": dict(Counter(r["status"] for r in rows)),
        "reasons": dict(Counter(r["reason"] for r in rows if r.get("reason"))),
        "faulty": len(bad),
        "faultyUndecided": sum(r["status"] == "insufficient_data" for r in bad),
        "flagged": len(flagged),
        "falseCritical": sum(
            r["status"] == "critical" and band[r["meterId"]] != "critical" for r in rows
        ),
        "recall": sum(r["status"] in FLAGGED for r in bad) / len(bad) if bad else 1.0,
        "precision": hits / len(flagged) if flagged else 1.0,
    }
