"""A vehicle whose charging hours do not line up with its assigned meter's AC: the assignment
is probably wrong (fleetctl.analytics.assignment_check names the meter that fits)."""

from __future__ import annotations

from collections.abc import Iterator

from fleetctl.alerts.rules.base import Evidence, Open, Wanted

# An open alert resolves only once the assigned meter sees every charging hour and its fit
# error is below this: a vehicle sitting on the check's thresholds does not flap.
RESOLVE_BELOW_ERROR = 0.15


class AssignmentSuspect:
    """assignment_suspect, per vehicle, from the assignment check."""

    kinds: tuple[str, ...] = ("assignment_suspect",)

    def wanted(self, seen: Evidence, was: Open) -> Iterator[Wanted]:
        """Every suspect vehicle, and open ones until their meter clearly fits (hysteresis)."""
        for v in seen.assignments:
            vid, side = v["vehicleId"], v["assigned"]
            err = side["fit"]["relativeError"]
            still = (
                v["status"] == "ok"
                and ("assignment_suspect", vid) in was
                and (
                    side["chargingHoursWithoutAc"] > 0 or err is None or err >= RESOLVE_BELOW_ERROR
                )
            )
            if v["status"] == "suspect" or still:
                details = {
                    "meterId": v["meterId"],
                    "suggestedMeterId": v["suggestedMeterId"],
                    "chargingHours": side["chargingHours"],
                    "chargingHoursWithoutAc": side["chargingHoursWithoutAc"],
                    "acHoursWithoutDc": side["acHoursWithoutDc"],
                    "relativeError": err,
                }
                yield Wanted("assignment_suspect", vid, err, details)
