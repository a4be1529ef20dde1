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


@dataclass
class Battery:
    """A vehicle's own readings over a segment: DC energy, battery temperature, SoC."""

    kwh: Decimal
    temp_sum: float
    readings: int
    temp_min: float | None
    temp_max: float | None
    soc_first: float | None
    soc_last: float | None


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


async def battery(db: DB, segments: list[Segment]) -> dict[int, Battery]:
    """A vehicle's own DC, battery temperature and SoC statistics per segment key."""
    if not segments:
        return {}
    rows = await db.fetch(_BATTERY_SQL, *_args(segments))
    return {
        r["k"]: Battery(
            r["kwh"] or Decimal(0),
            r["temp_sum"] or 0.0,
            r["n"] or 0,
            r["temp_min"],
            r["temp_max"],
            r["soc_first"],
            r["soc_last"],
        )
        for r in rows
    }


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
# plain range scans (BRIN on ts) aggregated per device, with no per-device index probes.
_FLEET_ENERGY = """
SELECT dev, sum(k) AS kwh, sum(n)::int AS n FROM (
    SELECT {col} AS dev, kwh_sum AS k, readings AS n FROM {hourly} WHERE hour >= $3 AND hour < $4
    UNION ALL
    SELECT {col}, {kwh}, 1 FROM {raw} WHERE ts >= $1 AND ts < least($3, $2)
    UNION ALL
    SELECT {col}, {kwh}, 1 FROM {raw} WHERE ts >= greatest($4, $3) AND ts < $2
) x GROUP BY dev
"""

# Plain aggregates only (hash-aggregated in parallel): an ordered array_agg for first/last SoC
# made PostgreSQL sort all ~830,000 rows of a 24 h window. First/last SoC are then read by
# primary key at the first/last timestamp found here (_FLEET_SOC).
_FLEET_BATTERY = """
SELECT dev, sum(k) AS kwh, sum(ts_) AS temp_sum, sum(n)::int AS n, min(tmin) AS temp_min,
       max(tmax) AS temp_max, min(sft) AS first_ts, max(slt) AS last_ts
FROM (
    SELECT vehicle_id AS dev, kwh_sum AS k, temp_sum AS ts_, readings AS n, temp_min AS tmin,
           temp_max AS tmax, soc_first_ts AS sft, soc_last_ts AS slt
      FROM vehicle_hourly WHERE hour >= $3 AND hour < $4
    UNION ALL
    SELECT vehicle_id, kwh_delivered_dc, battery_temp::float8, 1, battery_temp, battery_temp, ts, ts
      FROM vehicle_readings WHERE ts >= $1 AND ts < least($3, $2)
    UNION ALL
    SELECT vehicle_id, kwh_delivered_dc, battery_temp::float8, 1, battery_temp, battery_temp, ts, ts
      FROM vehicle_readings WHERE ts >= greatest($4, $3) AND ts < $2
) x GROUP BY dev
"""

_FLEET_SOC = """
SELECT u.i, r.soc FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS u(dev, t, i)
  JOIN vehicle_readings r ON r.vehicle_id = u.dev AND r.ts = u.t
 WHERE r.ts >= $3 AND r.ts < $4
"""


async def fleet_energy(db: DB, kind: Kind, start: datetime, end: datetime) -> dict[str, Energy]:
    """Σ kWh and reading count of every device of a kind over [start, end)."""
    hourly, col, raw, kwh = _TABLES[kind]
    sql = _FLEET_ENERGY.format(hourly=hourly, col=col, raw=raw, kwh=kwh)
    rows = await db.fetch(sql, start, end, *_edges(start, end))
    return {r["dev"]: Energy(r["kwh"], r["n"]) for r in rows}


async def fleet_battery(db: DB, start: datetime, end: datetime) -> dict[str, Battery]:
    """Every vehicle's own DC, battery temperature and SoC statistics over [start, end)."""
    rows = await db.fetch(_FLEET_BATTERY, start, end, *_edges(start, end))
    devs = [r["dev"] for r in rows]
    stamps = [r["first_ts"] for r in rows] + [r["last_ts"] for r in rows]
    soc: dict[int, float] = {
        s["i"]: s["soc"] for s in await db.fetch(_FLEET_SOC, devs + devs, stamps, start, end)
    }
    n = len(rows)
    return {
        r["dev"]: Battery(
            r["kwh"],
            r["temp_sum"],
            r["n"],
            r["temp_min"],
            r["temp_max"],
            soc.get(i + 1),  # WITH ORDINALITY counts from 1
            soc.get(n + i + 1),
        )
        for i, r in enumerate(rows)
    }
