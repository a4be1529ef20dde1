"""Energy and battery statistics over time segments, from hourly rollups for whole hours and raw
readings only for the partial hours at a segment's edges.

Rollups are maintained exactly once by the ingest transaction and kWh are `numeric`, so the sums
here equal a computation over raw rows to the last digit, while a 24 h fleet query reads
~20,000 x 24 rollup rows plus the edge minutes instead of 28.8M readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import starmap
from typing import Any, NamedTuple, cast

import asyncpg

from fleetctl.analytics import cold
from fleetctl.analytics.gcpause import paused_gc
from fleetctl.analytics.pieces import Piece, open_ended, split
from fleetctl.analytics.status import micro
from fleetdb.cold.columns import EPOCH, US, Cols, combine, from_records
from fleetdb.cold.stats import Stats
from fleetdb.fold import marks
from fleetdb.kinds import METER, VEHICLE, DeviceKind, by_name
from fleetdb.rollups import HOURLY, Kind, Level

DB = asyncpg.Connection | asyncpg.Pool

# Table and column names come only from the kind registry (never from input). The battery
# figures are the vehicle's (its SoC and battery temperature): _V names its columns.
_V = VEHICLE
_SOC, _TEMP = _V.edges.name if _V.edges else "", _V.spread.name if _V.spread else ""


def _tables(kind: Kind) -> tuple[str, str, str, str]:
    """(hourly rollup, device column, history, kWh column) of `kind`."""
    k = by_name(kind)
    return HOURLY.table(k), k.device, k.history, k.kwh


# A segment [s, e) splits into: raw rows in [s, hs), rollup hours [hs, he), raw rows in [he, e),
# where hs is s rounded up to the hour and he is e rounded down, but not past the hourly
# level's watermark $7 (fleetdb.fold: later hours are not folded yet). When the segment lies
# inside one hour (or after the watermark), hs > he and the raw ranges [s, min(hs, e)) and
# [hs, e) cover it all.
_SEGMENTS = """
seg AS (
    SELECT k, dev, s, e,
           CASE WHEN s = date_trunc('hour', s, 'UTC') THEN s
                ELSE date_trunc('hour', s, 'UTC') + interval '1 hour' END AS hs,
           least(date_trunc('hour', e, 'UTC'), $7::timestamptz) AS he
    FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS u(k, dev, s, e)
)"""


def _energy_sql(kind: Kind, *, by_hour: bool) -> str:
    hourly, col, raw, kwh = _tables(kind)
    hour = ", x.hour" if by_hour else ""
    # $5/$6 bound every table reference by constants so the planner prunes partitions.
    return f"""
