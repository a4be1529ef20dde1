"""Every device's energy and reading count per whole UTC hour of a window, fleet-wide: hourly
rollups for open days, summaries for compacted days, plus late readings. What the charger
diagnosis fits (fleetctl.analytics.chargers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetctl.analytics import cold
from fleetctl.analytics.energy import DB
from fleetctl.analytics.pieces import split
from fleetdb.cold import summary_store
from fleetdb.cold.blocks import from_array_send
from fleetdb.cold.layout import HOUR, day_start
from fleetdb.cold.summary import Summary
from fleetdb.fold import marks
from fleetdb.kinds import by_name
from fleetdb.rollups import HOURLY, TEN_MINUTES, Kind, Level

Arr = npt.NDArray[Any]


@dataclass
class Hourly:
    """Row i: device devices[i] in the hour starting at hour_s[i] (Unix seconds)."""

    devices: list[str]
    hour_s: Arr
    kwh_u: Arr
    n: Arr


def _sql(kind: Kind, level: Level | None = HOURLY) -> str:
    k = by_name(kind)
    dev = k.device
    if level is HOURLY:
        return f"""
SELECT array_agg({dev}), array_send(array_agg(extract(epoch FROM hour)::int8)),
       array_send(array_agg((kwh_sum * 1000000)::int8)), array_send(array_agg(readings::int8))
  FROM {HOURLY.table(kind)} WHERE hour >= $1 AND hour < $2"""
    # After the hourly level's watermark (fleetdb.fold): 10-minute rows, then raw readings,
    # summed per hour.
    if level is None:
        col, table, kwh, n = "ts", k.history, k.kwh, "count(*)"
    else:
        col, table, kwh, n = level.column, level.table(k), "kwh_sum", "sum(readings)"
    return f"""
SELECT array_agg(d), array_send(array_agg(h)), array_send(array_agg(kwh)), array_send(array_agg(n))
  FROM (SELECT {dev} AS d, extract(epoch FROM date_trunc('hour', {col}, 'UTC'))::int8 AS h,
               (sum({kwh}) * 1000000)::int8 AS kwh, {n}::int8 AS n
          FROM {table} WHERE {col} >= $1 AND {col} < $2 GROUP BY 1, 2) x"""


def unix_s(t: datetime) -> int:
    """Whole seconds since the Unix epoch (what Hourly.hour_s holds)."""
    return int(t.timestamp())


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """(lo, hi): the whole UTC hours of [start, end), a partial hour at either edge left out
    (lo >= hi when there is none)."""
    lo = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if lo < start:
        lo += HOUR
    hi = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return lo, hi


async def compacted_summaries(
    db: DB, kind: Kind, start: datetime, end: datetime
) -> AsyncIterator[tuple[date, int, int, Summary]]:
    """Each summary of the compacted days of whole hours [start, end): (its day, the first hour
    of the day in the span, the hour after its last, the summary of one group of devices)."""
    day = start.date()
    while day_start(day) < end:
        d0 = day_start(day)
        h0 = max(0, (start - d0) // HOUR)
        h1 = min(24, -((d0 - end) // HOUR))
        for sm in (await summary_store.load(db, kind, day)).values():
            yield day, h0, h1, sm
        day += timedelta(days=1)


async def fleet_hourly(db: DB, kind: Kind, start: datetime, end: datetime) -> Hourly:
    """Whole hours of [start, end) only: a partial hour at an edge is left out."""
    lo, hi = whole_hours(start, end)
    parts: list[Hourly] = []
    if lo < hi:
        # Read before the rollups: a watermark only moves on, and buckets below it are final.
        folded = await marks(db)
        p = await cold.plan(db, kind, lo, hi)
        for is_cold, s, e in cold.runs(lo, hi, p.compacted):
            if is_cold:
                parts += await _compacted(db, kind, s, e)
                continue
            for piece in split(s, e, (TEN_MINUTES, HOURLY), folded):
                [row] = await db.fetch(_sql(kind, piece.level), piece.start, piece.end)
                parts.append(
                    Hourly(list(row[0] or ()), *(from_array_send(row[i], "i8") for i in (1, 2, 3)))
                )
        if p.late:
            rows = await cold.late_rows(db, kind, lo, hi)
            parts.append(
                Hourly(
                    [r[0] for r in rows],
                    np.asarray([unix_s(r[1]) // 3600 * 3600 for r in rows], np.int64),
                    np.asarray([r[2] for r in rows], np.int64),
                    np.ones(len(rows), np.int64),
                )
            )
    if not parts:
        return Hourly([], *(np.zeros(0, np.int64) for _ in range(3)))
    return Hourly(
        [d for p in parts for d in p.devices],
        np.concatenate([p.hour_s for p in parts]),
        np.concatenate([p.kwh_u for p in parts]),
        np.concatenate([p.n for p in parts]),
    )


async def _compacted(db: DB, kind: Kind, start: datetime, end: datetime) -> list[Hourly]:
    out = []
    async for day, h0, h1, sm in compacted_summaries(db, kind, start, end):
        rows, hours = np.nonzero(sm.n[:, h0:h1])
        out.append(
            Hourly(
                [sm.devices[i] for i in rows.tolist()],
                unix_s(day_start(day)) + (hours + h0) * 3600,
                sm.kwh[rows, hours + h0],
                sm.n[rows, hours + h0],
            )
        )
    return out
