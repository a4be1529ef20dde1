"""Report figures from compacted days (blocks and hourly summaries) and from late readings.

fleetctl.energy splits every window at the edges of compacted days: open days are read as
before, compacted ones here. A whole hour of a compacted day comes from its summary (the
hourly rollup it was), a partial hour from the readings of its block, so a report never
decodes more than the edge hours of its window. Late readings (*_late) are added to any window:
they are disjoint from everything else by construction (fleetdb.cold.late).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from fleetdb.cold import blocks
from fleetdb.cold.codec import Block
from fleetdb.cold.layout import DAY, HOUR, LAYOUTS, day_start, group_of
from fleetdb.cold.stats import Stats, range_stats, slice_stats
from fleetdb.rollups import Kind

DB = asyncpg.Connection | asyncpg.Pool
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Plan:
    """Which days of a span are compacted, and whether late readings fall in it."""

    compacted: frozenset[date]
    late: bool

    @property
    def simple(self) -> bool:
        """Nothing to read here: the open path alone answers."""
        return not self.compacted and not self.late


async def plan(db: DB, kind: Kind, lo: datetime, hi: datetime) -> Plan:
    """The Plan of [lo, hi) for `kind`, in one round trip (inside the caller's snapshot)."""
    row = await db.fetchrow(
        f"""SELECT (SELECT array_agg(day) FROM fleet_days WHERE state = 'compacted'
                      AND day >= $1 AND day <= $2),
                   EXISTS (SELECT FROM {LAYOUTS[kind].late} WHERE ts >= $3 AND ts < $4)""",
        lo.date(),
        hi.date(),
        lo,
        hi,
    )
    if row is None:  # pragma: no cover - a SELECT without FROM always returns one row
        return Plan(frozenset(), late=False)
    return Plan(frozenset(row[0] or ()), bool(row[1]))


Run = tuple[bool, datetime, datetime]


def runs(start: datetime, end: datetime, compacted: frozenset[date]) -> list[Run]:
    """[start, end) cut at the edges of compacted days: (is_compacted, start, end) in order."""
    out: list[Run] = []
    at, end = start.astimezone(UTC), end.astimezone(UTC)
    while at < end:
        day = at.date()
        cold = day in compacted
        stop = min(day_start(day) + DAY, end)
        if out and out[-1][0] == cold:
            out[-1] = (cold, out[-1][1], stop)
        else:
            out.append((cold, at, stop))
        at = stop
    return out


def _hours(start: datetime, end: datetime) -> Iterable[tuple[datetime, datetime, datetime]]:
    """(hour start, lo, hi): each UTC hour [start, end) touches, with the part inside."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour, max(start, hour), min(end, hour + HOUR)
        hour += HOUR


def _summary_stats(row: Any, i: int, *, vehicle: bool) -> Stats:
    n = row["n"][i]
    if not n:
        return Stats()
    s = Stats(row["kwh"][i], n)
    if vehicle:
        s.temp_sum = row["temp_sum"][i]
        s.temp_min, s.temp_max = row["temp_min"][i], row["temp_max"][i]
        s.first_ts, s.soc_first = row["first_ts"][i], row["soc_first"][i]
        s.last_ts, s.soc_last = row["last_ts"][i], row["soc_last"][i]
    return s


def _range_stats(block: Block | None, dev: str, hour: datetime, lo: datetime, hi: datetime,
                 *, vehicle: bool) -> Stats:  # fmt: skip
    """Readings of `dev` with ts in [lo, hi) inside the block of `hour`."""
    if block is None:
        return Stats()
    span = block.spans().get(dev)
    if span is None:
        return Stats()
    return _span_stats(block, span, hour, lo, hi, vehicle=vehicle)


def _span_stats(block: Block, span: tuple[int, int], hour: datetime, lo: datetime, hi: datetime,
                *, vehicle: bool) -> Stats:  # fmt: skip
    a, b = span
    within = block.ts_us[a:b]
    first = a + int(np.searchsorted(within, (lo - hour) // _US))
    last = a + int(np.searchsorted(within, (hi - hour) // _US))
    return slice_stats(block, first, last, hour, vehicle=vehicle)


async def segment_stats(
    db: DB, kind: Kind, segments: list[tuple[int, str, datetime, datetime]], *, by_hour: bool
) -> dict[Any, Stats]:
    """Figures per segment key (or per (key, UTC hour)) of segments lying in compacted days."""
    lay = LAYOUTS[kind]
    vehicle = kind == "vehicle"
    want_rows: set[tuple[str, date]] = set()
    want_blocks: set[tuple[date, int, int]] = set()
    for _, dev, s, e in segments:
        for hour, lo, hi in _hours(s, e):
            if lo == hour and hi == hour + HOUR:
                want_rows.add((dev, hour.date()))
            else:
                want_blocks.add((hour.date(), hour.hour, group_of(dev)))
    summaries: dict[tuple[str, date], Any] = {}
    if want_rows:
        devs, days = zip(*sorted(want_rows), strict=True)
        rows = await db.fetch(
            f"""SELECT c.* FROM {lay.hours} c
                  JOIN unnest($1::text[], $2::date[]) AS u(dev, day)
                    ON c.{lay.device} = u.dev AND c.day = u.day
                 WHERE c.day >= $3 AND c.day <= $4""",
            list(devs), list(days), min(days), max(days),
        )  # fmt: skip
        summaries = {(r[lay.device], r["day"]): r for r in rows}
    decoded: dict[tuple[date, int, int], Block] = {}
    for day, hr in sorted({(d, h) for d, h, _ in want_blocks}):
        groups = {g for d, h, g in want_blocks if d == day and h == hr}
        for g, blk in (await blocks.load(db, kind, day, hr, groups)).items():
            decoded[(day, hr, g)] = blk
    out: dict[Any, Stats] = {}
    for key, dev, s, e in segments:
        for hour, lo, hi in _hours(s, e):
            if lo == hour and hi == hour + HOUR:
                row = summaries.get((dev, hour.date()))
                st = Stats() if row is None else _summary_stats(row, hour.hour, vehicle=vehicle)
            else:
                found = decoded.get((hour.date(), hour.hour, group_of(dev)))
                st = _range_stats(found, dev, hour, lo, hi, vehicle=vehicle)
            if st.n:
                out.setdefault((key, hour) if by_hour else key, Stats()).merge(st)
    return out


_LATE_COLUMNS: dict[Kind, str] = {
    "meter": "meter_id, ts, (kwh_consumed_ac * 1000000)::bigint",
    "vehicle": "vehicle_id, ts, (kwh_delivered_dc * 1000000)::bigint, soc, battery_temp",
}


def _late_stats(r: Any, *, vehicle: bool) -> Stats:
    s = Stats(r[2], 1)
    if vehicle:
        s.temp_sum = s.temp_min = s.temp_max = r[4]
        s.first_ts = s.last_ts = r[1]
        s.soc_first = s.soc_last = r[3]
    return s


async def late_rows(db: DB, kind: Kind, lo: datetime, hi: datetime,
                    devices: list[str] | None = None) -> list[Any]:  # fmt: skip
    """Late readings in [lo, hi), of `devices` or of all."""
    lay = LAYOUTS[kind]
    sql = f"SELECT {_LATE_COLUMNS[kind]} FROM {lay.late} WHERE ts >= $1 AND ts < $2"
    if devices is None:
        return list(await db.fetch(sql, lo, hi))
    return list(await db.fetch(sql + f" AND {lay.device} = ANY($3::text[])", lo, hi, devices))


async def late_segment_stats(
    db: DB, kind: Kind, segments: list[tuple[int, str, datetime, datetime]], *, by_hour: bool
) -> dict[Any, Stats]:
    """Figures of late readings per segment key (or (key, UTC hour))."""
    lo = min(s for _, _, s, _ in segments)
    hi = max(e for _, _, _, e in segments)
    rows = await late_rows(db, kind, lo, hi, sorted({d for _, d, _, _ in segments}))
    vehicle = kind == "vehicle"
    out: dict[Any, Stats] = {}
    for r in rows:
        for key, dev, s, e in segments:
            if r[0] == dev and s <= r[1] < e:
                hour = r[1].replace(minute=0, second=0, microsecond=0)
                out.setdefault((key, hour) if by_hour else key, Stats()).merge(
                    _late_stats(r, vehicle=vehicle)
                )
    return out


async def late_fleet(db: DB, kind: Kind, start: datetime, end: datetime) -> dict[str, Stats]:
    """Figures of late readings per device over [start, end)."""
    vehicle = kind == "vehicle"
    out: dict[str, Stats] = {}
    for r in await late_rows(db, kind, start, end):
        out.setdefault(r[0], Stats()).merge(_late_stats(r, vehicle=vehicle))
    return out


_WHOLE_METER = """
SELECT c.meter_id, s.k, s.n, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM meter_cold_hours c,
       LATERAL (SELECT sum(k)::bigint AS k, sum(n)::int AS n
                  FROM unnest(c.kwh[$2:$3], c.n[$2:$3]) AS u(k, n)) s
 WHERE c.day = $1 AND s.n > 0
"""

_WHOLE_VEHICLE = """
SELECT c.vehicle_id, s.k, s.n, s.t, s.lo, s.hi, s.f, c.soc_first[array_position(c.first_ts, s.f)],
       s.l, c.soc_last[array_position(c.last_ts, s.l)]
  FROM vehicle_cold_hours c,
       LATERAL (SELECT sum(k)::bigint AS k, sum(n)::int AS n, sum(t) AS t, min(lo) AS lo,
                       max(hi) AS hi, min(f) AS f, max(l) AS l
                  FROM unnest(c.kwh[$2:$3], c.n[$2:$3], c.temp_sum[$2:$3], c.temp_min[$2:$3],
                              c.temp_max[$2:$3], c.first_ts[$2:$3], c.last_ts[$2:$3])
                       AS u(k, n, t, lo, hi, f, l)) s
 WHERE c.day = $1 AND s.n > 0
"""


async def fleet_stats(db: DB, kind: Kind, start: datetime, end: datetime) -> dict[str, Stats]:
    """Figures per device over [start, end), which lies in compacted days."""
    vehicle = kind == "vehicle"
    out: dict[str, Stats] = {}
    sql = _WHOLE_VEHICLE if vehicle else _WHOLE_METER
    day = start.date()
    while day_start(day) < end:
        d0 = day_start(day)
        whole = []
        for hour, lo, hi in _hours(max(start, d0), min(end, d0 + DAY)):
            if lo == hour and hi == hour + HOUR:
                whole.append(hour.hour)
                continue
            # A partial hour at an edge: the readings of every block of that hour.
            lo_us, hi_us = (lo - hour) // _US, (hi - hour) // _US
            for block in (await blocks.load(db, kind, day, hour.hour)).values():
                for dev, st in range_stats(block, lo_us, hi_us, hour, vehicle=vehicle):
                    got = out.get(dev)
                    if got is None:
                        out[dev] = st
                    else:
                        got.merge(st)
        if whole:
            # Whole hours are contiguous: summary array elements min+1 .. max+1.
            for r in await db.fetch(sql, day, whole[0] + 1, whole[-1] + 1):
                st = Stats(r[1], r[2])
                if vehicle:
                    st.temp_sum, st.temp_min, st.temp_max = r[3], r[4], r[5]
                    st.first_ts, st.soc_first, st.last_ts, st.soc_last = r[6], r[7], r[8], r[9]
                got = out.get(r[0])
                if got is None:
                    out[r[0]] = st
                else:
                    got.merge(st)
        day += timedelta(days=1)
    return out