WITH {_SEGMENTS}, x AS (
    SELECT seg.k, h.hour, h.kwh_sum AS kwh, h.readings AS n
      FROM seg JOIN {hourly} h ON h.{col} = seg.dev AND h.hour >= seg.hs AND h.hour < seg.he
     WHERE h.hour >= $5 AND h.hour < $6
    UNION ALL
    SELECT seg.k, date_trunc('hour', r.ts, 'UTC'), r.{kwh}, 1
      FROM seg JOIN {raw} r ON r.{col} = seg.dev AND r.ts >= seg.s AND r.ts < least(seg.hs, seg.e)
     WHERE r.ts >= $5 AND r.ts < $6
    UNION ALL
    SELECT seg.k, date_trunc('hour', r.ts, 'UTC'), r.{kwh}, 1
      FROM seg JOIN {raw} r ON r.{col} = seg.dev AND r.ts >= greatest(seg.he, seg.hs)
                            AND r.ts < seg.e
     WHERE r.ts >= $5 AND r.ts < $6
)
SELECT x.k{hour}, sum(x.kwh) AS kwh, sum(x.n)::int AS n FROM x GROUP BY x.k{hour}
"""


_BATTERY_SQL = f"""
WITH {_SEGMENTS}, x AS (
    SELECT seg.k, h.kwh_sum, h.temp_sum, h.readings, h.temp_min, h.temp_max,
           h.soc_first, h.soc_first_ts, h.soc_last, h.soc_last_ts
      FROM seg JOIN {HOURLY.table(_V)} h ON h.{_V.device} = seg.dev AND h.hour >= seg.hs
                                    AND h.hour < seg.he
     WHERE h.hour >= $5 AND h.hour < $6
    UNION ALL
    SELECT seg.k, r.{_V.kwh}, r.{_TEMP}::float8, 1, r.{_TEMP}, r.{_TEMP},
           r.{_SOC}, r.ts, r.{_SOC}, r.ts
      FROM seg JOIN {_V.history} r ON r.{_V.device} = seg.dev AND r.ts >= seg.s
                                      AND r.ts < least(seg.hs, seg.e)
     WHERE r.ts >= $5 AND r.ts < $6
    UNION ALL
    SELECT seg.k, r.{_V.kwh}, r.{_TEMP}::float8, 1, r.{_TEMP}, r.{_TEMP},
           r.{_SOC}, r.ts, r.{_SOC}, r.ts
      FROM seg JOIN {_V.history} r ON r.{_V.device} = seg.dev
                                      AND r.ts >= greatest(seg.he, seg.hs) AND r.ts < seg.e
     WHERE r.ts >= $5 AND r.ts < $6
)
SELECT k, sum(kwh_sum) AS kwh, sum(temp_sum) AS temp_sum, sum(readings)::int AS n,
       min(temp_min) AS temp_min, max(temp_max) AS temp_max,
       (array_agg(soc_first ORDER BY soc_first_ts))[1] AS soc_first,
       (array_agg(soc_last ORDER BY soc_last_ts DESC))[1] AS soc_last,
       min(soc_first_ts) AS first_ts, max(soc_last_ts) AS last_ts
  FROM x GROUP BY k
"""


class Segment(NamedTuple):
    """Device `device` over [start, end); `key` identifies it in the results. (A tuple: a
    fleet report from before the fleet's first readings makes 20,000 of them, ~3x faster than
    a frozen dataclass.)"""

    key: int
    device: str
    start: datetime
    end: datetime


@dataclass
class Energy:
    """Σ kWh and reading count."""

    kwh: Decimal = Decimal(0)
    readings: int = 0


class VehicleStats(NamedTuple):
    """A vehicle's own readings over a segment or window."""

    dc_u: int  # Σ DC in micro-kWh
    temp_sum: float
    readings: int
    temp_min: float
    temp_max: float
    soc_first: float
    soc_last: float
    # The first and last reading's timestamps, where known (fleet_vehicles): a sub-span of
    # the window holding both holds every reading (unit_energies, fleet's 1:1 spans).
    first_ts: datetime | None = None
    last_ts: datetime | None = None


async def _args(db: DB, segments: list[Segment]) -> tuple[Any, ...]:
    lo = min(s.start for s in segments)
    hi = max(s.end for s in segments)
    # Read before the rollups: a watermark only moves on, and hours below it are final.
    folded = await marks(db)
    return (
        [s.key for s in segments],
        [s.device for s in segments],
        [s.start for s in segments],
        [s.end for s in segments],
        lo,
        hi,
        folded[HOURLY.name],
    )


async def _open_energy(
    db: DB, kind: Kind, segments: list[Segment], *, by_hour: bool
) -> dict[Any, Energy]:
    rows = await db.fetch(_energy_sql(kind, by_hour=by_hour), *await _args(db, segments))
    if by_hour:
        return {(r["k"], r["hour"]): Energy(r["kwh"] or Decimal(0), r["n"] or 0) for r in rows}
    return {r["k"]: Energy(r["kwh"] or Decimal(0), r["n"] or 0) for r in rows}


async def _open_battery(db: DB, segments: list[Segment]) -> dict[int, Stats]:
    rows = await db.fetch(_BATTERY_SQL, *await _args(db, segments))
    return {r[0]: Stats(micro(r[1]), r[3], r[2], r[4], r[5], r[8], r[6], r[9], r[7]) for r in rows}


