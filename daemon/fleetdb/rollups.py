"""The rollup levels and the one definition of a rollup row at each.

Every level holds, per device and UTC-aligned bucket, the same figures as the hourly rollup
(Σ kWh as exact `numeric`, count, and for vehicles temperature sum/min/max and first/last SoC
with their timestamps). The ingest transaction feeds every level from the rows its
INSERT ... RETURNING really inserted, so each level is exact and counted once; the direct
backfill builds them from raw rows with the same expressions.

Why three levels: a fleet-wide 24 h report covers ~10,000 devices per kind. From hourly rows
and raw edges that is ~24 rollup rows plus up to 60 raw readings per device at each edge; with
4-hour blocks in the middle and 10-minute blocks at the edges it is ~6 block rows, a few hourly
and 10-minute rows, and at most 9 raw readings per edge (see fleetctl.analytics.pieces).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Kind = Literal["meter", "vehicle"]
OnConflict = Literal["add", "replace"]

# date_bin from a UTC midnight aligns 10-minute and 4-hour buckets to UTC days.
_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"


@dataclass(frozen=True)
class Level:
    """One rollup granularity: its tables (per kind), bucket column and width."""

    name: str
    width: timedelta
    meter_table: str
    vehicle_table: str
    column: str  # the bucket's start

    def table(self, kind: Kind) -> str:
        return self.meter_table if kind == "meter" else self.vehicle_table

    def bucket(self, ts: str) -> str:
        """SQL for the bucket start of timestamp expression `ts`."""
        if self.width == timedelta(hours=1):
            return f"date_trunc('hour', {ts}, 'UTC')"
        return f"date_bin(interval '{int(self.width.total_seconds())} seconds', {ts}, {_ORIGIN})"


TEN_MINUTES = Level("10min", timedelta(minutes=10), "meter_10min", "vehicle_10min", "bucket")
HOURLY = Level("hourly", timedelta(hours=1), "meter_hourly", "vehicle_hourly", "hour")
FOUR_HOURS = Level("4h", timedelta(hours=4), "meter_4h", "vehicle_4h", "bucket")
# Finest first. Every width divides the next, and all divide a day (partitions are daily).
LEVELS = (TEN_MINUTES, HOURLY, FOUR_HOURS)


def floor_to(ts: datetime, width: timedelta) -> datetime:
    """`ts` rounded down to a multiple of `width` within its UTC day (widths divide a day)."""
    midnight = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + (ts - midnight) // width * width


def ceil_to(ts: datetime, width: timedelta) -> datetime:
    """`ts` rounded up to a multiple of `width` within its UTC day."""
    floor = floor_to(ts, width)
    return floor if floor == ts else floor + width


DEVICE_COLUMN = {"meter": "meter_id", "vehicle": "vehicle_id"}

_SELECT = {
    "meter": "sum(kwh_consumed_ac), count(*)",
    "vehicle": (
        "sum(kwh_delivered_dc), count(*), "
        "sum(battery_temp::float8), min(battery_temp), max(battery_temp), "
        "(array_agg(soc ORDER BY ts))[1], min(ts), (array_agg(soc ORDER BY ts DESC))[1], max(ts)"
    ),
}
_VALUES = {
    "meter": "kwh_sum, readings",
    "vehicle": (
        "kwh_sum, readings, temp_sum, temp_min, temp_max, "
        "soc_first, soc_first_ts, soc_last, soc_last_ts"
    ),
}
_ADD = {
    "meter": """kwh_sum = r.kwh_sum + excluded.kwh_sum,
           readings = r.readings + excluded.readings""",
    "vehicle": """kwh_sum = r.kwh_sum + excluded.kwh_sum,
           readings = r.readings + excluded.readings,
           temp_sum = r.temp_sum + excluded.temp_sum,
           temp_min = least(r.temp_min, excluded.temp_min),
           temp_max = greatest(r.temp_max, excluded.temp_max),
           soc_first = CASE WHEN excluded.soc_first_ts < r.soc_first_ts
                            THEN excluded.soc_first ELSE r.soc_first END,
           soc_first_ts = least(r.soc_first_ts, excluded.soc_first_ts),
           soc_last = CASE WHEN excluded.soc_last_ts > r.soc_last_ts
                           THEN excluded.soc_last ELSE r.soc_last END,
           soc_last_ts = greatest(r.soc_last_ts, excluded.soc_last_ts)""",
}


def _replace(kind: Kind) -> str:
    return ", ".join(f"{c} = excluded.{c}" for c in _VALUES[kind].replace(" ", "").split(","))


def upsert_sql(
    kind: Kind,
    level: Level,
    source: str,
    *,
    where: str = "",
    on_conflict: OnConflict = "add",
    bucket_major: bool = False,
) -> str:
    """INSERT ... SELECT of `level`'s rollup rows aggregated from `source` (raw reading rows).

    "add" merges into existing rows (ingest: `source` holds only newly inserted readings);
    "replace" overwrites them (backfill: `source` covers whole buckets). Ingest writes rows
    in (device, bucket) order, one lock order for concurrent flushes; `bucket_major` writes
    them bucket by bucket, the physical order live ingest produces over time (backfill).
    """
    dev = DEVICE_COLUMN[kind]
    order = "2, 1" if bucket_major else "1, 2"
    set_clause = _ADD[kind] if on_conflict == "add" else _replace(kind)
    return f"""INSERT INTO {level.table(kind)} AS r ({dev}, {level.column}, {_VALUES[kind]})
    SELECT {dev}, {level.bucket("ts")}, {_SELECT[kind]}
    FROM {source} {where}
    GROUP BY 1, 2 ORDER BY {order}
    ON CONFLICT ({dev}, {level.column}) DO UPDATE
       SET {set_clause}"""


def rollup_tables() -> tuple[str, ...]:
    """Every rollup table, meters then vehicles, finest level first."""
    return tuple(lv.meter_table for lv in LEVELS) + tuple(lv.vehicle_table for lv in LEVELS)
