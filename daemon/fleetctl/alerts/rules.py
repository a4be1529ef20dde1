"""Which alerts should be open, from the reports of one evaluation and the alerts open before
(pure: no database).

Hysteresis: a condition opens at its threshold and resolves only a margin past it (an
efficiency must climb HYSTERESIS above the band's floor), so a value sitting on a threshold
does not open and resolve an alert at every evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetctl.analytics.status import DEGRADED_MIN_PERCENT, OPTIMAL_MIN_PERCENT

HYSTERESIS = 0.01  # efficiency ratio
SOC_PROGRESS_PCT = 0.5  # a stalled charge resolves once SoC rose by this much
MIN_STALL_KWH = 1.0  # DC a vehicle must have taken for "no SoC progress" to mean anything
_OPTIMAL = OPTIMAL_MIN_PERCENT / 100
_DEGRADED = DEGRADED_MIN_PERCENT / 100

KINDS = ("charger_critical", "charger_degraded", "billed_critical", "billed_degraded",
         "meter_error", "device_offline", "soc_stalled")  # fmt: skip


@dataclass(frozen=True)
class Wanted:
    """An alert that should be open now, with its current value and what to tell about it."""

    kind: str
    subject: str
    value: float | None
    details: dict[str, Any] = field(default_factory=dict)


def _band(kind_prefix: str, subject: str, ratio: float | None, was: set[tuple[str, str]],
          details: dict[str, Any]) -> list[Wanted]:  # fmt: skip
    """critical below 0.75, degraded below 0.85; each stays open until ratio clears its floor
    by HYSTERESIS."""
    if ratio is None:
        return []
    crit, deg = f"{kind_prefix}_critical", f"{kind_prefix}_degraded"
    if ratio < _DEGRADED or ((crit, subject) in was and ratio < _DEGRADED + HYSTERESIS):
        return [Wanted(crit, subject, ratio, details)]
    if ratio < _OPTIMAL or ((deg, subject) in was and ratio < _OPTIMAL + HYSTERESIS):
        return [Wanted(deg, subject, ratio, details)]
    return []


def wanted(
    chargers: Iterable[dict[str, Any]],
    vehicles: Iterable[dict[str, Any]],
    offline: Iterable[tuple[str, str, float]],
    was_open: Iterable[tuple[str, str]],
    charging: Iterable[tuple[str, float, float, float]] = (),
) -> list[Wanted]:
    """The alerts that should be open.

    chargers: rows of fleetctl.analytics.chargers (fitted η̂ per meter); vehicles: rows of the fleet
    report (billed ratio, status); offline: (kind, device id, seconds since its newest
    reading) of devices past the offline limit; was_open: (kind, subject) open now; charging:
    (vehicle, DC kWh, first SoC, last SoC) over its readings with DC in the last hour.
    """
    was = set(was_open)
    out: list[Wanted] = []
    for c in chargers:
        if c["status"] == "insufficient_data":
            continue
        details = {"standbyW": c["standbyW"], "chargingHours": c["fit"]["chargingHours"],
                   "vehicles": c["vehicles"]}  # fmt: skip
        out += _band("charger", c["meterId"], c["conversionEfficiency"], was, details)
    for v in vehicles:
        vid = v["vehicleId"]
        if v["status"] == "meter_error":
            out.append(Wanted("meter_error", vid, v["efficiency"], {"meters": v["meters"]}))
            continue
        if v["status"] != "insufficient_data":
            out += _band("billed", vid, v["efficiency"], was, {"totalAcKwh": v["totalAcKwh"]})
    for vid, dc_kwh, first, last in charging:
        if dc_kwh < MIN_STALL_KWH:
            continue
        if last <= first or (("soc_stalled", vid) in was and last < first + SOC_PROGRESS_PCT):
            out.append(Wanted("soc_stalled", vid, last - first,
                              {"dcKwh": dc_kwh, "socFirst": first, "socLast": last}))  # fmt: skip
    for kind, device, age in offline:
        out.append(Wanted("device_offline", device, age, {"kind": kind}))
    return out
