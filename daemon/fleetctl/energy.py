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
from typing import Any, Literal

import asyncpg

from fleetctl.status import micro

Kind = Literal["meter", "vehicle"]
DB = asyncpg.Connection | asyncpg.Pool

# Table and column names come only from this map (never from input).
_TABLES: dict[Kind, tuple[str, str, str, str]] = {
    "meter": ("meter_hourly", "meter_id", "meter_readings", "kwh_consumed_ac"),
    "vehicle": ("vehicle_hourly", "vehicle_id", "vehicle_readings", "kwh_delivered_dc"),
}

# A segment [s, e) splits into: raw rows in [s, hs), rollup hours [hs, he), raw rows in [he, e),
# where hs is s rounded up to the hour and he is e rounded down. When the segment lies inside one
# hour, hs > he and the first raw range [s, min(hs, e)) covers it all.
_SEGMENTS = """
seg AS (
    SELECT k, dev, s, e,
           CASE WHEN s = date_trunc('hour', s, 'UTC') THEN s
                ELSE date_trunc('hour', s, 'UTC') + interval '1 hour' END AS hs,
           date_trunc('hour', e, 'UTC') AS he
    FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS u(k, dev, s, e)
)"""


def _energy_sql(kind: Kind, *, by_hour: bool) -> str:
    hourly, col, raw, kwh = _TABLES[kind]
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
      FROM seg JOIN vehicle_hourly h ON h.vehicle_id = seg.dev AND h.hour >= seg.hs
                                    AND h.hour < seg.he
     WHERE h.hour >= $5 AND h.hour < $6
    UNION ALL
    SELECT seg.k, r.kwh_delivered_dc, r.battery_temp::float8, 1, r.battery_temp, r.battery_temp,
           r.soc, r.ts, r.soc, r.ts
      FROM seg JOIN vehicle_readings r ON r.vehicle_id = seg.dev AND r.ts >= seg.s
                                      AND r.ts < least(seg.hs, seg.e)
     WHERE r.ts >= $5 AND r.ts < $6
    UNION ALL
    SELECT seg.k, r.kwh_delivered_dc, r.battery_temp::float8, 1, r.battery_temp, r.battery_temp,
           r.soc, r.ts, r.soc, r.ts
      FROM seg JOIN vehicle_readings r ON r.vehicle_id = seg.dev
                                      AND r.ts >= greatest(seg.he, seg.hs) AND r.ts < seg.e
     WHERE r.ts >= $5 AND r.ts < $6
)
SELECT k, sum(kwh_sum) AS kwh, sum(temp_sum) AS temp_sum, sum(readings)::int AS n,
       min(temp_min) AS temp_min, max(temp_max) AS temp_max,
       (array_agg(soc_first ORDER BY soc_first_ts))[1] AS soc_first,
       (array_agg(soc_last ORDER BY soc_last_ts DESC))[1] AS soc_last
  FROM x GROUP BY k