def _cut(segments: list[Segment], p: cold.Plan) -> tuple[list[Segment], list[Segment]]:
    """Segments cut at compacted-day edges: (open parts, compacted parts)."""
    hot: list[Segment] = []
    frozen: list[Segment] = []
    for seg in segments:
        for is_cold, s, e in cold.runs(seg.start, seg.end, p.compacted):
            (frozen if is_cold else hot).append(Segment(seg.key, seg.device, s, e))
    return hot, frozen


def _tuples(segments: list[Segment]) -> list[tuple[int, str, datetime, datetime]]:
    return [(s.key, s.device, s.start, s.end) for s in segments]


async def _cold_and_late(
    db: DB, kind: Kind, p: cold.Plan, frozen: list[Segment], every: list[Segment], *, by_hour: bool
) -> dict[Any, Stats]:
    out: dict[Any, Stats] = {}
    if frozen:
        out = await cold.segment_stats(db, kind, _tuples(frozen), p.groups, by_hour=by_hour)
    if p.late:
        for key, st in (
            await cold.late_segment_stats(db, kind, _tuples(every), by_hour=by_hour)
        ).items():
            out.setdefault(key, Stats()).merge(st)
    return out


async def _energies(
    db: DB, kind: Kind, segments: list[Segment], *, by_hour: bool
) -> dict[Any, Energy]:
    lo, hi = min(s.start for s in segments), max(s.end for s in segments)
    p = await cold.plan(db, kind, lo, hi)
    if p.simple:
        return await _open_energy(db, kind, segments, by_hour=by_hour)
    hot, frozen = _cut(segments, p)
    out = await _open_energy(db, kind, hot, by_hour=by_hour) if hot else {}
    for key, st in (await _cold_and_late(db, kind, p, frozen, segments, by_hour=by_hour)).items():
        e = out.setdefault(key, Energy())
        e.kwh += Decimal(st.kwh_u).scaleb(-6)
        e.readings += st.n
    return out


async def energy(db: DB, kind: Kind, segments: list[Segment]) -> dict[int, Energy]:
    """Σ kWh and reading count per segment key (missing keys: no data)."""
    if not segments:
        return {}
    return await _energies(db, kind, segments, by_hour=False)


async def energy_by_hour(
    db: DB, kind: Kind, segments: list[Segment]
) -> dict[tuple[int, datetime], Energy]:
    """Σ kWh and reading count per (segment key, UTC hour)."""
    if not segments:
        return {}
    return await _energies(db, kind, segments, by_hour=True)


def _vehicle_stats(st: Stats) -> VehicleStats:
    # Stats of at least one vehicle reading have every figure set.
    return VehicleStats(
        st.kwh_u,
        st.temp_sum,
        st.n,
        cast("float", st.temp_min),
        cast("float", st.temp_max),
        cast("float", st.soc_first),
        cast("float", st.soc_last),
    )


async def battery(db: DB, segments: list[Segment]) -> dict[int, VehicleStats]:
    """A vehicle's own DC, battery temperature and SoC statistics per segment key."""
    if not segments:
        return {}
    lo, hi = min(s.start for s in segments), max(s.end for s in segments)
    p = await cold.plan(db, "vehicle", lo, hi)
    hot, frozen = (segments, []) if p.simple else _cut(segments, p)
    out = await _open_battery(db, hot) if hot else {}
    if not p.simple:
        for key, st in (
            await _cold_and_late(db, "vehicle", p, frozen, segments, by_hour=False)
        ).items():
            out.setdefault(key, Stats()).merge(st)
    return {k: _vehicle_stats(st) for k, st in out.items()}


def hours_of(start: datetime, end: datetime) -> list[datetime]:
    """Every UTC hour bucket that [start, end) touches."""
    first = start.replace(minute=0, second=0, microsecond=0)
    out = []
    hour = first
    while hour < end:
        out.append(hour)
        hour += timedelta(hours=1)
    return out


