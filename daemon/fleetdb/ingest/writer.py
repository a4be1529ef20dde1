"""One flush = one transaction of set-based SQL: history INSERT ... ON CONFLICT DO NOTHING whose
RETURNING rows feed every rollup level (so only really-new rows are counted), an upsert of the
newest reading per device into the current tables (never moving back in time), and the rejects.
Readings of days that are compacted or being compacted go to the late tables instead
(fleetdb.cold.late), still exactly once. A reading whose key is stored with other values is
kept as a conflict reject in the same transaction (fleetdb.ingest.conflicts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import asyncpg

from fleetdb.cold.late import closed_days, stored_in_blocks
from fleetdb.ingest.conflicts import Conflict, compare_with_block, find_stored, kind_of
from fleetdb.ingest.conflicts import store as store_conflicts
from fleetdb.ingest.messages import MeterReading, Rejected, VehicleReading
from fleetdb.rollups import LEVELS, Kind, upsert_sql


def _rolls(kind: Kind) -> str:
    # Every rollup level fed from the rows this statement really inserted (CTE `ins`).
    return "".join(f",\nroll_{lv.name} AS (\n    {upsert_sql(kind, lv, 'ins')}\n)" for lv in LEVELS)


# float8 -> numeric(12,6) in SQL: PostgreSQL converts with 15 significant digits, so the JSON
# number "2.345678" (parsed to the nearest double) is stored as exactly 2.345678.
# Rows are inserted in key order, ties in arrival order (ordinality): of two versions of one
# key in a batch, the first received is stored. The second column lists (1-based) the readings
# not inserted, only when there are any: the subquery is evaluated only then (an InitPlan is
# run on first use), so a batch without duplicates pays nothing for conflict detection. A
# reading equal to one inserted by this statement is a plain duplicate and left out.
INSERT_METERS = f"""
WITH ins AS (
    INSERT INTO meter_readings (meter_id, ts, kwh_consumed_ac, voltage, received_at)
    SELECT m, t, k::numeric(12,6), v, r
    FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::real[], $5::timestamptz[])
         WITH ORDINALITY AS u(m, t, k, v, r, o)
    ORDER BY m COLLATE "C", t, o
    ON CONFLICT DO NOTHING
    RETURNING meter_id, ts, kwh_consumed_ac, voltage
){_rolls("meter")}
SELECT count(*), CASE WHEN count(*) < cardinality($1::text[]) THEN (
    SELECT array_agg(o)
      FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::real[])
           WITH ORDINALITY AS d(m, t, k, v, o)
     WHERE NOT EXISTS (SELECT FROM ins WHERE ins.meter_id = d.m AND ins.ts = d.t
                          AND ins.kwh_consumed_ac = d.k::numeric(12,6) AND ins.voltage = d.v)
) END
FROM ins
"""

INSERT_VEHICLES = f"""
WITH ins AS (
    INSERT INTO vehicle_readings (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, received_at)
    SELECT i, t, s, k::numeric(12,6), b, r
    FROM unnest($1::text[], $2::timestamptz[], $3::real[], $4::float8[], $5::real[],
                $6::timestamptz[]) WITH ORDINALITY AS u(i, t, s, k, b, r, o)
    ORDER BY i COLLATE "C", t, o
    ON CONFLICT DO NOTHING
    RETURNING vehicle_id, ts, soc, kwh_delivered_dc, battery_temp
){_rolls("vehicle")}
SELECT count(*), CASE WHEN count(*) < cardinality($1::text[]) THEN (
    SELECT array_agg(o)
      FROM unnest($1::text[], $2::timestamptz[], $3::real[], $4::float8[], $5::real[])
           WITH ORDINALITY AS d(i, t, s, k, b, o)
     WHERE NOT EXISTS (SELECT FROM ins WHERE ins.vehicle_id = d.i AND ins.ts = d.t
                          AND ins.soc = d.s AND ins.kwh_delivered_dc = d.k::numeric(12,6)
                          AND ins.battery_temp = d.b)
) END
FROM ins
"""

# A reading of a day that is no longer open, unless stored already: the raw partitions still
# hold a `compacting` day; blocks are checked before this (stored_in_blocks).
INSERT_METERS_LATE = """
WITH ins AS (
    INSERT INTO meter_late (meter_id, ts, kwh_consumed_ac, voltage, received_at)
    SELECT m, t, k::numeric(12,6), v, r
    FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::real[], $5::timestamptz[])
         AS u(m, t, k, v, r)
    WHERE NOT EXISTS (SELECT FROM meter_readings x WHERE x.meter_id = u.m AND x.ts = u.t)
    ON CONFLICT DO NOTHING
    RETURNING meter_id, ts
)
SELECT meter_id, ts FROM ins
"""

INSERT_VEHICLES_LATE = """
WITH ins AS (
    INSERT INTO vehicle_late (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, received_at)
    SELECT i, t, s, k::numeric(12,6), b, r
    FROM unnest($1::text[], $2::timestamptz[], $3::real[], $4::float8[], $5::real[],
                $6::timestamptz[]) AS u(i, t, s, k, b, r)
    WHERE NOT EXISTS (SELECT FROM vehicle_readings x WHERE x.vehicle_id = u.i AND x.ts = u.t)
    ON CONFLICT DO NOTHING
    RETURNING vehicle_id, ts
)
SELECT vehicle_id, ts FROM ins
"""

# Only the newest reading per device of the batch is sent (ON CONFLICT DO UPDATE may not touch
# one key twice), and only applied when newer than the stored one: the hot row never goes back.
UPSERT_METER_CURRENT = """
INSERT INTO meter_current AS c (meter_id, ts, kwh_consumed_ac, voltage, updated_at)
SELECT m, t, k::numeric(12,6), v, now()
FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::real[]) AS u(m, t, k, v)
ORDER BY m COLLATE "C"
ON CONFLICT (meter_id) DO UPDATE
   SET ts = excluded.ts, kwh_consumed_ac = excluded.kwh_consumed_ac,
       voltage = excluded.voltage, updated_at = excluded.updated_at
 WHERE c.ts < excluded.ts
