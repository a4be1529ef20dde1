"""Alert conditions with hysteresis (pure)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fleetctl.alerts.rules import KINDS, RULES, Evidence, Wanted, wanted
from fleetctl.alerts.rules.soc_stalled import SocStalled
from fleetctl.analytics.chargers import status_of


def _charger(eta: float | None, status: str | None = None) -> dict[str, Any]:
    return {
        "meterId": "M1",
        "status": status or status_of(eta, 5),
        "conversionEfficiency": eta,
        "standbyW": 50.0,
        "fit": {"chargingHours": 5},
        "vehicles": ["V1"],
    }


def _kinds(*args: Any) -> set[str]:
    return {w.kind for w in wanted(*args)}


def test_charger_bands_open_at_the_threshold_and_clear_past_the_margin() -> None:
    assert _kinds([_charger(0.86)], [], [], []) == set()
    assert _kinds([_charger(0.849)], [], [], []) == {"charger_degraded"}
    assert _kinds([_charger(0.74)], [], [], []) == {"charger_critical"}
    # Open: it stays open until 1 point past the floor, so a value on the line does not flap.
    was = [("charger_degraded", "M1")]
    assert _kinds([_charger(0.855)], [], [], was) == {"charger_degraded"}
    assert _kinds([_charger(0.861)], [], [], was) == set()
    was = [("charger_critical", "M1")]
    assert _kinds([_charger(0.755)], [], [], was) == {"charger_critical"}
    assert _kinds([_charger(0.765)], [], [], was) == {"charger_degraded"}
    assert _kinds([_charger(None, "insufficient_data")], [], [], was) == set()


def test_charger_alerts_open_only_on_a_sure_status() -> None:
    """An interval that spans two bands (insufficient_data) opens nothing, but does not close
    what a sure fit opened while η̂ stays in the band."""
    unsure = _charger(0.70, "insufficient_data")
    assert _kinds([unsure], [], [], []) == set()
    assert _kinds([unsure], [], [], [("charger_critical", "M1")]) == {"charger_critical"}
    assert _kinds([_charger(0.80, "insufficient_data")], [], [], []) == set()
    assert _kinds([_charger(1.0, "meter_error")], [], [], [("charger_degraded", "M1")]) == set()


def _vehicle(**kw: Any) -> dict[str, Any]:
    row = {
        "vehicleId": "V1",
        "status": "optimal",
        "efficiency": 0.9,
        "meters": [],
        "totalAcKwh": 10.0,
    }
    return row | kw


def test_vehicle_conditions() -> None:
    assert _kinds([], [_vehicle()], [], []) == set()
    assert _kinds([], [_vehicle(status="meter_error", efficiency=1.2)], [], []) == {"meter_error"}
    assert _kinds([], [_vehicle(status="degraded", efficiency=0.8)], [], []) == {"billed_degraded"}


def test_charging_without_soc_progress() -> None:
    def kinds(
        rows: list[tuple[str, float, float, float, int]], was: list[tuple[str, str]]
    ) -> set[str]:
        return _kinds([], [], [], was, rows)

    assert kinds([("V1", 5.0, 50.0, 58.0, 0)], []) == set()
    assert kinds([("V1", 5.0, 50.0, 50.0, 0)], []) == {"soc_stalled"}
    assert kinds([("V1", 0.2, 50.0, 50.0, 0)], []) == set()  # a trickle says nothing
    was = [("soc_stalled", "V1")]
    assert kinds([("V1", 5.0, 50.0, 50.3, 0)], was) == {"soc_stalled"}
    assert kinds([("V1", 5.0, 50.0, 51.0, 0)], was) == set()


def test_soc_stalled_does_not_judge_a_mixed_series() -> None:
    """SoC falling while DC flows in: two series under one id (an overlapping replay). Such an
    hour neither opens an alert nor resolves an open one."""
    mixed = [("V1", 5.0, 50.0, 30.0, 7)]
    assert _kinds([], [], [], [], mixed) == set()
    assert _kinds([], [], [], [("soc_stalled", "V1")], mixed) == {"soc_stalled"}


def test_soc_stalled_asks_for_consecutive_evaluations() -> None:
    [w] = wanted([], [], [], [], [("V1", 5.0, 50.0, 50.0, 0)])
    assert w.evaluations == 3
    [w] = wanted([], [], [], [], [("V1", 5.0, 50.0, 50.0, 0)], rules=[SocStalled(5)])
    assert w.evaluations == 5


def test_offline_devices() -> None:
    got = wanted([], [], [("meter", "M9", 900.0)], [])
    assert [(w.kind, w.subject, w.value) for w in got] == [("device_offline", "M9", 900.0)]


class _LowStandby:
    """A toy rule, as docs/architecture.md adds one: a module with this class, one line in
    RULES (here passed as `rules=`)."""

    kinds: tuple[str, ...] = ("charger_standby_high",)

    def wanted(self, seen: Evidence, was: set[tuple[str, str]]) -> Iterator[Wanted]:
        for c in seen.chargers:
            if c["standbyW"] > 40:
                yield Wanted("charger_standby_high", c["meterId"], c["standbyW"])


def test_a_rule_is_one_class_and_one_registration() -> None:
    got = wanted([_charger(0.9)], [], [], [], rules=(*RULES, _LowStandby()))
    assert [(w.kind, w.subject, w.value) for w in got] == [("charger_standby_high", "M1", 50.0)]
    assert len(set(KINDS)) == len(KINDS)  # every kind belongs to one rule
