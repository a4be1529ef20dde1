"""The fleet's energy per UTC day of a window: Σ AC of every meter, Σ DC of every vehicle, their
ratio, and the readings counted, for a trend on the dashboard.

Cheap by construction: open days are summed inside PostgreSQL from the 4-hour rollups (hourly
ones at the window's edges), so 30 days of 10,000 devices per kind are a few aggregates over
~1.8 M rollup rows and ~31 result rows, never per-device rows in Python; compacted days from
their hourly summaries (64 per day and kind), late readings added, as every report does.

Closed days' sums are kept a few minutes between calls (DayCache, held by the server), so a
dashboard refreshing a 30-day trend every minute reads only today's rows.

Whole hours only: a partial hour at either edge of the window is left out (an hour is the
finest step the summaries of compacted days keep). The ratio is the fleet's as a whole, over
every meter and every vehicle that reported on the day: assignments are not applied (that is
the fleet report's job, per vehicle), so a meter that feeds no vehicle of the fleet counts in
AC too.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from fleetctl.analytics import cold
from fleetctl.analytics.energy import DB
from fleetctl.analytics.freshness import freshness
from fleetctl.analytics.hourly import compacted_summaries, whole_hours
from fleetctl.analytics.pieces import split
from fleetctl.analytics.window import Window, iso
from fleetdb.cold.layout import DAY, day_start
from fleetdb.fold import marks
from fleetdb.kinds import by_name
from fleetdb.rollups import LEVELS, Kind, Level

_KINDS: tuple[Kind, ...] = ("meter", "vehicle")


@dataclass
class _Day:
    """One kind's figures of one day: Σ kWh in micro-kWh and readings."""

    kwh_u: int = 0
    readings: int = 0


def _sql(kind: Kind, level: Level | None) -> str:
    k = by_name(kind)
    if level is None:  # raw readings after the 10-minute level's watermark
        col, table, kwh, n = "ts", k.history, k.kwh, "count(*)"
    else:
        col, table, kwh, n = level.column, level.table(k), "kwh_sum", "sum(readings)"
    return f"""
SELECT (date_trunc('day', {col}, 'UTC') AT TIME ZONE 'UTC')::date,
       (sum({kwh}) * 1000000)::int8, {n}::int8
  FROM {table} WHERE {col} >= $1 AND {col} < $2 GROUP BY 1"""


async def _open(db: DB, kind: Kind, start: datetime, end: datetime, out: dict[date, _Day]) -> None:
    # Whole hours: 4-hour and hourly rollups, and only after the hourly level's watermark
    # (fleetdb.fold) 10-minute rows and the newest raw readings.
    folded = await marks(db)
    for piece in split(start, end, LEVELS, folded):
        for day, kwh_u, n in await db.fetch(_sql(kind, piece.level), piece.start, piece.end):
            out[day].kwh_u += kwh_u
            out[day].readings += n


async def _compacted(
    db: DB, kind: Kind, start: datetime, end: datetime, out: dict[date, _Day]
) -> None:
    async for day, h0, h1, sm in compacted_summaries(db, kind, start, end):
        out[day].kwh_u += int(sm.kwh[:, h0:h1].sum())
        out[day].readings += int(sm.n[:, h0:h1].sum())


class DayCache:
    """A closed day's rollup sums, kept `ttl_s` seconds: a dashboard that refreshes a 30-day
    trend every minute then reads only today's rows (a 30-day sum over 10,000 devices per kind
    is ~3.6 M rollup rows). A closed day can still change (a device uploading its buffer into
    an open partition): it shows after at most `ttl_s`. Late readings of compacted days are
    never cached. Bounded: the oldest entries go first."""

    def __init__(self, *, ttl_s: float = 600.0, max_entries: int = 512) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[tuple[Kind, datetime, datetime], tuple[float, _Day]] = {}

    def get(self, key: tuple[Kind, datetime, datetime]) -> _Day | None:
        """The sums of (kind, start, end) of one closed day, if fresh."""
        hit = self._entries.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            return None
        return hit[1]

    def put(self, key: tuple[Kind, datetime, datetime], value: _Day) -> None:
        """Remember the sums of one closed day's hours."""
        self._entries.pop(key, None)
        self._entries[key] = (time.monotonic(), _Day(value.kwh_u, value.readings))
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]


