"""A vehicle that took DC in the last hour while its state of charge did not rise."""

from __future__ import annotations

from collections.abc import Iterator

from fleetctl.alerts.rules.base import Evidence, Open, Wanted

SOC_PROGRESS_PCT = 0.5  # a stalled charge resolves once SoC rose by this much
MIN_STALL_KWH = 1.0  # DC a vehicle must have taken for "no SoC progress" to mean anything


class SocStalled:
    """soc_stalled, per vehicle, from its charging readings of the last hour."""

    kinds: tuple[str, ...] = ("soc_stalled",)

    def wanted(self, seen: Evidence, was: Open) -> Iterator[Wanted]:
        """Every vehicle charging without SoC progress (with hysteresis)."""
        for vid, dc_kwh, first, last in seen.charging:
            if dc_kwh < MIN_STALL_KWH:
                continue
            if last <= first or (("soc_stalled", vid) in was and last < first + SOC_PROGRESS_PCT):
                details = {"dcKwh": dc_kwh, "socFirst": first, "socLast": last}
                yield Wanted("soc_stalled", vid, last - first, details)
