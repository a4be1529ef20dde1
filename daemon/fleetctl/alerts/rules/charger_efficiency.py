"""A charger whose fitted conversion efficiency is degraded or critical."""

from __future__ import annotations

from collections.abc import Iterator

from fleetctl.alerts.rules.base import Evidence, Open, Wanted, band

SURE = ("critical", "degraded", "optimal")
"""The statuses a fit earns only when its interval is sure of them (fleetctl.analytics.chargers)."""


class ChargerEfficiency:
    """charger_critical / charger_degraded, per meter, from the charger diagnosis."""

    kinds: tuple[str, ...] = ("charger_critical", "charger_degraded")

    def wanted(self, seen: Evidence, was: Open) -> Iterator[Wanted]:
        """A charger whose status is surely degraded or critical (its 95 % interval inside
        the band, or narrow); an open alert is kept (band()'s hysteresis on η̂) while the
        fit is not sure any more, but never opened by an unsure one."""
        for c in seen.chargers:
            sure = c["status"] in SURE
            details = {
                "standbyW": c["standbyW"],
                "ci95": c.get("ci95"),
                "chargingHours": c["fit"]["chargingHours"],
                "vehicles": c["vehicles"],
            }
            for w in band("charger", c["meterId"], c["conversionEfficiency"], was, details):
                if sure or (w.kind, w.subject) in was:
                    yield w
