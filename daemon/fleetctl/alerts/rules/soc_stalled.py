"""A vehicle that took DC in the last hour while its state of charge did not rise.

Judged on the vehicle's charging readings ordered by their own timestamps (never by arrival),
and only on a series that can be one battery's: SoC does not fall while DC flows in, so a drop
of more than SOC_DROP_PCT between two consecutive charging readings means the hour holds more
than one series under one id (replayed or overlapping simulator runs, a device re-sending old
data with new values, two sources for one id). Such an hour is not judged: an alert neither
opens nor resolves on it. An alert opens only once the condition held for `evaluations`
consecutive evaluations (FLEET_ALERT_SOC_STALLED_EVALUATIONS), so one odd hour does not page.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleetctl.alerts.rules.base import Evidence, Open, Wanted

SOC_PROGRESS_PCT = 0.5  # a stalled charge resolves once SoC rose by this much
MIN_STALL_KWH = 1.0  # DC a vehicle must have taken for "no SoC progress" to mean anything
# A battery taking DC does not lose charge: a larger fall between consecutive charging readings
# is two series mixed (BMS rounding and recalibration move SoC by tenths, not by a percent).
SOC_DROP_PCT = 1.0
EVALUATIONS = 3  # consecutive evaluations before an alert opens (the setting's default)


class SocStalled:
    """soc_stalled, per vehicle, from its charging readings of the last hour."""

    kinds: tuple[str, ...] = ("soc_stalled",)

    def __init__(self, evaluations: int = EVALUATIONS) -> None:
        self.evaluations = evaluations

    def wanted(self, seen: Evidence, was: Open) -> Iterator[Wanted]:
        """Every vehicle charging without SoC progress (with hysteresis), on series that can
        be one battery's; an open alert on a mixed series stays as it is."""
        for vid, dc_kwh, first, last, drops in seen.charging:
            is_open = ("soc_stalled", vid) in was
            details = {"dcKwh": dc_kwh, "socFirst": first, "socLast": last}
            if drops:
                if is_open:
                    yield Wanted("soc_stalled", vid, None, details | {"mixedSeries": drops})
                continue
            if dc_kwh < MIN_STALL_KWH:
                continue
            if last <= first or (is_open and last < first + SOC_PROGRESS_PCT):
                yield Wanted("soc_stalled", vid, last - first, details, self.evaluations)
