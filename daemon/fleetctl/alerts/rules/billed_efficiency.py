"""A vehicle whose billed efficiency (DC reached over AC billed) is degraded or critical, or
impossible (above 100 %: a meter or assignment error)."""

from __future__ import annotations

from collections.abc import Iterator

from fleetctl.alerts.rules.base import Evidence, Open, Wanted, band


class BilledEfficiency:
    """billed_critical / billed_degraded / meter_error, per vehicle, from the fleet report."""

    kinds: tuple[str, ...] = ("billed_critical", "billed_degraded", "meter_error")

    def wanted(self, seen: Evidence, was: Open) -> Iterator[Wanted]:
        """Every judged vehicle below its band, and every impossible one."""
        for v in seen.vehicles:
            vid = v["vehicleId"]
            if v["status"] == "meter_error":
                yield Wanted("meter_error", vid, v["efficiency"], {"meters": v["meters"]})
            elif v["status"] != "insufficient_data":
                yield from band(
                    "billed", vid, v["efficiency"], was, {"totalAcKwh": v["totalAcKwh"]}
                )
