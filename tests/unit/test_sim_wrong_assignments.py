"""fleet-sim's --wrong-assignments: exactly N vehicles registered to a meter they do not charge
at, the same ones for a seed, named in the truth file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetsim.model import Fleet, FleetConfig
from fleetsim.truth import Truth


def test_exactly_n_vehicles_get_another_meter_stably_for_a_seed() -> None:
    fleet = Fleet(FleetConfig(meters=50, vehicles=100, vehicles_per_meter=2, wrong_assignments=7))
    wrong = [
        j
        for j, (r, m) in enumerate(zip(fleet.registered_meter, fleet.vehicle_meter, strict=True))
        if r != m
    ]
    assert len(wrong) == 7
    again = Fleet(FleetConfig(meters=50, vehicles=100, vehicles_per_meter=2, wrong_assignments=7))
    assert again.registered_meter == fleet.registered_meter
    assert all(0 <= m < 50 for m in fleet.registered_meter)
    assert Fleet(FleetConfig(meters=5, vehicles=5)).registered_meter == list(range(5))


def test_the_physics_do_not_change_and_the_truth_names_them() -> None:
    cfg = FleetConfig(meters=10, vehicles=10, wrong_assignments=2)
    fleet, plain = Fleet(cfg), Fleet(FleetConfig(meters=10, vehicles=10))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    ticks = [m for _, m in fleet.ticks(start, start + timedelta(minutes=5))]
    assert ticks == [m for _, m in plain.ticks(start, start + timedelta(minutes=5))]
    doc = Truth(fleet).to_json(seed=1, interval_s=60, start=start, end=start)
    listed = doc["wrongAssignments"]
    assert len(listed) == 2
    for w in listed:
        v = doc["vehicles"][w["vehicleId"]]
        assert v["registeredMeterId"] == w["registeredMeterId"] != v["meterId"] == w["meterId"]


@pytest.mark.parametrize("n", [-1, 11])
def test_out_of_range_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="--wrong-assignments"):
        FleetConfig(meters=10, vehicles=10, wrong_assignments=n).check()


def test_the_command_line_passes_the_knob_to_the_model() -> None:
    from fleetsim.cli import build_parser, options_from_args  # noqa: PLC0415 (paho, asyncpg)

    args = build_parser().parse_args(
        ["run", "--meters", "4", "--vehicles", "4", "--wrong-assignments", "2"]
    )
    config = options_from_args(args).fleet_config()
    assert config.wrong_assignments == 2
    assert sum(r != m for r, m in zip(Fleet(config).registered_meter, range(4), strict=True)) == 2
