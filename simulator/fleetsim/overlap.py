"""Two ways real telemetry is messier than one clean run, as simulator knobs (issue 25).

* Telematics sleep: `sleep_vehicles` vehicles stop reporting every night for `sleep_hours`
  (from 22:00 UTC plus up to two hours, drawn from each vehicle's own stream). Their physics
  go on (a vehicle may charge while its telematics sleep: AC at its meter without DC); their
  readings in the window are never published, so the truth counts none of them.
* A replayed overlapping run: `replay_lag_s` > 0 publishes, beside the run, the same fleet
  started that many seconds later (its initial state again), so an id carries two series for
  the overlap. The lag must not be a multiple of the interval: both series' readings are then
  distinct keys, all stored, and the truth (which counts both) still equals the database.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

NIGHT_START_MIN = 22 * 60
NIGHT_JITTER_MIN = 120
DAY_MIN = 24 * 60

Window = tuple[int, int]
"""(first minute of the UTC day, minutes) of one vehicle's nightly sleep."""


def sleep_windows(
    rng_of: Callable[[str, int], random.Random], vehicles: int, n: int, hours: float
) -> dict[int, Window]:
    """The sleeping vehicles (chosen by a rank key from each one's stream) and their windows."""
    if n <= 0 or hours <= 0:
        return {}
    keys = [rng_of("sleep", j).random() for j in range(vehicles)]
    chosen = sorted(sorted(range(vehicles), key=keys.__getitem__)[:n])
    minutes = round(hours * 60)
    return {
        j: (NIGHT_START_MIN + rng_of("sleep-start", j).randrange(NIGHT_JITTER_MIN + 1), minutes)
        for j in chosen
    }


def asleep_at(windows: dict[int, Window], ts: datetime) -> set[int]:
    """The vehicles whose window holds `ts` (a window may run past midnight)."""
    if not windows:
        return set()
    minute = ts.hour * 60 + ts.minute
    return {j for j, (start, length) in windows.items() if (minute - start) % DAY_MIN < length}
