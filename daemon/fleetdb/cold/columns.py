"""Fleet-wide figures as columns: one entry per device and piece of a window, combined with
numpy into one entry per device. A fleet report over compacted days reads ~10,000 devices per
piece; a Python object per device and piece cost more than all the decoding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetdb.cold.codec import Block
from fleetdb.cold.summary import Summary
from fleetdb.kinds import DeviceKind

Arr = npt.NDArray[Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
_NO_TS = np.iinfo(np.int64).max


def us_of(t: datetime) -> int:
    """Microseconds since the Unix epoch."""
    return (t - EPOCH) // US


@dataclass
class Cols:
    """Figures of devices[i] at index i; timestamps in µs since the epoch (only for kinds with
    a spread column: temp_*; with an edge column: first_us, soc_first, last_us, soc_last)."""

    devices: list[str]
    kwh: Arr
    n: Arr
    temp_sum: Arr | None = None
    temp_min: Arr | None = None
    temp_max: Arr | None = None
    first_us: Arr | None = None
    soc_first: Arr | None = None
    last_us: Arr | None = None
    soc_last: Arr | None = None


def from_block(block: Block, lo_us: int, hi_us: int, hour_us: int, *, kind: DeviceKind) -> Cols:
    """Every device of a block over its readings with ts in [lo_us, hi_us) (µs from the
    block's hour, which starts at `hour_us` since the epoch); devices without any left out."""
    if not len(block):
        return Cols([], np.zeros(0, np.int64), np.zeros(0, np.int64))
    starts = block.starts()
    inside = (block.ts_us >= lo_us) & (block.ts_us < hi_us)
    counts = np.add.reduceat(inside.astype(np.int64), starts)
    keep = np.flatnonzero(counts)
    kwh = np.add.reduceat(np.where(inside, block.kwh_u, 0), starts)[keep]
    out = Cols([block.devices[i] for i in keep.tolist()], kwh, counts[keep])
    if kind.spread_at is not None:
        t64 = block.floats[kind.spread_at].astype(np.float64)
        out.temp_sum = np.add.reduceat(np.where(inside, t64, 0.0), starts)[keep]
        out.temp_min = np.minimum.reduceat(np.where(inside, t64, np.inf), starts)[keep]
        out.temp_max = np.maximum.reduceat(np.where(inside, t64, -np.inf), starts)[keep]
    if kind.edges_at is not None:
        soc = block.floats[kind.edges_at]
        idx = np.arange(len(block))
        first = np.minimum.reduceat(np.where(inside, idx, len(block)), starts)[keep]
        last = np.maximum.reduceat(np.where(inside, idx, -1), starts)[keep]
        out.first_us, out.last_us = block.ts_us[first] + hour_us, block.ts_us[last] + hour_us
        out.soc_first = soc[first].astype(np.float64)
        out.soc_last = soc[last].astype(np.float64)
    return out


def from_summary(s: Summary, h0: int, h1: int, day_us: int, *, kind: DeviceKind) -> Cols:
    """Every device of a summary over whole hours [h0, h1) of its day (which starts at
    `day_us` since the epoch); devices without readings left out."""
    n = s.n[:, h0:h1]
    counts = n.sum(axis=1)
    keep = np.flatnonzero(counts)
    out = Cols([s.devices[i] for i in keep.tolist()], s.kwh[keep, h0:h1].sum(axis=1), counts[keep])
    has = n[keep] > 0
    if kind.spread is not None:
        out.temp_sum = np.where(has, s.temp_sum[keep, h0:h1], 0.0).sum(axis=1)
        t_min = s.temp_min[keep, h0:h1].astype(np.float64)
        t_max = s.temp_max[keep, h0:h1].astype(np.float64)
        out.temp_min = np.where(has, t_min, np.inf).min(axis=1)
        out.temp_max = np.where(has, t_max, -np.inf).max(axis=1)
    if kind.edges is not None:
        fh = h0 + has.argmax(axis=1)
        lh = h1 - 1 - has[:, ::-1].argmax(axis=1)
        out.first_us = s.first_us[keep, fh] + day_us
        out.last_us = s.last_us[keep, lh] + day_us
        out.soc_first = s.soc_first[keep, fh].astype(np.float64)
        out.soc_last = s.soc_last[keep, lh].astype(np.float64)
    return out


def combine(parts: list[Cols], *, kind: DeviceKind) -> Cols:
    """One entry per device: sums and counts added, min/max kept, first/last by timestamp."""
    parts = [p for p in parts if p.devices]
    if not parts:
        return Cols([], np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(parts) == 1:
        return parts[0]
    index: dict[str, int] = {}
    names: list[str] = []
    for p in parts:
        for d in p.devices:
            if d not in index:
                index[d] = len(names)
                names.append(d)
    inv = np.fromiter((index[d] for p in parts for d in p.devices), dtype=np.int64)
    m = len(names)

    def cat(name: str) -> Arr:
        return np.concatenate([getattr(p, name) for p in parts])

    kwh = np.zeros(m, np.int64)
    np.add.at(kwh, inv, cat("kwh"))
    n = np.zeros(m, np.int64)
    np.add.at(n, inv, cat("n"))
    out = Cols(names, kwh, n)
    if kind.spread is not None:
        out.temp_sum = np.zeros(m)
        np.add.at(out.temp_sum, inv, cat("temp_sum"))
        out.temp_min = np.full(m, np.inf)
        np.minimum.at(out.temp_min, inv, cat("temp_min"))
        out.temp_max = np.full(m, -np.inf)
        np.maximum.at(out.temp_max, inv, cat("temp_max"))
    if kind.edges is not None:
        f_us, l_us = cat("first_us"), cat("last_us")
        out.first_us = np.full(m, _NO_TS, np.int64)
        np.minimum.at(out.first_us, inv, f_us)
        out.last_us = np.full(m, -_NO_TS, np.int64)
        np.maximum.at(out.last_us, inv, l_us)
        out.soc_first = np.zeros(m)
        out.soc_last = np.zeros(m)
        hit = f_us == out.first_us[inv]
        out.soc_first[inv[hit]] = cat("soc_first")[hit]
        hit = l_us == out.last_us[inv]
        out.soc_last[inv[hit]] = cat("soc_last")[hit]
    return out


def from_records(
    devices: list[str], kwh: list[int], n: list[int], vehicle_cols: list[list[Any]] | None = None
) -> Cols:
    """Cols from plain lists; vehicle_cols = [temp_sum, temp_min, temp_max, first_ts (datetime),
    soc_first, last_ts (datetime), soc_last]."""
    out = Cols(list(devices), np.asarray(kwh, np.int64), np.asarray(n, np.int64))
    if vehicle_cols is not None:
        t, lo, hi, f, sf, la, sl = vehicle_cols
        out.temp_sum = np.asarray(t, np.float64)
        out.temp_min = np.asarray(lo, np.float64)
        out.temp_max = np.asarray(hi, np.float64)
        out.first_us = np.asarray([us_of(x) for x in f], np.int64)
        out.soc_first = np.asarray(sf, np.float64)
        out.last_us = np.asarray([us_of(x) for x in la], np.int64)
        out.soc_last = np.asarray(sl, np.float64)
    return out