def _day_spans(lo: datetime, hi: datetime) -> list[tuple[date, datetime, datetime]]:
    out = []
    day = lo.date()
    while day_start(day) < hi:
        out.append((day, max(lo, day_start(day)), min(hi, day_start(day) + DAY)))
        day += timedelta(days=1)
    return out


async def _kind(
    db: DB, kind: Kind, lo: datetime, hi: datetime, cache: DayCache | None
) -> dict[date, _Day]:
    out: dict[date, _Day] = defaultdict(_Day)
    today = datetime.now(UTC).date()
    todo: list[tuple[date, datetime, datetime]] = []
    for day, s, e in _day_spans(lo, hi):
        hit = cache.get((kind, s, e)) if cache is not None and day < today else None
        if hit is None:
            todo.append((day, s, e))
        else:
            out[day] = _Day(hit.kwh_u, hit.readings)
    p = await cold.plan(db, kind, lo, hi)
    # Contiguous runs of the days to read, each cut at the edges of compacted days.
    runs: list[tuple[datetime, datetime]] = []
    for _, s, e in todo:
        if runs and runs[-1][1] == s:
            runs[-1] = (runs[-1][0], e)
        else:
            runs.append((s, e))
    for run_s, run_e in runs:
        for is_cold, s, e in cold.runs(run_s, run_e, p.compacted):
            await (_compacted if is_cold else _open)(db, kind, s, e, out)
    if cache is not None:
        for day, s, e in todo:
            if day < today:
                cache.put((kind, s, e), out[day])
    if p.late:
        for r in await cold.late_rows(db, kind, lo, hi):
            day = r[1].astimezone(UTC).date()
            out[day].kwh_u += r[2]
            out[day].readings += 1
    return out


async def fleet_daily(
    db: DB, window: Window, *, min_ac_kwh: float = 0.1, cache: DayCache | None = None
) -> dict[str, Any]:
    """{"window", "newestReadingAt", "dataAgeSeconds", "days": [{"day", "start", "end",
    "acKwh", "dcKwh", "efficiency", "efficiencyPercent", "meterReadings",
    "vehicleReadings"}]}: every UTC day the window's whole hours touch, in order (a day
    without data has zeros and a null efficiency). `efficiency` is null below `min_ac_kwh` of
    AC, as a vehicle's is. `cache`: closed days' sums kept between calls (DayCache). With a
    pool, the meters and the vehicles are summed on two connections at once."""
    lo, hi = whole_hours(window.start, window.end)
    days: list[dict[str, Any]] = []
    if lo < hi:
        if isinstance(db, asyncpg.Pool):
            meters, vehicles = await asyncio.gather(
                _kind(db, "meter", lo, hi, cache), _kind(db, "vehicle", lo, hi, cache)
            )
        else:  # one connection: one statement at a time
            meters = await _kind(db, "meter", lo, hi, cache)
            vehicles = await _kind(db, "vehicle", lo, hi, cache)
        for day, start, end in _day_spans(lo, hi):
            ac, dc = meters.get(day, _Day()), vehicles.get(day, _Day())
            ratio = dc.kwh_u / ac.kwh_u if ac.kwh_u >= min_ac_kwh * 1e6 and ac.kwh_u > 0 else None
            days.append(
                {
                    "day": day.isoformat(),
                    "start": iso(start),
                    "end": iso(end),
                    "acKwh": ac.kwh_u / 1e6,
                    "dcKwh": dc.kwh_u / 1e6,
                    "efficiency": None if ratio is None else round(ratio, 6),
                    "efficiencyPercent": None if ratio is None else round(ratio * 100, 2),
                    "meterReadings": ac.readings,
                    "vehicleReadings": dc.readings,
                }
            )
    fresh = await freshness(db, datetime.now(UTC))
    return {"window": window.as_json(), **fresh, "days": days}
