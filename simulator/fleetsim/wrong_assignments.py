"""Wrong assignments: vehicles whose registered meter (what the simulator writes into
vehicle_meter_assignments) is not the meter they really charge at, as a mapping table with
mistakes has them. The truth file names them; the assignment check must find them."""

from __future__ import annotations

import random
from collections.abc import Callable

Streams = Callable[[str, int], random.Random]
"""(purpose, vehicle index) -> that vehicle's own random stream for the purpose."""


def registered_meters(
    stream: Streams, vehicle_meter: list[int], meters: int, wrong: int
) -> list[int]:
    """The meter registered for each vehicle: its real one, except for exactly `wrong` vehicles
    (chosen by a rank key from each vehicle's own stream, so the choice is stable for a seed),
    which get another meter drawn uniformly from the rest."""
    registered = list(vehicle_meter)
    if wrong <= 0 or meters < 2:
        return registered
    keys = [stream("wrong-pick", j).random() for j in range(len(vehicle_meter))]
    for j in sorted(range(len(vehicle_meter)), key=keys.__getitem__)[:wrong]:
        other = stream("wrong-meter", j).randrange(meters - 1)
        registered[j] = other + (other >= vehicle_meter[j])  # any meter but the real one
    return registered