# Whole fleet over one window: every piece (fleetctl.analytics.pieces) is one time range across all
# devices, a plain range scan (BRIN on ts and on the buckets) aggregated per device, with no
# per-device index probes. Plain aggregates only (hash aggregates; the plan settings are in
# fleetctl.fleet._FLEET_PLAN): an ordered array_agg for first/last SoC made PostgreSQL sort
# all ~830,000 rows of a 24 h window. Results
# come back as one row of column arrays, kWh as integer micro-kWh (exact, and cheap to decode).
# The SQL text depends only on which levels the pieces use: the bounds of each piece are its
# parameters (for vehicles after $1/$2, the window, and $3-$6, see _edge_bounds).
def _fleet_columns(k: DeviceKind) -> tuple[str, str]:
    """A piece's columns from rollup rows and from raw rows: kWh, count, [Σ/min/max of the
    spread column], [first and last timestamps of the edge column]."""
    hourly, raw = "kwh_sum, readings", f"{k.kwh}, 1"
    if (s := k.spread) is not None:
        hourly += f", {s.prefix}_sum, {s.prefix}_min, {s.prefix}_max"
        raw += f", {s.name}::float8, {s.name}, {s.name}"
    if (e := k.edges) is not None:
        hourly += f", {e.prefix}_first_ts, {e.prefix}_last_ts"
        raw += ", ts, ts"
    return hourly, raw


def _energy_columns(k: DeviceKind) -> tuple[str, str]:
    """Σ kWh and count only, of either kind (fleet_energy)."""
    return "kwh_sum, readings", f"{k.kwh}, 1"


def _soc_columns() -> tuple[str, str]:
    """The vehicle columns and the edge column (SoC) at each row's first and last timestamp
    (_fleet_vehicles_by_min_sql)."""
    hourly, raw = _fleet_columns(_V)
    soc = _V.edges.prefix if _V.edges else ""
    return f"{hourly}, {soc}_first, {soc}_last", f"{raw}, {_SOC}, {_SOC}"


def _piece_sql(kind: Kind, level: Level | None, lo: int, columns: tuple[str, str]) -> str:
    k = by_name(kind)
    rollup_cols, raw_cols = columns
    col = k.device
    if level is None:
        raw = k.history
        return f"SELECT {col}, {raw_cols} FROM {raw} WHERE ts >= ${lo} AND ts < ${lo + 1}"
    return (
        f"SELECT {col}, {rollup_cols} FROM {level.table(kind)}"
        f" WHERE {level.column} >= ${lo} AND {level.column} < ${lo + 1}"
    )


def _union(
    kind: Kind, shape: tuple[Level | None, ...], first: int, columns: tuple[str, str]
) -> str:
    """Every piece's rows; piece i is bounded by parameters $first+2i and $first+2i+1."""
    return "\n    UNION ALL\n    ".join(
        _piece_sql(kind, level, first + 2 * i, columns) for i, level in enumerate(shape)
    )


@lru_cache(maxsize=64)
def _fleet_energy_sql(kind: Kind, shape: tuple[Level | None, ...]) -> str:
    return f"""
SELECT array_agg(dev), array_agg((k * 1000000)::bigint), array_agg(n) FROM (
    SELECT dev, sum(k) AS k, sum(n)::int AS n
      FROM ({_union(kind, shape, 1, _energy_columns(by_name(kind)))}) x (dev, k, n)
     GROUP BY dev
) a
"""


def _edge_rows(level: Level | None, lo: str, hi: str, *, last: bool) -> str:
    """Rows (dev, ts, soc) of the readings or buckets of `level` in [lo, hi)."""
    if level is None:
        return f"SELECT {_V.device}, ts, {_SOC} FROM {_V.history} WHERE ts >= {lo} AND ts < {hi}"
    which = "last" if last else "first"
    soc = _V.edges.prefix if _V.edges else ""
    return (
        f"SELECT {_V.device}, {soc}_{which}_ts, {soc}_{which} FROM {level.table(_V)}"
        f" WHERE {level.column} >= {lo} AND {level.column} < {hi}"
    )


