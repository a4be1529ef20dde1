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

from fleetdb.kinds import REGISTRY, DeviceKind, by_name

# A kind's name ("meter", "vehicle", or a registered one): fleetdb.kinds holds the records.
Kind = str
OnConflict = Literal["add", "replace"]

# date_bin from a UTC midnight aligns 10-minute and 4-hour buckets to UTC days.
_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"


@dataclass(frozen=True)
class Level:
    """One rollup granularity: its tables' suffix (per kind), bucket column and width."""

    name: str
    width: timedelta
    suffix: str  # the kind's table is {kind}_{suffix}
    column: str  # the bucket's start

    def table(self, kind: Kind | DeviceKind) -> str:
        return (kind if isinstance(kind, DeviceKind) else by_name(kind)).rollup(self.suffix)

    def bucket(self, ts: str) -> str:
        """SQL for the bucket start of timestamp expression `ts`."""
        if self.width == timedelta(hours=1):
            return f"date_trunc('hour', {ts}, 'UTC')"
        return f"date_bin(interval '{int(self.width.total_seconds())} seconds', {ts}, {_ORIGIN})"


TEN_MINUTES = Level("10min", timedelta(minutes=10), "10min", "bucket")
HOURLY = Level("hourly", timedelta(hours=1), "hourly", "hour")
FOUR_HOURS = Level("4h", timedelta(hours=4), "4h", "bucket")
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


DEVICE_COLUMN = {k.name: k.device for k in REGISTRY}


def _select(kind: DeviceKind) -> str:
    """The aggregates of a bucket, in the order of _values()."""
    out = f"sum({kind.kwh}), count(*)"
    if (s := kind.spread) is not None:
        out += f", sum({s.name}::float8), min({s.name}), max({s.name})"
    if (e := kind.edges) is not None:
        out += (
            f", (array_agg({e.name} ORDER BY ts))[1], min(ts),"
            f" (array_agg({e.name} ORDER BY ts DESC))[1], max(ts)"
        )
    return out


def value_columns(kind: DeviceKind) -> tuple[str, ...]:
    """A rollup row's columns after the device and bucket."""
    out = ["kwh_sum", "readings"]
    if (s := kind.spread) is not None:
        out += [f"{s.prefix}_sum", f"{s.prefix}_min", f"{s.prefix}_max"]
    if (e := kind.edges) is not None:
        p = e.prefix
        out += [f"{p}_first", f"{p}_first_ts", f"{p}_last", f"{p}_last_ts"]
    return tuple(out)


def _add(kind: DeviceKind) -> str:
    """Merging the aggregates of new readings into a stored row."""
    sets = ["kwh_sum = r.kwh_sum + excluded.kwh_sum", "readings = r.readings + excluded.readings"]
    if (s := kind.spread) is not None:
        p = s.prefix
        sets += [
            f"{p}_sum = r.{p}_sum + excluded.{p}_sum",
            f"{p}_min = least(r.{p}_min, excluded.{p}_min)",
            f"{p}_max = greatest(r.{p}_max, excluded.{p}_max)",
        ]
    if (e := kind.edges) is not None:
        p = e.prefix
        sets += [
            f"""{p}_first = CASE WHEN excluded.{p}_first_ts < r.{p}_first_ts
                            THEN excluded.{p}_first ELSE r.{p}_first END""",
            f"{p}_first_ts = least(r.{p}_first_ts, excluded.{p}_first_ts)",
            f"""{p}_last = CASE WHEN excluded.{p}_last_ts > r.{p}_last_ts
                           THEN excluded.{p}_last ELSE r.{p}_last END""",
            f"{p}_last_ts = greatest(r.{p}_last_ts, excluded.{p}_last_ts)",
        ]
    return ",\n           ".join(sets)


def _replace(kind: DeviceKind) -> str:
    return ", ".join(f"{c} = excluded.{c}" for c in value_columns(kind))


def upsert_sql(
    kind: Kind | DeviceKind,
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
    k = kind if isinstance(kind, DeviceKind) else by_name(kind)
    dev = k.device
    order = "2, 1" if bucket_major else "1, 2"
    set_clause = _add(k) if on_conflict == "add" else _replace(k)
    values = ", ".join(value_columns(k))
    return f"""INSERT INTO {level.table(k)} AS r ({dev}, {level.column}, {values})
    SELECT {dev}, {level.bucket("ts")}, {_select(k)}
    FROM {source} {where}
    GROUP BY 1, 2 ORDER BY {order}
    ON CONFLICT ({dev}, {level.column}) DO UPDATE
       SET {set_clause}"""


def rollup_tables(kinds: tuple[DeviceKind, ...] = REGISTRY) -> tuple[str, ...]:
    """Every rollup table, kind by kind (meters then vehicles), finest level first."""
    return tuple(lv.table(k) for k in kinds for lv in LEVELS)


def _combine(kind: DeviceKind) -> str:
    """The aggregates of finer rollup rows, in the order of value_columns()."""
    out = "sum(kwh_sum), sum(readings)::int"
    if (s := kind.spread) is not None:
        p = s.prefix
        out += f", sum({p}_sum), min({p}_min), max({p}_max)"
    if (e := kind.edges) is not None:
        p = e.prefix
        out += (
            f", (array_agg({p}_first ORDER BY {p}_first_ts))[1], min({p}_first_ts),"
            f" (array_agg({p}_last ORDER BY {p}_last_ts DESC))[1], max({p}_last_ts)"
        )
    return out


def combine_sql(kind: Kind | DeviceKind, level: Level, finer: Level) -> str:
    """INSERT ... SELECT of `level`'s rows for buckets [$1, $2) from `finer`'s rows, replacing
    stored ones (the finer rows must cover those buckets completely)."""
    k = kind if isinstance(kind, DeviceKind) else by_name(kind)
    dev, col, values = k.device, finer.column, ", ".join(value_columns(k))
    return f"""INSERT INTO {level.table(k)} AS r ({dev}, {level.column}, {values})
    SELECT {dev}, {level.bucket(col)}, {_combine(k)}
    FROM {finer.table(k)} WHERE {col} >= $1 AND {col} < $2
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT ({dev}, {level.column}) DO UPDATE
       SET {_replace(k)}"""
