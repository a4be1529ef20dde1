"""Hourly summaries of compacted days: for each device group and day, every device's 24 hourly
rollups as [devices x 24] columns in one encoded row (fleetdb.cold.codec).

Why a row per group and not per device: a fleet report's whole hours then decode 64 rows per
day (~10,000 devices) with numpy, ~10 ms, where 10,000 rows of PostgreSQL arrays unnested per
row took ~330 ms; one vehicle's report decodes one group (~160 devices), well under 1 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetdb.cold.codec import CorruptBlockError, decode_columns, encode_columns
from fleetdb.cold.stats import Stats
from fleetdb.kinds import DeviceKind

HOURS = 24
Arr = npt.NDArray[Any]
_US = timedelta(microseconds=1)


def _zeros(dtype: str) -> Arr:
    return np.zeros((0, HOURS), dtype=dtype)


@dataclass
class Summary:
    """The hourly rollups of the devices of one group on one day. An hour without readings has
    n = 0 (its other figures are 0). first_us/last_us: the hour's first and last reading, in
    microseconds from the day's start."""

    devices: list[str] = field(default_factory=list)
    n: Arr = field(default_factory=lambda: _zeros("i8"))
    kwh: Arr = field(default_factory=lambda: _zeros("i8"))
    # Kinds with a spread column (temp_*) and an edge column (soc_*, first_us, last_us) only:
    temp_sum: Arr = field(default_factory=lambda: _zeros("f8"))
    temp_min: Arr = field(default_factory=lambda: _zeros("f4"))
    temp_max: Arr = field(default_factory=lambda: _zeros("f4"))
    soc_first: Arr = field(default_factory=lambda: _zeros("f4"))
    soc_last: Arr = field(default_factory=lambda: _zeros("f4"))
    first_us: Arr = field(default_factory=lambda: _zeros("i8"))
    last_us: Arr = field(default_factory=lambda: _zeros("i8"))

    def row_of(self, device: str, *, kind: DeviceKind) -> int:
        """The device's row, added (all hours empty) when it has none."""
        try:
            return self.devices.index(device)
        except ValueError:
            pass
        i = sum(1 for d in self.devices if d < device)
        self.devices.insert(i, device)
        for name in columns(kind):
            col = getattr(self, name)
            setattr(self, name, np.insert(col, i, np.zeros(HOURS, dtype=col.dtype), axis=0))
        return i

    def set_hour(
        self, row: int, hour: int, s: Stats, day_start: datetime, *, kind: DeviceKind
    ) -> None:
        """Replace one hour of one device with `s`."""
        self.n[row, hour] = s.n
        self.kwh[row, hour] = s.kwh_u
        if not s.n:
            return
        if kind.spread is not None:
            self.temp_sum[row, hour] = s.temp_sum
            self.temp_min[row, hour] = s.temp_min
            self.temp_max[row, hour] = s.temp_max
        if kind.edges is not None:
            self.soc_first[row, hour] = s.soc_first
            self.soc_last[row, hour] = s.soc_last
            if s.first_ts is not None and s.last_ts is not None:  # set whenever s.n
                self.first_us[row, hour] = (s.first_ts - day_start) // _US
                self.last_us[row, hour] = (s.last_ts - day_start) // _US


_SPREAD = ("temp_sum", "temp_min", "temp_max")
_EDGES = ("soc_first", "soc_last", "first_us", "last_us")


def columns(kind: DeviceKind) -> tuple[str, ...]:
    """The Summary columns a kind fills."""
    return (
        "n",
        "kwh",
        *(_SPREAD if kind.spread is not None else ()),
        *(_EDGES if kind.edges is not None else ()),
    )


def encode_summary(s: Summary, *, kind: DeviceKind) -> bytes:
    """One row's bytes. Ints: n, kwh, [first_us, last_us], [temp_sum's bits]; floats:
    [temp_min, temp_max], [soc_first, soc_last] (the vehicle's order, the format's first)."""
    ints = [s.n, s.kwh]
    floats = []
    if kind.edges is not None:
        ints += [s.first_us, s.last_us]
    if kind.spread is not None:
        ints.append(np.ascontiguousarray(s.temp_sum).view(np.int64))
        floats += [s.temp_min, s.temp_max]
    if kind.edges is not None:
        floats += [s.soc_first, s.soc_last]
    return encode_columns(s.devices, [c.ravel() for c in ints], [c.ravel() for c in floats])


def decode_summary(data: bytes, *, kind: DeviceKind) -> Summary:
    """What encode_summary was given. Raises CorruptBlockError on anything else."""
    devices, ints, floats = decode_columns(data)
    spread, edges = kind.spread is not None, kind.edges is not None
    want = (2 + 2 * edges + spread, 2 * spread + 2 * edges)
    sizes = [len(c) for c in ints] + [len(c) for c in floats]
    if (len(ints), len(floats)) != want or any(x != len(devices) * HOURS for x in sizes):
        raise CorruptBlockError("not an hourly summary")
    shape = (len(devices), HOURS)
    s = Summary(devices, ints[0].reshape(shape), ints[1].reshape(shape))
    more_ints, more_floats = iter(ints[2:]), iter(floats)
    if edges:
        s.first_us, s.last_us = next(more_ints).reshape(shape), next(more_ints).reshape(shape)
    if spread:
        s.temp_sum = next(more_ints).view(np.float64).reshape(shape)
        s.temp_min, s.temp_max = next(more_floats).reshape(shape), next(more_floats).reshape(shape)
    if edges:
        s.soc_first, s.soc_last = next(more_floats).reshape(shape), next(more_floats).reshape(shape)
    return s


def hour_stats(s: Summary, row: int, hour: int, day_start: datetime, *, kind: DeviceKind) -> Stats:
    """One device's figures for one whole hour."""
    n = int(s.n[row, hour])
    if not n:
        return Stats()
    st = Stats(int(s.kwh[row, hour]), n)
    if kind.spread is not None:
        st.temp_sum = float(s.temp_sum[row, hour])
        st.temp_min, st.temp_max = float(s.temp_min[row, hour]), float(s.temp_max[row, hour])
    if kind.edges is not None:
        st.first_ts = day_start + int(s.first_us[row, hour]) * _US
        st.last_ts = day_start + int(s.last_us[row, hour]) * _US
        st.soc_first, st.soc_last = float(s.soc_first[row, hour]), float(s.soc_last[row, hour])
    return st


def build(devices: list[str], hours: Arr, cols: dict[str, Arr], *, kind: DeviceKind) -> Summary:
    """A Summary from hourly rollup rows: `devices[i]` and `hours[i]` (0-23) name row i of
    every column in `cols` (those of columns(kind))."""
    names = sorted(set(devices))
    index = {d: i for i, d in enumerate(names)}
    rows = np.fromiter((index[d] for d in devices), dtype=np.int64, count=len(devices))
    s = Summary(names)
    for name in columns(kind):
        col = cols[name]
        full = np.zeros((len(names), HOURS), dtype=col.dtype)
        full[rows, hours] = col
        setattr(s, name, full)
    return s
