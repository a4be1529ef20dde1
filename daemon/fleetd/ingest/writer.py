"""One flush = one transaction of set-based SQL: history INSERT ... ON CONFLICT DO NOTHING whose
RETURNING rows feed every rollup level (so only really-new rows are counted), an upsert of the
newest reading per device into the current tables (never moving back in time), and the rejects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from fleetd.messages import MeterReading, Rejected, VehicleReading
from fleetdb.rollups import LEVELS, Kind, upsert_sql


def _rolls(kind: Kind) -> str:
    # Every rollup level fed from the rows this statement really inserted (CTE `ins`).
    return "".join(f",\nroll_{lv.name} AS (\n    {upsert_sql(kind, lv, 'ins')}\n)" for lv in LEVELS)


# float8 -> numeric(12,6) in SQL: PostgreSQL converts with 15 significant digits, so the JSON
# number "2.345678" (parsed to the nearest double) is stored as exactly 2.345678.
INSERT_METERS = f"""
WITH ins AS (
    INSERT INTO meter_readings (meter_id, ts, kwh_consumed_ac, voltage, received_at)
    SELECT m, t, k::numeric(12,6), v, r
    FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::real[], $5::timestamptz[])
         AS u(m, t, k, v, r)
    ORDER BY m COLLATE "C", t
    ON CONFLICT DO NOTHING
    RETURNING meter_id, ts, kwh_consumed_ac
){_rolls("meter")}
SELECT count(*) FROM ins
"""

INSERT_VEHICLES = f"""
WITH ins AS (
    INSERT INTO vehicle_readings (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, received_at)
    SELECT i, t, s, k::numeric(12,6), b, r
    FROM unnest($1::text[], $2::timestamptz[], $3::real[], $4::float8[], $5::real[],
                $6::timestamptz[]) AS u(i, t, s, k, b, r)
    ORDER BY i COLLATE "C", t
    ON CONFLICT DO NOTHING
    RETURNING vehicle_id, ts, soc, kwh_delivered_dc, battery_temp
){_rolls("vehicle")}
SELECT count(*) FROM ins
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
INSERT INTO rejected_messages (received_at, topic, payload, reason, payload_sha256)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::bytea[], $4::text[], $5::bytea[])
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed flush did. duplicates = readings that were already stored."""

    meters_inserted: int
    vehicles_inserted: int
    meters_total: int
    vehicles_total: int
    rejects: int

    @property
    def inserted(self) -> int:
        return self.meters_inserted + self.vehicles_inserted

    @property
    def duplicates(self) -> int:
        return self.meters_total + self.vehicles_total - self.inserted


def _newest_meters(readings: Sequence[tuple[MeterReading, datetime]]) -> list[MeterReading]:
    newest: dict[str, MeterReading] = {}
    for r, _ in readings:
        seen = newest.get(r.meter_id)
        if seen is None or r.ts > seen.ts:
            newest[r.meter_id] = r
    return list(newest.values())


def _newest_vehicles(readings: Sequence[tuple[VehicleReading, datetime]]) -> list[VehicleReading]:
    newest: dict[str, VehicleReading] = {}
    for r, _ in readings:
        seen = newest.get(r.vehicle_id)
        if seen is None or r.ts > seen.ts:
            newest[r.vehicle_id] = r
    return list(newest.values())


async def write_batch(
    conn: asyncpg.Connection,
    meters: Sequence[tuple[MeterReading, datetime]],
    vehicles: Sequence[tuple[VehicleReading, datetime]],
    rejects: Sequence[tuple[Rejected, datetime]],
) -> WriteResult:
    """Write one batch in one transaction. Each element pairs a reading with its receive time.

    The caller makes sure the partitions of every reading's day exist.
    """
    meters_inserted = vehicles_inserted = 0
    async with conn.transaction():
        if meters:
            meters_inserted = await conn.fetchval(
                INSERT_METERS,
                [m.meter_id for m, _ in meters],
                [m.ts for m, _ in meters],
                [m.kwh_consumed_ac for m, _ in meters],
                [m.voltage for m, _ in meters],
                [r for _, r in meters],
            )
            latest_m = _newest_meters(meters)
            await conn.execute(
                UPSERT_METER_CURRENT,
                [m.meter_id for m in latest_m],
                [m.ts for m in latest_m],
                [m.kwh_consumed_ac for m in latest_m],
                [m.voltage for m in latest_m],
            )
        if vehicles:
            vehicles_inserted = await conn.fetchval(
                INSERT_VEHICLES,
                [v.vehicle_id for v, _ in vehicles],
                [v.ts for v, _ in vehicles],
                [v.soc for v, _ in vehicles],
                [v.kwh_delivered_dc for v, _ in vehicles],
                [v.battery_temp for v, _ in vehicles],
                [r for _, r in vehicles],
            )
            latest_v = _newest_vehicles(vehicles)
            await conn.execute(
                UPSERT_VEHICLE_CURRENT,
                [v.vehicle_id for v in latest_v],
                [v.ts for v in latest_v],
                [v.soc for v in latest_v],
                [v.kwh_delivered_dc for v in latest_v],
                [v.battery_temp for v in latest_v],
            )
        if rejects:
            await conn.execute(
                INSERT_REJECTS,
                [r for _, r in rejects],
                [j.topic for j, _ in rejects],
                [j.payload for j, _ in rejects],
                [j.reason for j, _ in rejects],
                [hashlib.sha256(j.payload).digest() for j, _ in rejects],
            )
    return WriteResult(meters_inserted, vehicles_inserted, len(meters), len(vehicles), len(rejects))
