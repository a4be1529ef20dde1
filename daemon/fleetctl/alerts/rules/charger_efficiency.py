"""A charger whose fitted conversion efficiency is degraded or critical."""

from __future__ import annotations

from collections.abc import Iterator

from fleetctl.alerts.rules.base import Evidence, Open, Wanted, band


class ChargerEfficiency:
    """charger_critical / charger_degraded, per meter, from the charger diagnosis."""

    kinds: tuple[str, ...] = ("charger_critical", "charger_degraded")

    def wanted(self, seen: Evidence, was: Open) -> Iterator[Wanted]:
        """Every diagnosed charger below its band (with hysteresis)."""
        for c in seen.chargers:
            if c["status"] == "insufficient_data":
                continue
            details = {
                "standbyW": c["standbyW"],
                "chargingHours": c["fit"]["chargingHours"],
                "vehicles": c["vehicles"],
            }
            yield from band("charger", c["meterId"], c["conversionEfficiency"], was, details)
