"""Report figures of a run of readings, and how two runs combine.

The same figures the rollups hold (Σ kWh, count; for a kind with them, Σ/min/max of its spread
column and the first and last value of its edge column with their timestamps: `temp_*` and
`soc_*`, named for the vehicle's), so a report can add up raw readings, cold blocks,
hourly summaries and late readings in any mix and get what one pass over the readings gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from fleetdb.cold.codec import Block
from fleetdb.kinds import DeviceKind


@dataclass(slots=True)
class Stats:
    """Figures of a set of readings of one device (meters use kwh_u and n only)."""

    kwh_u: int = 0
    n: int = 0
    temp_sum: float = 0.0
    temp_min: float | None = None
    temp_max: float | None = None
    first_ts: datetime | None = None
    soc_first: float | None = None
    last_ts: datetime | None = None
    soc_last: float | None = None

    def merge(self, o: Stats) -> None:
        """Add `o` (readings disjoint from this one's)."""
        if not o.n:
            return
        self.kwh_u += o.kwh_u
        self.n += o.n
        self.temp_sum += o.temp_sum
        if o.temp_min is not None and (self.temp_min is None or o.temp_min < self.temp_min):
            self.temp_min = o.temp_min
        if o.temp_max is not None and (self.temp_max is None or o.temp_max > self.temp_max):
            self.temp_max = o.temp_max
        if o.first_ts is not None and (self.first_ts is None or o.first_ts < self.first_ts):
            self.first_ts, self.soc_first = o.first_ts, o.soc_first
        if o.last_ts is not None and (self.last_ts is None or o.last_ts > self.last_ts):
            self.last_ts, self.soc_last = o.last_ts, o.soc_last


def slice_stats(block: Block, a: int, b: int, base: datetime, *, kind: DeviceKind) -> Stats:
    """Figures of readings [a, b) of a block whose hour starts at `base`."""
    if a >= b:
        return Stats()
    s = Stats(int(block.kwh_u[a:b].sum()), b - a)
    if kind.spread_at is not None:
        t = block.floats[kind.spread_at][a:b].astype(np.float64)
        s.temp_sum = float(t.sum())
        s.temp_min, s.temp_max = float(t.min()), float(t.max())
    if kind.edges_at is not None:
        soc = block.floats[kind.edges_at]
        s.first_ts = base + timedelta(microseconds=int(block.ts_us[a]))
        s.last_ts = base + timedelta(microseconds=int(block.ts_us[b - 1]))
        s.soc_first, s.soc_last = float(soc[a]), float(soc[b - 1])
    return s