"""

UPSERT_VEHICLE_CURRENT = """
INSERT INTO vehicle_current AS c (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, updated_at)
SELECT i, t, s, k::numeric(12,6), b, now()
FROM unnest($1::text[], $2::timestamptz[], $3::real[], $4::float8[], $5::real[]) AS u(i, t, s, k, b)
ORDER BY i COLLATE "C"
ON CONFLICT (vehicle_id) DO UPDATE
   SET ts = excluded.ts, soc = excluded.soc, kwh_delivered_dc = excluded.kwh_delivered_dc,
       battery_temp = excluded.battery_temp, updated_at = excluded.updated_at
 WHERE c.ts < excluded.ts
"""

INSERT_REJECTS = """
INSERT INTO rejected_messages (received_at, topic, payload, reason, payload_sha256, field, rule)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::bytea[], $4::text[], $5::bytea[],
                     $6::text[], $7::text[])
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed flush did. duplicates = readings that were already stored with the
    same values; conflicts = readings whose key was stored with other values (kept as
    rejects, the stored value unchanged), newly kept by this flush.

    Per reading, for an HTTP request's answer (fleetd.ingest.tickets): `missed` holds the id()
    of each reading object not inserted (a duplicate or a conflict), `conflict_keys` the
    (kind, device, ts) of the conflicts, `refused` the id() and reason of readings the database
    refused (stored as rejects instead). Empty on the hot path unless something was missed."""

    meters_inserted: int
    vehicles_inserted: int
    meters_total: int
    vehicles_total: int
    rejects: int
    meter_conflicts: int = 0
    vehicle_conflicts: int = 0
    missed: frozenset[int] = frozenset()
    conflict_keys: frozenset[tuple[str, str, datetime]] = frozenset()
    refused: tuple[tuple[int, str], ...] = ()

    @property
    def inserted(self) -> int:
        return self.meters_inserted + self.vehicles_inserted

    @property
    def conflicts(self) -> int:
        return self.meter_conflicts + self.vehicle_conflicts

    @property
    def duplicates(self) -> int:
        return self.meters_total + self.vehicles_total - self.inserted - self.conflicts

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.meters_inserted + other.meters_inserted,
            self.vehicles_inserted + other.vehicles_inserted,
            self.meters_total + other.meters_total,
            self.vehicles_total + other.vehicles_total,
            self.rejects + other.rejects,
            self.meter_conflicts + other.meter_conflicts,
            self.vehicle_conflicts + other.vehicle_conflicts,
            self.missed | other.missed,
            self.conflict_keys | other.conflict_keys,
            self.refused + other.refused,
        )


R = TypeVar("R", MeterReading, VehicleReading)


def _meter_cols(readings: Sequence[MeterReading]) -> tuple[list[Any], ...]:
    """Column arrays: ids, ts, kWh, voltage (the order every meter statement takes)."""
    return (
        [m.meter_id for m in readings],
        [m.ts for m in readings],
        [m.kwh_consumed_ac for m in readings],
        [m.voltage for m in readings],
    )


def _vehicle_cols(readings: Sequence[VehicleReading]) -> tuple[list[Any], ...]:
    """Column arrays: ids, ts, SoC, kWh, battery temperature."""
    return (
        [v.vehicle_id for v in readings],
        [v.ts for v in readings],
        [v.soc for v in readings],
        [v.kwh_delivered_dc for v in readings],
        [v.battery_temp for v in readings],
    )


def _with_received(
    cols: Callable[[Sequence[R]], tuple[list[Any], ...]], pairs: Sequence[tuple[R, datetime]]
) -> tuple[list[Any], ...]:
    """A history statement's parameters: the reading columns, then the receive times."""
    return (*cols([r for r, _ in pairs]), [t for _, t in pairs])


