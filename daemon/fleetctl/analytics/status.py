"""Efficiency status rules (the thresholds operators act on).

The rules compare exact sums: kWh are numeric(12,6) in the database, so every sum is a whole
number of micro-kWh, and the thresholds are checked on those integers (dc * 100 >= ac * 85)
rather than on a rounded ratio.
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import lru_cache

OPTIMAL_MIN_PERCENT = 85
DEGRADED_MIN_PERCENT = 75

MESSAGES = {
    "optimal": "Normal AC-to-DC conversion efficiency",
    "degraded": "Charger losing more than 15% of the energy: schedule a check",
    "critical": "Charger losing more than 25% of the energy: inspect now",
    "meter_error": "More DC delivered than AC billed: meter or assignment is wrong",
    "insufficient_data": "Too little AC energy in the window to judge",
    "no_assignment": "Vehicle has no meter assigned in the window",
}
STATUSES = ("optimal", "degraded", "critical", "meter_error", "insufficient_data")


def status_micro(ac_u: int, dc_u: int, min_ac_u: int) -> str:
    """The status of an assigned vehicle from exact Σ AC and Σ DC in micro-kWh."""
    if ac_u < min_ac_u or ac_u <= 0:
        return "insufficient_data"
    if dc_u > ac_u:
        return "meter_error"
    if dc_u * 100 >= ac_u * OPTIMAL_MIN_PERCENT:
        return "optimal"
    if dc_u * 100 >= ac_u * DEGRADED_MIN_PERCENT:
        return "degraded"
    return "critical"


def verdict_micro(ac_u: int, dc_u: int, min_ac_u: int) -> tuple[str, float | None]:
    """(status, efficiency ratio or None) of an assigned vehicle or fleet from exact sums."""
    status = status_micro(ac_u, dc_u, min_ac_u)
    # int / int: the correctly rounded ratio
    return status, None if status == "insufficient_data" else dc_u / ac_u


@lru_cache(maxsize=64)
def min_ac_micro(min_ac_kwh: float) -> int:
    """The smallest Σ AC in micro-kWh that is not below `min_ac_kwh`."""
    return math.ceil(Decimal(str(min_ac_kwh)).scaleb(6))


def micro(kwh: Decimal) -> int:
    """An exact kWh sum (at most 6 decimals) as integer micro-kWh."""
    return int(kwh.scaleb(6))


def classify(
    ac_kwh: Decimal, dc_kwh: Decimal, *, assigned: bool = True, min_ac_kwh: float = 0.1
) -> tuple[str, str, float | None]:
    """(status, one-line message, efficiency ratio or None)."""
    if not assigned:
        return "insufficient_data", MESSAGES["no_assignment"], None
    status, ratio = verdict_micro(micro(ac_kwh), micro(dc_kwh), min_ac_micro(min_ac_kwh))
    return status, MESSAGES[status], ratio
