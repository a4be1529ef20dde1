"""What every alert rule shares: what one evaluation saw, the alert a rule wants open, and the
protocol a rule follows (one module per rule; the registry is fleetctl.alerts.rules.RULES)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fleetctl.analytics.status import DEGRADED_MIN_PERCENT, OPTIMAL_MIN_PERCENT

HYSTERESIS = 0.01  # efficiency ratio
_OPTIMAL = OPTIMAL_MIN_PERCENT / 100
_DEGRADED = DEGRADED_MIN_PERCENT / 100

Open = set[tuple[str, str]]
"""(kind, subject) of the alerts open before this evaluation."""


@dataclass(frozen=True)
class Wanted:
    """An alert that should be open now, with its current value and what to tell about it."""

    kind: str
    subject: str
    value: float | None
    details: dict[str, Any] = field(default_factory=dict)
    # Consecutive evaluations the condition must hold before the alert opens (1: at once).
    evaluations: int = 1


@dataclass(frozen=True)
class Evidence:
    """What one evaluation read. chargers: rows of fleetctl.analytics.chargers (fitted η̂ per
    meter); vehicles: rows of the fleet report (billed ratio, status); offline: (kind, device
    id, seconds since its newest reading) of devices past the offline limit; charging:
    (vehicle, DC kWh, first SoC, last SoC, SoC drops) over its readings with DC in the last
    hour ordered by their timestamps (drops: consecutive ones where SoC fell by more than
    soc_stalled.SOC_DROP_PCT); assignments: rows of
    fleetctl.analytics.assignment_check (every vehicle's verdict)."""

    chargers: Iterable[dict[str, Any]] = ()
    vehicles: Iterable[dict[str, Any]] = ()
    offline: Iterable[tuple[str, str, float]] = ()
    charging: Iterable[tuple[str, float, float, float, int]] = ()
    assignments: Iterable[dict[str, Any]] = ()


class Rule(Protocol):
    """One kind of condition: the kinds of alert it opens, and which should be open now."""

    kinds: tuple[str, ...]

    def wanted(self, seen: Evidence, was: Open) -> Iterable[Wanted]:
        """The alerts of this rule that should be open, given what was open before."""
        ...


def band(
    kind_prefix: str, subject: str, ratio: float | None, was: Open, details: dict[str, Any]
) -> list[Wanted]:
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
