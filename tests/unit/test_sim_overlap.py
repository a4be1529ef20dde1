"""fleet-sim's telematics sleep and replayed overlapping runs (issue 25): what is published,
and what the truth file says about it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from fleetsim.model import VEHICLE, Fleet, FleetConfig
from fleetsim.truth import Truth

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_sleeping_vehicles_publish_nothing_in_their_nightly_window() -> None:
    fleet = Fleet(
        FleetConfig(meters=4, vehicles=10, interval_s=600, sleep_vehicles=3, sleep_hours=2)
    )
    per_vehicle: Counter[int] = Counter()
    truth = Truth(fleet)
    for _, msgs in fleet.ticks(START, START + timedelta(days=1)):
        for kind, index, _, _, micro, hour in msgs:
            truth.add(kind, index, hour, micro)
            if kind == VEHICLE:
                per_vehicle[index] += 1
    assert sorted(per_vehicle.values()) == [132] * 3 + [144] * 7  # 2 h of 10-min readings
    assert set(fleet.sleep) == {j for j, n in per_vehicle.items() if n == 132}
    doc = truth.to_json(seed=1, interval_s=600, start=START, end=START + timedelta(days=1))
    assert [w["hours"] for w in doc["sleepWindows"]] == [2.0] * 3
    # From 22:00 plus up to two hours: 22:00 to 00:00.
    assert all(w["fromUtc"] >= "22:00" or w["fromUtc"] == "00:00" for w in doc["sleepWindows"])
    assert doc["published"]["vehicles"] == 3 * 132 + 7 * 144
    assert doc["replay"] is None


def test_a_replayed_run_adds_a_second_series_under_the_same_ids() -> None:
    fleet = Fleet(FleetConfig(meters=2, vehicles=3, replay_lag_s=1830))
    keys: Counter[tuple[str, str]] = Counter()
    n_ticks = 0
    for _, msgs in fleet.ticks(START, START + timedelta(hours=1)):
        n_ticks += 1
        for _, _, topic, payload, _, _ in msgs:
            keys[(topic, payload.decode().rsplit('"timestamp":', 1)[1])] += 1
    assert max(keys.values()) == 1  # two series, never one key twice
    # The replay from minute 31 on (its first tick past the lag), 30 s off the grid.
    assert len(keys) == 5 * n_ticks + 5 * 29
    assert fleet.replay_from == START + timedelta(minutes=31, seconds=30)
    truth = Truth(fleet).to_json(seed=1, interval_s=60, start=START, end=START)
    assert truth["replay"] == {"lagS": 1830, "from": "2026-03-01T00:31:30Z"}


@pytest.mark.parametrize(
    "config",
    [
        FleetConfig(meters=1, vehicles=1, replay_lag_s=120),  # a multiple: keys would clash
        FleetConfig(meters=1, vehicles=1, sleep_vehicles=2),
        FleetConfig(meters=1, vehicles=1, sleep_vehicles=1, sleep_hours=24),
    ],
)
def test_out_of_range_is_refused(config: FleetConfig) -> None:
    with pytest.raises(ValueError, match=r"sleep|replay"):
        config.check()