def _device(r: MeterReading | VehicleReading) -> str:
    return r.meter_id if isinstance(r, MeterReading) else r.vehicle_id


def _newest(readings: Sequence[tuple[R, datetime]]) -> list[R]:
    """The newest reading of each device (the current tables take one row per device)."""
    newest: dict[str, R] = {}
    for r, _ in readings:
        device = _device(r)
        seen = newest.get(device)
        if seen is None or r.ts > seen.ts:
            newest[device] = r
    return list(newest.values())


def _split(
    readings: Sequence[tuple[R, datetime]], closed: dict[date, str]
) -> tuple[list[tuple[R, datetime]], list[tuple[R, datetime]]]:
    keep: list[tuple[R, datetime]] = []
    late: list[tuple[R, datetime]] = []
    for pair in readings:
        (late if pair[0].ts.date() in closed else keep).append(pair)
    return keep, late


async def _not_in_blocks(
    conn: asyncpg.Connection,
    kind: Kind,
    late: list[tuple[R, datetime]],
    closed: dict[date, str],
    conflicts: list[Conflict],
) -> list[tuple[R, datetime]]:
    """The late readings not stored in a compacted day's blocks; those stored there with
    other values are added to `conflicts`."""
    cold = [(_device(r), r.ts) for r, _ in late if closed[r.ts.date()] == "compacted"]
    if not cold:
        return late
    stored = await stored_in_blocks(conn, kind, cold)
    rest = []
    for r, t in late:
        twin = stored.get((_device(r), r.ts))
        if twin is None:
            rest.append((r, t))
        elif (c := compare_with_block(r, t, *twin)) is not None:
            conflicts.append(c)
    return rest


async def _write_late(
    conn: asyncpg.Connection,
    meters: list[tuple[MeterReading, datetime]],
    vehicles: list[tuple[VehicleReading, datetime]],
    closed: dict[date, str],
    conflicts: list[Conflict],
    *,
    missed: set[int],
) -> tuple[int, int]:
    """Readings of closed days into the late tables, unless stored already (a conflict when
    stored with other values: in the blocks, the raw partitions of a `compacting` day, or
    the late table itself). A rare path: conflicts are looked for whenever one was not
    inserted. The id() of each reading not inserted is added to `missed`."""
    every = [r for r, _ in meters] + [r for r, _ in vehicles]
    meters = await _not_in_blocks(conn, "meter", meters, closed, conflicts)
    vehicles = await _not_in_blocks(conn, "vehicle", vehicles, closed, conflicts)
    inserted: set[tuple[str, str, datetime]] = set()
    if meters:
        rows = await conn.fetch(INSERT_METERS_LATE, *_with_received(_meter_cols, meters))
        inserted.update(("meter", r[0], r[1]) for r in rows)
        if len(rows) < len(meters):
            conflicts += await find_stored(conn, "meter", meters)
            conflicts += await find_stored(conn, "meter", meters, late=True)
    m = len(inserted)
    if vehicles:
        rows = await conn.fetch(INSERT_VEHICLES_LATE, *_with_received(_vehicle_cols, vehicles))
        inserted.update(("vehicle", r[0], r[1]) for r in rows)
        if len(rows) < len(vehicles):
            conflicts += await find_stored(conn, "vehicle", vehicles)
            conflicts += await find_stored(conn, "vehicle", vehicles, late=True)
    missed.update(id(r) for r in every if (kind_of(r), _device(r), r.ts) not in inserted)
    return m, len(inserted) - m