def _edge_bounds(pieces: list[Piece], interval: timedelta) -> list[datetime]:
    """Where a vehicle's first and last readings almost always are: the first and last
    nominal interval of raw readings, or the first and last bucket, of the window's first and
    last piece ($3-$4 and $5-$6 of the vehicle query)."""
    first, last = pieces[0], pieces[-1]
    f_width = interval if first.level is None else first.level.width
    l_width = interval if last.level is None else last.level.width
    return [
        first.start,
        min(first.end, first.start + f_width),
        max(last.start, last.end - l_width),
        last.end,
    ]


# First/last SoC are the SoC at the first/last timestamp found by the aggregate, joined from
# where they almost always are (_edge_bounds, ~10,000 rows each). Only a vehicle whose first or
# last reading lies elsewhere (a gap at the window's edge) costs a primary-key probe, ten times
# dearer per vehicle than the joins.
@lru_cache(maxsize=64)
def _fleet_vehicles_sql(shape: tuple[Level | None, ...], *, with_ts: bool = False) -> str:
    # with_ts: also each vehicle's first and last timestamps, to combine with other sources.
    ts = ", array_agg(a.f), array_agg(a.l)" if with_ts else ""
    return f"""
WITH a AS MATERIALIZED (
    SELECT dev, sum(k) AS k, sum(t) AS t, sum(n)::int AS n, min(lo) AS lo, max(hi) AS hi,
           min(f) AS f, max(l) AS l
      FROM ({_union("vehicle", shape, 7, _fleet_columns(_V))}) x (dev, k, n, t, lo, hi, f, l)
     GROUP BY dev
), firsts (dev, ts, soc) AS ({_edge_rows(shape[0], "$3", "$4", last=False)}
), lasts (dev, ts, soc) AS ({_edge_rows(shape[-1], "$5", "$6", last=True)}
)
SELECT array_agg(a.dev), array_agg((a.k * 1000000)::bigint), array_agg(a.t), array_agg(a.n),
       array_agg(a.lo), array_agg(a.hi),
       array_agg(coalesce(fs.soc, (SELECT r.{_SOC} FROM {_V.history} r WHERE r.{_V.device} = a.dev
                                      AND r.ts = a.f AND r.ts >= $1 AND r.ts < $2))),
       array_agg(coalesce(ls.soc, (SELECT r.{_SOC} FROM {_V.history} r WHERE r.{_V.device} = a.dev
                                      AND r.ts = a.l AND r.ts >= $1 AND r.ts < $2))){ts}
  FROM a LEFT JOIN firsts fs ON fs.dev = a.dev AND fs.ts = a.f
         LEFT JOIN lasts ls ON ls.dev = a.dev AND ls.ts = a.l
"""


# The same figures without the joins: each vehicle's first and last SoC taken by the aggregate
# itself, as min/max of [epoch of the row's first (last) timestamp, its SoC] (arrays compare
# element by element; epochs as float8 keep microseconds apart, and one vehicle has one row per
# timestamp). Dearer per row than the joins when they hit (measured ~1.3x on the statement),
# far cheaper when most vehicles have no reading in the window's first or last interval: a
# window that starts before the fleet's first readings or ends after its last paid a primary-
# key probe per vehicle and side.
@lru_cache(maxsize=64)
def _fleet_vehicles_by_min_sql(shape: tuple[Level | None, ...], *, with_ts: bool = False) -> str:
    ts = ", array_agg(a.f), array_agg(a.l)" if with_ts else ""
    return f"""
SELECT array_agg(a.dev), array_agg((a.k * 1000000)::bigint), array_agg(a.t), array_agg(a.n),
       array_agg(a.lo), array_agg(a.hi), array_agg(a.fs[2]), array_agg(a.ls[2]){ts}
  FROM (
    SELECT dev, sum(k) AS k, sum(t) AS t, sum(n)::int AS n, min(lo) AS lo, max(hi) AS hi,
           min(f) AS f, max(l) AS l,
           min(ARRAY[date_part('epoch', f), sf::float8]) AS fs,
           max(ARRAY[date_part('epoch', l), sl::float8]) AS ls
      FROM ({_union("vehicle", shape, 1, _soc_columns())}) x (dev, k, n, t, lo, hi, f, l, sf, sl)
     GROUP BY dev
  ) a
"""


