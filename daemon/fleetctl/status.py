"""Efficiency status rules (the thresholds operators act on)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

OPTIMAL_MIN = Decimal("0.85")
DEGRADED_MIN = Decimal("0.75")
DEFAULT_MIN_AC_KWH = 0.1

MESSAGES = {
    "optimal": "Normal AC-to-DC conversion efficiency",
    "degraded": "Charger losing more than 15% of the energy: schedule a check",
    "critical": "Charger losing more than 25% of the energy: inspect now",
    "meter_error": "More DC delivered than AC billed: meter or assignment is wrong",
    "insufficient_data": "Too little AC energy in the window to judge",
    "no_assignment": "Vehicle has no meter assigned in the window",
}
STATUSES = ("optimal", "degraded", "critical", "meter_error", "insufficient_data")


def classify(
    ac_kwh: Decimal, dc_kwh: Decimal, *, assigned: bool = True, min_ac_kwh: float = 0.1
) -> tuple[str, str, Decimal | None]:
    """(status, one-line message, efficiency ratio or None)."""
    if not assigned:
        return "insufficient_data", MESSAGES["no_assignment"], None
    if ac_kwh < _decimal(min_ac_kwh) or ac_kwh <= 0:
        return "insufficient_data", MESSAGES["insufficient_data"], None
    ratio = dc_kwh / ac_kwh
    if ratio > 1:
        status = "meter_error"
    elif ratio >= OPTIMAL_MIN:
        status = "optimal"
    elif ratio >= DEGRADED_MIN:
        status = "degraded"
    else:
        status = "critical"
    return status, MESSAGES[status], ratio


@lru_cache(maxsize=64)
def _decimal(value: float) -> Decimal:
    return Decimal(str(value))
