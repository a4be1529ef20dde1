"""How well the assignment check (fleetctl.analytics.assignment_check) finds the vehicles the
simulator registered to a meter they do not charge at (`--wrong-assignments`), and whether it
names the meter they really charge at."""

from __future__ import annotations

from typing import Any

from fleetsim.model import Fleet


def wrong_assignments(fleet: Fleet) -> dict[str, str]:
    """Vehicle id -> the meter it really charges at, for every wrongly registered vehicle."""
    return {
        v: fleet.meter_ids[real]
        for v, real, reg in zip(
            fleet.vehicle_ids, fleet.vehicle_meter, fleet.registered_meter, strict=True
        )
        if real != reg
    }


def score(report: dict[str, Any], fleet: Fleet) -> dict[str, Any]:
    """Precision and recall of `suspect` against the truth, and how many suggestions are the
    real meter (a report listing at least the suspect vehicles)."""
    truth = wrong_assignments(fleet)
    flagged = {r["vehicleId"]: r for r in report["vehicles"] if r["status"] == "suspect"}
    hits = [v for v in flagged if v in truth]
    return {
        "vehicles": report["count"],
        "wrong": len(truth),
        "flagged": len(flagged),
        "found": len(hits),
        "suggestedRight": sum(flagged[v]["suggestedMeterId"] == truth[v] for v in hits),
        "precision": len(hits) / len(flagged) if flagged else 1.0,
        "recall": len(hits) / len(truth) if truth else 1.0,
        "statusCounts": report["statusCounts"],
    }