# How many vehicles have a row in the first and the last interval the joins read, and how
# many vehicles there are: decides between the two statements (_soc_by_min).
@lru_cache(maxsize=16)
def _edges_sql(first: Level | None, last: Level | None) -> str:
    return f"""SELECT (SELECT count(*) FROM ({_edge_rows(first, "$1", "$2", last=False)}) f),
       (SELECT count(*) FROM ({_edge_rows(last, "$3", "$4", last=True)}) l),
       (SELECT count(*) FROM {_V.current})"""


# None: decide per window (_soc_by_min); True/False force one statement (tests).
SOC_BY_MIN: bool | None = None


async def _soc_by_min(db: DB, shape: tuple[Level | None, ...], edges: list[datetime]) -> bool:
    """Whether the joins would miss more than a quarter of the fleet's first and last readings
    (each miss a probe; an empty edge: the window starts before or ends after the data)."""
    if SOC_BY_MIN is not None:
        return SOC_BY_MIN
    row = await db.fetchrow(_edges_sql(shape[0], shape[-1]), *edges)
    firsts, lasts, known = row if row is not None else (0, 0, 0)
    return not firsts or not lasts or 2 * known - firsts - lasts > known // 4


def _nothing_from(kind: Kind) -> str:
    return f"SELECT coalesce(max(ts) < $1, true) FROM {by_name(kind).current}"


async def fleet_pieces(db: DB, kind: Kind, start: datetime, end: datetime) -> list[Piece]:
    """The pieces a fleet query of `kind` reads for [start, end) (see fleetctl.analytics.pieces).

    A window that ends now (the default report) ends inside the current bucket of every level,
    and no reading at or after `end` exists yet: those buckets then hold exactly the readings
    before `end`, so the window is read as if it ran to the end of the current 4-hour block
    (no raw or 10-minute pieces at its end). The current tables hold each device's newest
    timestamp, so one look at them decides it; the caller must read this and the aggregates
    in one snapshot (REPEATABLE READ), or a reading committed in between could count. The
    levels' watermarks are read in that snapshot too (fleetdb.fold): no piece of a level
    reaches past its watermark.
    """
    folded = await marks(db)
    stop = open_ended(end)
    if stop > end and await db.fetchval(_nothing_from(kind), end):
        return _up_to(split(start, stop, folded=folded), end)
    return split(start, end, folded=folded)


def _up_to(pieces: list[Piece], end: datetime) -> list[Piece]:
    """Open-ended pieces (nothing at or after `end`) without what lies wholly after `end`, and
    raw readings cut at `end`: the same readings. Past the watermarks the window's tail is raw
    readings up to the 4-hour block's end; its last interval, empty, was where the SoC edge
    join looked for every vehicle's last reading (all missed: the dearer statement ran)."""
    out = []
    for p in pieces:
        if p.start >= end:
            break
        out.append(Piece(None, p.start, end) if p.level is None and p.end > end else p)
    return out


def _piece_args(pieces: list[Piece]) -> list[datetime]:
    return [t for p in pieces for t in (p.start, p.end)]


async def _open_fleet_energy(
    db: DB, kind: Kind, start: datetime, end: datetime
) -> dict[str, tuple[int, int]]:
    pieces = await fleet_pieces(db, kind, start, end)
    sql = _fleet_energy_sql(kind, tuple(p.level for p in pieces))
    [(devs, kwh, n)] = await db.fetch(sql, *_piece_args(pieces))
    with paused_gc():  # 10,000 tuples (fleetctl.analytics.gcpause)
        return dict(zip(devs or (), zip(kwh or (), n or (), strict=True), strict=True))


