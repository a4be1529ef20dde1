"""Which alerts should be open, from the reports of one evaluation and the alerts open before
(pure: no database). One module per rule, each following base.Rule; RULES is the registry: a
new rule is one module and one line there.

Hysteresis: a condition opens at its threshold and resolves only a margin past it (an
efficiency must climb HYSTERESIS above the band's floor), so a value sitting on a threshold
does not open and resolve an alert at every evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fleetctl.alerts.rules.assignment_suspect import AssignmentSuspect
from fleetctl.alerts.rules.base import Evidence, Rule, Wanted
from fleetctl.alerts.rules.billed_efficiency import BilledEfficiency
from fleetctl.alerts.rules.charger_efficiency import ChargerEfficiency
from fleetctl.alerts.rules.device_offline import DeviceOffline
from fleetctl.alerts.rules.soc_stalled import SocStalled

__all__ = ["KINDS", "RULES", "Evidence", "Rule", "Wanted", "wanted"]

RULES: tuple[Rule, ...] = (
    ChargerEfficiency(),
    BilledEfficiency(),
    SocStalled(),
    DeviceOffline(),
    AssignmentSuspect(),
)
KINDS = tuple(kind for rule in RULES for kind in rule.kinds)


def wanted(
    chargers: Iterable[dict[str, Any]],
    vehicles: Iterable[dict[str, Any]],
    offline: Iterable[tuple[str, str, float]],
    was_open: Iterable[tuple[str, str]],
    charging: Iterable[tuple[str, float, float, float, int]] = (),
    *,
    assignments: Iterable[dict[str, Any]] = (),
    rules: Iterable[Rule] = RULES,
) -> list[Wanted]:
    """The alerts that should be open (see base.Evidence for what each argument holds)."""
    seen = Evidence(
        chargers=chargers,
        vehicles=vehicles,
        offline=offline,
        charging=charging,
        assignments=assignments,
    )
    was = set(was_open)
    return [w for rule in rules for w in rule.wanted(seen, was)]