"""


@dataclass(frozen=True)
class Segment:
    """Device `device` over [start, end); `key` identifies it in the results."""

    key: int
    device: str
    start: datetime
    end: datetime


@dataclass
class Energy:
    """Σ kWh and reading count."""

    kwh: Decimal = Decimal(0)
    readings: int = 0


# A vehicle's own readings over a segment or window: (Σ DC in micro-kWh, Σ battery temperature,
# readings, min temperature, max temperature, first SoC, last SoC).
VehicleStats = tuple[int, float, int, float, float, float, float]


def _args(segments: list[Segment]) -> tuple[Any, ...]:
    lo = min(s.start for s in segments)
    hi = max(s.end for s in segments)
    return (
        [s.key for s in segments],
        [s.device for s in segments],
        [s.start for s in segments],
        [s.end for s in segments],
        lo,
        hi,
    )


async def energy(db: DB, kind: Kind, segments: list[Segment]) -> dict[int, Energy]:
    """Σ kWh and reading count per segment key (missing keys: no data)."""
    if not segments:
        return {}
    rows = await db.fetch(_energy_sql(kind, by_hour=False), *_args(segments))
    return {r["k"]: Energy(r["kwh"] or Decimal(0), r["n"] or 0) for r in rows}


async def energy_by_hour(
    db: DB, kind: Kind, segments: list[Segment]
) -> dict[tuple[int, datetime], Energy]:
    """Σ kWh and reading count per (segment key, UTC hour)."""
    if not segments:
        return {}
    rows = await db.fetch(_energy_sql(kind, by_hour=True), *_args(segments))
    return {(r["k"], r["hour"]): Energy(r["kwh"] or Decimal(0), r["n"] or 0) for r in rows}


async def battery(db: DB, segments: list[Segment]) -> dict[int, VehicleStats]:
    """A vehicle's own DC, battery temperature and SoC statistics per segment key."""
    if not segments:
        return {}
    rows = await db.fetch(_BATTERY_SQL, *_args(segments))
    return {r[0]: (micro(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows}


def hours_of(start: datetime, end: datetime) -> list[datetime]:
    """Every UTC hour bucket that [start, end) touches."""
    first = start.replace(minute=0, second=0, microsecond=0)
    out = []
    hour = first
    while hour < end:
        out.append(hour)
        hour += timedelta(hours=1)
    return out


def _edges(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """(hs, he): start rounded up and end rounded down to the hour."""
    hs = start.replace(minute=0, second=0, microsecond=0)
    if hs < start:
        hs += timedelta(hours=1)
    return hs, end.replace(minute=0, second=0, microsecond=0)


# Whole fleet over one window: the edges are the same ts ranges for every device, so they are
# plain range scans (BRIN on ts) aggregated per device, with no per-device index probes. Plain
# aggregates only (hash-aggregated in parallel): an ordered array_agg for first/last SoC made
# PostgreSQL sort all ~830,000 rows of a 24 h window. Results come back as one row of column
# arrays, kWh as integer micro-kWh (exact, and cheap to decode and compare).
def _fleet_union(kind: Kind, hourly_cols: str = "", raw_cols: str = "") -> str:
    """Every device's rollup rows for hours [$3, $4) and raw rows for [$1, $3) and [$4, $2)."""
    hourly, col, raw, kwh = _TABLES[kind]
    return f"""
    SELECT {col} AS dev, kwh_sum AS k, readings AS n{hourly_cols}
      FROM {hourly} WHERE hour >= $3 AND hour < $4
    UNION ALL
    SELECT {col}, {kwh}, 1{raw_cols} FROM {raw} WHERE ts >= $1 AND ts < least($3, $2)
    UNION ALL
    SELECT {col}, {kwh}, 1{raw_cols} FROM {raw} WHERE ts >= greatest($4, $3) AND ts < $2
"""


_FLEET_METERS = f"""
SELECT array_agg(dev), array_agg((k * 1000000)::bigint), array_agg(n) FROM (
    SELECT dev, sum(k) AS k, sum(n)::int AS n FROM ({_fleet_union("meter")}) x GROUP BY dev
) a
"""

# First/last SoC are the SoC at the first/last timestamp found by the aggregate. They are
# looked up where they almost always are: the raw readings of the window's first and last
# nominal interval, or the first/last whole hour's rollup (hash joins over ~10,000 rows each).
# Only a vehicle whose first or last reading lies elsewhere (a gap at the window's edge) costs
# a primary-key probe: 10,000 probes took ~150 ms here, the joins ~15 ms.
_FLEET_VEHICLES = f"""
WITH a AS MATERIALIZED (
    SELECT dev, sum(k) AS k, sum(t) AS t, sum(n)::int AS n, min(lo) AS lo, max(hi) AS hi,
           min(f) AS f, max(l) AS l
      FROM ({
    _fleet_union(
        "vehicle",
        hourly_cols=", temp_sum, temp_min, temp_max, soc_first_ts, soc_last_ts",
        raw_cols=", battery_temp::float8, battery_temp, battery_temp, ts, ts",
    )
}
      ) x (dev, k, n, t, lo, hi, f, l)
     GROUP BY dev
), firsts AS (
    SELECT vehicle_id AS dev, ts, soc FROM vehicle_readings
     WHERE ts >= $1 AND ts < least($3, $2, $1 + $5::interval)
    UNION ALL
    SELECT vehicle_id, soc_first_ts, soc_first FROM vehicle_hourly WHERE hour = $3 AND $3 < $4
), lasts AS (
    SELECT vehicle_id AS dev, ts, soc FROM vehicle_readings
     WHERE ts >= greatest($4, $3, $2 - $5::interval) AND ts < $2
    UNION ALL
    SELECT vehicle_id, soc_last_ts, soc_last FROM vehicle_hourly
     WHERE hour = $4 - interval '1 hour' AND $3 < $4
)
SELECT array_agg(a.dev), array_agg((a.k * 1000000)::bigint), array_agg(a.t), array_agg(a.n),
       array_agg(a.lo), array_agg(a.hi),
       array_agg(coalesce(fs.soc, (SELECT r.soc FROM vehicle_readings r WHERE r.vehicle_id = a.dev
                                      AND r.ts = a.f AND r.ts >= $1 AND r.ts < $2))),
       array_agg(coalesce(ls.soc, (SELECT r.soc FROM vehicle_readings r WHERE r.vehicle_id = a.dev
                                      AND r.ts = a.l AND r.ts >= $1 AND r.ts < $2)))
  FROM a LEFT JOIN firsts fs ON fs.dev = a.dev AND fs.ts = a.f
         LEFT JOIN lasts ls ON ls.dev = a.dev AND ls.ts = a.l
"""


_NOTHING_FROM = {
    "meter": "SELECT coalesce(max(ts) < $1, true) FROM meter_current",
    "vehicle": "SELECT coalesce(max(ts) < $1, true) FROM vehicle_current",
}


async def _fleet_edges(db: DB, kind: Kind, start: datetime, end: datetime) -> tuple[datetime, ...]:
    """(hs, he): the rollup hours [hs, he) a fleet query reads; raw rows fill [start, hs) and
    [he, end).

    A window that ends now (the default report) ends inside the current hour, and no reading
    at or after `end` exists yet: that hour's rollup then holds exactly the readings of
    [he, end) and replaces the raw end edge (tens of thousands of rows fewer). The current
    tables hold each device's newest timestamp, so one look at them decides it; the caller
    must read this and the aggregates in one snapshot (REPEATABLE READ), or a reading
    committed in between could count.
    """
    hs, he = _edges(start, end)
    if hs <= he < end and await db.fetchval(_NOTHING_FROM[kind], end):
        return hs, he + timedelta(hours=1)
    return hs, he


async def fleet_meters(db: DB, start: datetime, end: datetime) -> dict[str, tuple[int, int]]:
    """Every meter's (Σ AC in micro-kWh, readings) over [start, end). Call inside one snapshot
    (see _fleet_edges)."""
    edges = await _fleet_edges(db, "meter", start, end)
    [(devs, kwh, n)] = await db.fetch(_FLEET_METERS, start, end, *edges)
    return dict(zip(devs or (), zip(kwh or (), n or (), strict=True), strict=True))


async def fleet_vehicles(
    db: DB, start: datetime, end: datetime, interval: timedelta
) -> dict[str, VehicleStats]:
    """Every vehicle's own statistics over [start, end) (`interval`: the nominal reading
    interval, where the first and last readings are looked for first). Call inside one
    snapshot (see _fleet_edges)."""
    edges = await _fleet_edges(db, "vehicle", start, end)
    [row] = await db.fetch(_FLEET_VEHICLES, start, end, *edges, interval)
    devs, *cols = row
    return dict(zip(devs or (), zip(*(c or () for c in cols), strict=True), strict=True))