async def fleet_energy(
    db: DB, kind: Kind, start: datetime, end: datetime
) -> dict[str, tuple[int, int]]:
    """Every device's (Σ kWh in micro-kWh, readings) of `kind` over [start, end): AC for
    meters, DC for vehicles. Call inside one snapshot (see fleet_pieces)."""
    p = await cold.plan(db, kind, start, end)
    if p.simple:
        return await _open_fleet_energy(db, kind, start, end)
    parts: list[Cols] = []
    for is_cold, s, e in cold.runs(start, end, p.compacted):
        if is_cold:
            parts += await cold.fleet_cols(db, kind, s, e)
        else:
            got = await _open_fleet_energy(db, kind, s, e)
            parts.append(
                from_records(list(got), [k for k, _ in got.values()], [n for _, n in got.values()])
            )
    if p.late:
        parts.append(await cold.late_fleet(db, kind, start, end))
    c = combine(parts, kind=METER)  # Σ kWh and counts only, whichever the kind
    with paused_gc():
        return dict(zip(c.devices, zip(c.kwh.tolist(), c.n.tolist(), strict=True), strict=True))


async def fleet_meters(db: DB, start: datetime, end: datetime) -> dict[str, tuple[int, int]]:
    """Every meter's (Σ AC in micro-kWh, readings) over [start, end). Call inside one snapshot
    (see fleet_pieces)."""
    return await fleet_energy(db, "meter", start, end)


async def _open_fleet_vehicles(
    db: DB, start: datetime, end: datetime, interval: timedelta, *, with_ts: bool
) -> tuple[list[Any], list[list[Any]]]:
    pieces = await fleet_pieces(db, "vehicle", start, end)
    shape = tuple(p.level for p in pieces)
    edges = _edge_bounds(pieces, interval)
    if await _soc_by_min(db, shape, edges):
        sql = _fleet_vehicles_by_min_sql(shape, with_ts=with_ts)
        [row] = await db.fetch(sql, *_piece_args(pieces))
    else:
        sql = _fleet_vehicles_sql(shape, with_ts=with_ts)
        [row] = await db.fetch(sql, start, end, *edges, *_piece_args(pieces))
    devs, *cols = row
    return list(devs or ()), [list(c or ()) for c in cols]


async def fleet_vehicles(
    db: DB, start: datetime, end: datetime, interval: timedelta
) -> dict[str, VehicleStats]:
    """Every vehicle's own statistics over [start, end) (`interval`: the nominal reading
    interval, where the first and last readings are looked for first). Call inside one
    snapshot (see fleet_pieces)."""
    p = await cold.plan(db, "vehicle", start, end)
    if p.simple:
        devs, cols = await _open_fleet_vehicles(db, start, end, interval, with_ts=True)
        with paused_gc():  # 10,000 tuples (fleetctl.analytics.gcpause)
            stats = map(VehicleStats._make, zip(*cols, strict=True))
            return dict(zip(devs, stats, strict=True))
    parts: list[Cols] = []
    for is_cold, s, e in cold.runs(start, end, p.compacted):
        if is_cold:
            parts += await cold.fleet_cols(db, "vehicle", s, e)
        else:
            devs, got = await _open_fleet_vehicles(db, s, e, interval, with_ts=True)
            k, t, n, lo, hi, sf, sl, f, la = got
            parts.append(from_records(devs, k, n, [t, lo, hi, f, sf, la, sl]))
    if p.late:
        parts.append(await cold.late_fleet(db, "vehicle", start, end))
    both = combine(parts, kind=_V)
    columns = (
        both.kwh,
        both.temp_sum,
        both.n,
        both.temp_min,
        both.temp_max,
        both.soc_first,
        both.soc_last,
    )
    with paused_gc():
        lists = [x.tolist() for x in columns if x is not None]
        # With the timestamps, as on open days: a 1:1 span holding both takes the vehicle's
        # figures from here instead of the general path (a window from before the fleet's first
        # readings, over compacted days).
        for us in (both.first_us, both.last_us):
            if us is not None:
                lists.append([EPOCH + u * US for u in us.tolist()])
        return dict(zip(both.devices, starmap(VehicleStats, zip(*lists, strict=True)), strict=True))
