"""How well the charger diagnosis (fleetctl.analytics.chargers) finds what the simulator drew: each
meter's charger efficiency η and standby draw, and which chargers are degraded or critical."""

from __future__ import annotations

from typing import Any

from fleetsim.model import Fleet

MIN_CHARGING_HOURS = 2


def score(report: dict[str, Any], fleet: Fleet) -> dict[str, Any]:
    """Accuracy of a `chargers` report against the fleet's truth (chargers that charged at
    least 2 h are judged; recall and precision of degraded + critical among them)."""
    per_h = 3600 / fleet.config.interval_s
    eta = dict(zip(fleet.meter_ids, fleet.meter_eff, strict=True))
    standby = {m: s * per_h * 1000 for m, s in zip(fleet.meter_ids, fleet._m_standby, strict=True)}
    band = dict(zip(fleet.meter_ids, fleet.meter_band, strict=True))
    rows = [r for r in report["chargers"] if r["meterId"] in eta]
    judged = [r for r in rows if r["fit"]["chargingHours"] >= MIN_CHARGING_HOURS]
    eta_err = sorted(
        abs(r["conversionEfficiency"] - eta[r["meterId"]])
        for r in judged
        if r["conversionEfficiency"] is not None
    )
    standby_err = sorted(
        abs(r["standbyW"] - standby[r["meterId"]]) for r in judged if r["standbyW"] is not None
    )
    bad = {r["meterId"] for r in judged if band[r["meterId"]] != "normal"}
    flagged = {r["meterId"] for r in rows if r["status"] in ("degraded", "critical")}
    n = max(len(judged), 1)
    return {
        "chargers": len(rows),
        "judged": len(judged),
        "etaWithin001": sum(e <= 0.01 for e in eta_err) / n,
        "etaMaxError": eta_err[-1] if eta_err else None,
        "standbyWithin5W": sum(e <= 5 for e in standby_err) / n,
        "standbyMaxErrorW": standby_err[-1] if standby_err else None,
        "faulty": len(bad),
        "flagged": len(flagged),
        "recall": len(bad & flagged) / len(bad) if bad else 1.0,
        "precision": len(bad & flagged) / len(flagged) if flagged else 1.0,
    }
