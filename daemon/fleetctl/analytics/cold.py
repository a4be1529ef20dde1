"""Report figures from compacted days (blocks and hourly summaries) and from late readings.

fleetctl.analytics.energy splits every window at the edges of compacted days: open days are read as
before, compacted ones here. A whole hour of a compacted day comes from its summary (the
hourly rollup it was), a partial hour from the readings of its block, so a report never
decodes more than the edge hours of its window. Late readings (*_late) are added to any window:
they are disjoint from everything else by construction (fleetdb.cold.late).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from fleetdb.cold import blocks, summary_store
from fleetdb.cold.codec import Block
from fleetdb.cold.columns import Cols, from_block, from_records, from_summary, us_of
from fleetdb.cold.groups import LEGACY_GROUPS, group_of
from fleetdb.cold.layout import DAY, HOUR, LAYOUTS, day_start
from fleetdb.cold.stats import Stats, slice_stats
from fleetdb.cold.summary import Summary, hour_stats
from fleetdb.kinds import DeviceKind
from fleetdb.rollups import Kind

DB = asyncpg.Connection | asyncpg.Pool
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Plan:
    """Which days of a span are compacted (with their device group counts), and whether late
    readings fall in it."""

    compacted: frozenset[date]
    late: bool
    groups: Mapping[date, int] = field(default_factory=dict)

    @property
    def simple(self) -> bool:
        """Nothing to read here: the open path alone answers."""
        return not self.compacted and not self.late


async def plan(db: DB, kind: Kind, lo: datetime, hi: datetime) -> Plan:
    """The Plan of [lo, hi) for `kind`, in one round trip (inside the caller's snapshot)."""
    row = await db.fetchrow(
        f"""SELECT c.days, c.groups,
                   EXISTS (SELECT FROM {LAYOUTS[kind].late} WHERE ts >= $3 AND ts < $4)
              FROM (SELECT array_agg(f.day ORDER BY f.day) AS days,
                           array_agg(coalesce(g.groups, $6) ORDER BY f.day) AS groups
                      FROM fleet_days f
                      LEFT JOIN fleet_cold_groups g ON g.day = f.day AND g.kind = $5
                     WHERE f.state = 'compacted' AND f.day >= $1 AND f.day <= $2) c""",
        lo.date(),
        hi.date(),
        lo,
        hi,
        kind,
        LEGACY_GROUPS,
    )
    if row is None:  # pragma: no cover - an aggregate without GROUP BY always returns one row
        return Plan(frozenset(), late=False)
    days = list(row[0] or ())
    return Plan(frozenset(days), bool(row[2]), dict(zip(days, row[1] or (), strict=True)))


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


def _range_stats(
    block: Block | None, dev: str, hour: datetime, lo: datetime, hi: datetime, *, kind: DeviceKind
) -> Stats:
    """Readings of `dev` with ts in [lo, hi) inside the block of `hour`."""
    if block is None:
        return Stats()
    span = block.spans().get(dev)
    if span is None:
        return Stats()
    return _span_stats(block, span, hour, lo, hi, kind=kind)


def _span_stats(
    block: Block,
    span: tuple[int, int],
    hour: datetime,
    lo: datetime,
    hi: datetime,
    *,
    kind: DeviceKind,
) -> Stats:
    a, b = span
    within = block.ts_us[a:b]
    first = a + int(np.searchsorted(within, (lo - hour) // _US))
    last = a + int(np.searchsorted(within, (hi - hour) // _US))
    return slice_stats(block, first, last, hour, kind=kind)


async def _load_for_devices(
    db: DB, kind: Kind, want_sums: set[tuple[date, int]], want_blocks: set[tuple[date, int, int]]
) -> tuple[dict[tuple[date, int], Summary], dict[tuple[date, int, int], Block]]:
    """The summaries (day, group) and blocks (day, hour, group) a few devices' segments need,
    in one round trip, decoded through the content-keyed caches."""
    if not want_sums and not want_blocks:
        return {}, {}
    lay = LAYOUTS[kind]
    days = [d for d, _ in want_sums] + [d for d, _, _ in want_blocks]
    bk = sorted(want_blocks)
    sk = sorted(want_sums)
    rows = await db.fetch(
        f"""SELECT false, b.day, b.hour, b.grp, b.body FROM {lay.cold} b
              JOIN unnest($1::date[], $2::int2[], $3::int2[]) AS u(d, h, g)
                ON b.day = u.d AND b.hour = u.h AND b.grp = u.g
             WHERE b.day >= $6 AND b.day <= $7
            UNION ALL
            SELECT true, s.day, 0::int2, s.grp, s.body FROM {lay.hours} s
              JOIN unnest($4::date[], $5::int2[]) AS u(d, g) ON s.day = u.d AND s.grp = u.g
             WHERE s.day >= $6 AND s.day <= $7""",
        [k[0] for k in bk],
        [k[1] for k in bk],
        [k[2] for k in bk],
        [k[0] for k in sk],
        [k[1] for k in sk],
        min(days),
        max(days),
    )
    sums: dict[tuple[date, int], Summary] = {}
    decoded: dict[tuple[date, int, int], Block] = {}
    for is_sum, day, hour, grp, body in rows:
        if is_sum:
            sums[(day, grp)] = summary_store.decode_cached(body, kind=lay)
        else:
            decoded[(day, hour, grp)] = blocks.decode_cached(body)
    return sums, decoded


async def segment_stats(
    db: DB,
    kind: Kind,
    segments: list[tuple[int, str, datetime, datetime]],
    groups: Mapping[date, int],
    *,
    by_hour: bool,
) -> dict[Any, Stats]:
    """Figures per segment key (or per (key, UTC hour)) of segments lying in compacted days
    (`groups`: each day's device group count, Plan.groups)."""
    lay = LAYOUTS[kind]
    want_sums: set[tuple[date, int]] = set()
    want_blocks: set[tuple[date, int, int]] = set()

    def grp(dev: str, hour: datetime) -> int:
        return group_of(dev, groups.get(hour.date(), LEGACY_GROUPS))

    for _, dev, s, e in segments:
        for hour, lo, hi in _hours(s, e):
            if lo == hour and hi == hour + HOUR:
                want_sums.add((hour.date(), grp(dev, hour)))
            else:
                want_blocks.add((hour.date(), hour.hour, grp(dev, hour)))
    sums, decoded = await _load_for_devices(db, kind, want_sums, want_blocks)
    out: dict[Any, Stats] = {}
    for key, dev, s, e in segments:
        for hour, lo, hi in _hours(s, e):
            if lo == hour and hi == hour + HOUR:
                summary = sums.get((hour.date(), grp(dev, hour)))
                st = Stats()
                if summary is not None and dev in summary.devices:
                    row = summary.devices.index(dev)
                    d0 = day_start(hour.date())
                    st = hour_stats(summary, row, hour.hour, d0, kind=lay)
            else:
                found = decoded.get((hour.date(), hour.hour, grp(dev, hour)))
                st = _range_stats(found, dev, hour, lo, hi, kind=lay)
            if st.n:
                out.setdefault((key, hour) if by_hour else key, Stats()).merge(st)
    return out


def _late_columns(kind: DeviceKind) -> str:
    """device, ts, kWh in millionths, [edge column], [spread column]."""
    out = f"{kind.device}, ts, ({kind.kwh} * 1000000)::bigint"
    for col in (kind.edges, kind.spread):
        out += "" if col is None else f", {col.name}"
    return out


def _late_stats(r: Any, *, kind: DeviceKind) -> Stats:
    s = Stats(r[2], 1)
    at = 3
    if kind.edges is not None:
        s.first_ts = s.last_ts = r[1]
        s.soc_first = s.soc_last = r[at]
        at += 1
    if kind.spread is not None:
        s.temp_sum = s.temp_min = s.temp_max = r[at]
    return s


async def late_rows(
    db: DB, kind: Kind, lo: datetime, hi: datetime, devices: list[str] | None = None
) -> list[Any]:
    """Late readings in [lo, hi), of `devices` or of all."""
    lay = LAYOUTS[kind]
    sql = f"SELECT {_late_columns(lay)} FROM {lay.late} WHERE ts >= $1 AND ts < $2"
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
    lay = LAYOUTS[kind]
    out: dict[Any, Stats] = {}
    for r in rows:
        for key, dev, s, e in segments:
            if r[0] == dev and s <= r[1] < e:
                hour = r[1].replace(minute=0, second=0, microsecond=0)
                out.setdefault((key, hour) if by_hour else key, Stats()).merge(
                    _late_stats(r, kind=lay)
                )
    return out


async def late_fleet(db: DB, kind: Kind, start: datetime, end: datetime) -> Cols:
    """Late readings over [start, end), one entry per reading."""
    rows = await late_rows(db, kind, start, end)
    ids, kwh = [r[0] for r in rows], [r[2] for r in rows]
    lay = LAYOUTS[kind]
    if lay.edges is None or lay.spread is None:  # the vehicle's figures, or energy only
        return from_records(ids, kwh, [1] * len(rows))
    ts, soc, temp = [r[1] for r in rows], [r[3] for r in rows], [r[4] for r in rows]
    return from_records(ids, kwh, [1] * len(rows), [temp, temp, temp, ts, soc, ts, soc])


async def fleet_cols(db: DB, kind: Kind, start: datetime, end: datetime) -> list[Cols]:
    """Per-device figures of the pieces of [start, end), which lies in compacted days."""
    lay = LAYOUTS[kind]
    out: list[Cols] = []
    day = start.astimezone(UTC).date()
    while day_start(day) < end:
        d0 = day_start(day)
        whole = []
        for hour, lo, hi in _hours(max(start, d0), min(end, d0 + DAY)):
            if lo == hour and hi == hour + HOUR:
                whole.append(hour.hour)
                continue
            # A partial hour at an edge: the readings of every block of that hour.
            lo_us, hi_us, hour_us = (lo - hour) // _US, (hi - hour) // _US, us_of(hour)
            for block in (await blocks.load(db, kind, day, hour.hour)).values():
                out.append(from_block(block, lo_us, hi_us, hour_us, kind=lay))
        if whole:
            # Whole hours are contiguous: [first, last + 1) of every group's summary.
            for sm in (await summary_store.load(db, kind, day)).values():
                out.append(from_summary(sm, whole[0], whole[-1] + 1, us_of(d0), kind=lay))
        day += timedelta(days=1)
    return out