async def _insert(
    conn: asyncpg.Connection,
    sql: str,
    pairs: Sequence[tuple[R, datetime]],
    params: tuple[list[Any], ...],
    conflicts: list[Conflict],
    *,
    missed: set[int],
) -> int:
    """One history INSERT; the readings it did not insert are checked for conflicts, and
    their id() added to `missed`."""
    row = await conn.fetchrow(sql, *params)  # an aggregate: always one row
    inserted, not_inserted = (0, None) if row is None else (row[0], row[1])
    if not_inserted:
        kind = kind_of(pairs[0][0])
        left_out = [pairs[i - 1] for i in not_inserted]
        missed.update(id(r) for r, _ in left_out)
        conflicts += await find_stored(conn, kind, left_out)
    return int(inserted)


async def _store_conflicts(conn: asyncpg.Connection, conflicts: list[Conflict]) -> tuple[int, int]:
    """Keep the conflicts as rejects; the new ones of each kind."""
    meters = [c for c in conflicts if c.kind == "meter"]
    vehicles = [c for c in conflicts if c.kind == "vehicle"]
    return await store_conflicts(conn, meters), await store_conflicts(conn, vehicles)


async def write_batch(
    conn: asyncpg.Connection,
    meters: Sequence[tuple[MeterReading, datetime]],
    vehicles: Sequence[tuple[VehicleReading, datetime]],
    rejects: Sequence[tuple[Rejected, datetime]],
) -> WriteResult:
    """Write one batch in one transaction. Each element pairs a reading with its receive time.

    The caller makes sure the partitions of every reading's day exist.
    """
    late_m_inserted = late_v_inserted = meters_inserted = vehicles_inserted = 0
    totals = (len(meters), len(vehicles))
    every_m, every_v = meters, vehicles
    conflicts: list[Conflict] = []
    missed: set[int] = set()
    # Per reading on the hot path: one datetime comparison; date() only for the rare old ones.
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    old = {r.ts.date() for r, _ in meters if r.ts < midnight}
    old.update(r.ts.date() for r, _ in vehicles if r.ts < midnight)
    async with conn.transaction():
        closed = await closed_days(conn, old) if old else {}
        if closed:
            meters, late_m = _split(meters, closed)
            vehicles, late_v = _split(vehicles, closed)
            late_m_inserted, late_v_inserted = await _write_late(
                conn, late_m, late_v, closed, conflicts, missed=missed
            )
        if meters:
            params = _with_received(_meter_cols, meters)
            meters_inserted = await _insert(
                conn, INSERT_METERS, meters, params, conflicts, missed=missed
            )
        if every_m:
            # Late readings too: the hot row may move forward (a device back after days).
            latest_m = _newest(every_m)
            await conn.execute(UPSERT_METER_CURRENT, *_meter_cols(latest_m))
        if vehicles:
            params = _with_received(_vehicle_cols, vehicles)
            vehicles_inserted = await _insert(
                conn, INSERT_VEHICLES, vehicles, params, conflicts, missed=missed
            )
        if every_v:
            latest_v = _newest(every_v)
            await conn.execute(UPSERT_VEHICLE_CURRENT, *_vehicle_cols(latest_v))
        if rejects:
            await conn.execute(
                INSERT_REJECTS,
                [r for _, r in rejects],
                [j.topic for j, _ in rejects],
                [j.payload for j, _ in rejects],
                [j.reason for j, _ in rejects],
                [hashlib.sha256(j.payload).digest() for j, _ in rejects],
                [j.field for j, _ in rejects],
                [j.rule for j, _ in rejects],
            )
        # In the batch's transaction: a conflict is kept exactly when its batch commits.
        kept = await _store_conflicts(conn, conflicts) if conflicts else (0, 0)
    return WriteResult(
        meters_inserted + late_m_inserted,
        vehicles_inserted + late_v_inserted,
        *totals,
        len(rejects),
        *kept,
        frozenset(missed),
        frozenset((c.kind, c.device, c.ts) for c in conflicts),
    )
