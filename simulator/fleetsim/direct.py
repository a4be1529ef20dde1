"""`fleet-sim backfill --direct`: history straight into PostgreSQL, BYPASSING fleetd and MQTT.

For demos and benchmarks that need days of history in minutes. Nothing here exercises the
ingest path: rows go in with COPY (text format: the kWh are the model's exact decimal strings,
parsed by PostgreSQL itself, so no float or Decimal conversion stands between the model and
numeric(12,6)), one COPY per table per day on two connections at once, fed tick by tick while
the next tick is generated. The rollups of every level are then built from the raw rows in SQL
with the same expressions as `fleetdb.ingest.writer`, so they are exact by construction, and the
current tables get the newest row per device.

The range must be empty of history: COPY cannot skip existing keys, and a half-filled range
would make the rollups disagree with what fleetd maintained.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fleetdb.fold import LOCK_SHARED, fold, fold_until, marks
from fleetdb.partitions import PartitionCache
from fleetdb.rollups import LEVELS, Kind, Level, ceil_to, floor_to, upsert_sql
from fleetsim.errors import database_error
from fleetsim.model import MICRO, Fleet, FleetConfig
from fleetsvc.secrets import mask_url

METER_COLUMNS = ("meter_id", "ts", "kwh_consumed_ac", "voltage", "received_at")
VEHICLE_COLUMNS = ("vehicle_id", "ts", "soc", "kwh_delivered_dc", "battery_temp", "received_at")


# Complete buckets of every rollup level are recomputed from the raw rows, so a bucket the range
# only partly covers still gets an exact rollup of everything stored in it. Rows are written
# bucket by bucket, the physical order live ingest produces, so benchmarks read rollups laid out
# as in production (device-major rollups would make fleet reports look faster than they are).
def _rollup_sql(kind: Kind, level: Level) -> str:
    source = "meter_readings" if kind == "meter" else "vehicle_readings"
    return upsert_sql(
        kind,
        level,
        source,
        where="WHERE ts >= $1 AND ts < $2",
        on_conflict="replace",
        bucket_major=True,
    )


# The ingest order (backfill_direct(ingest_order=True)): each tick is committed on its own as
# fleetd commits a flush, its history rows inserted in device order and every rollup level fed
# from the rows inserted (fleetdb.ingest.writer's statement, from a staging table instead of
# arrays) where the level's bucket is folded already, so rollup rows of a range before the
# watermarks are created at their bucket's first tick and updated in place at each later one,
# as late readings leave them; after the watermarks, the fold at the end writes them. A COPY of
# each tick into the staging table is cheaper than sending arrays.
_STAGE = {"meter": "fleet_sim_tick_meters", "vehicle": "fleet_sim_tick_vehicles"}
_RAW = {
    "meter": ("meter_readings", METER_COLUMNS),
    "vehicle": ("vehicle_readings", VEHICLE_COLUMNS),
}


def _ingest_sql(kind: Kind) -> str:
    # As fleetdb.ingest.writer: a level is fed only the rows of buckets before its watermark
    # ($1 finest first), the others are left to the fold.
    table, columns = _RAW[kind]
    cols = ", ".join(columns)
    returned = ", ".join(c for c in columns if c != "received_at")
    rolls = "".join(
        f",\nroll_{lv.name} AS (\n    {upsert_sql(kind, lv, 'ins', where=f'WHERE ts < ${i}')}\n)"
        for i, lv in enumerate(LEVELS, start=1)
    )
    return f"""WITH ins AS (
    INSERT INTO {table} ({cols}) SELECT {cols} FROM {_STAGE[kind]} ORDER BY 1, 2
    RETURNING {returned}
){rolls}
SELECT count(*) FROM ins"""


async def _ingest_tick(conn: asyncpg.Connection, kind: Kind, text: bytes) -> None:
    """One tick of `kind` in one transaction, as one fleetd flush of all its devices."""
    # Under the fold's lock (shared) with the watermarks read after it, as fleetd's flushes:
    # a tick committed in the middle of a fold would otherwise be in no rollup of the buckets
    # that fold passed, or have its rollup rows replaced by the fold's older aggregate.
    async with conn.transaction(isolation="read_committed"):
        await conn.execute(LOCK_SHARED)
        folded = await marks(conn)
        await conn.copy_to_table(_STAGE[kind], source=io.BytesIO(text), columns=_RAW[kind][1])
        await conn.execute(_ingest_sql(kind), *(folded[lv.name] for lv in LEVELS))


async def _ingest_day(
    fleet: Fleet, lo: datetime, hi: datetime, conn_m: asyncpg.Connection, conn_v: asyncpg.Connection
) -> tuple[int, int]:
    """[lo, hi) tick by tick in the ingest order (see _ingest_sql); the next tick is generated
    while this one is written. Each time a 10-minute bucket closes the levels are folded up to
    it, as a running fleetd's FoldLoop does (on a database whose watermarks lie after the
    range, as a fresh one's, that finds nothing to fold and the ticks feed the levels)."""
    n_m = n_v = 0
    ts = lo
    finest = LEVELS[0].width
    while ts < hi:
        m_text, v_text = _tick_texts(fleet, ts)
        writes = []
        if fleet.meter_ids:
            writes.append(_ingest_tick(conn_m, "meter", m_text))
            n_m += len(fleet.meter_ids)
        if fleet.vehicle_ids:
            writes.append(_ingest_tick(conn_v, "vehicle", v_text))
            n_v += len(fleet.vehicle_ids)
        await asyncio.gather(*writes)
        ts += fleet.interval
        if floor_to(ts, finest) > floor_to(ts - fleet.interval, finest):
            await fold(conn_m, floor_to(ts, finest), timedelta(0))
    return n_m, n_v


CURRENT_METERS = """
INSERT INTO meter_current AS c (meter_id, ts, updated_at, voltage, kwh_consumed_ac)
SELECT DISTINCT ON (meter_id) meter_id, ts, now(), voltage, kwh_consumed_ac
FROM meter_readings WHERE ts >= $1 AND ts < $2
ORDER BY meter_id, ts DESC
ON CONFLICT (meter_id) DO UPDATE
   SET ts = excluded.ts, updated_at = excluded.updated_at, voltage = excluded.voltage,
       kwh_consumed_ac = excluded.kwh_consumed_ac
 WHERE c.ts < excluded.ts
"""

CURRENT_VEHICLES = """
INSERT INTO vehicle_current AS c (vehicle_id, ts, updated_at, soc, battery_temp, kwh_delivered_dc)
SELECT DISTINCT ON (vehicle_id) vehicle_id, ts, now(), soc, battery_temp, kwh_delivered_dc
FROM vehicle_readings WHERE ts >= $1 AND ts < $2
ORDER BY vehicle_id, ts DESC
ON CONFLICT (vehicle_id) DO UPDATE
   SET ts = excluded.ts, updated_at = excluded.updated_at, soc = excluded.soc,
       battery_temp = excluded.battery_temp, kwh_delivered_dc = excluded.kwh_delivered_dc
 WHERE c.ts < excluded.ts
"""

# A vehicle with an open assignment keeps it (a rerun or a later `run` changes nothing).
INSERT_ASSIGNMENTS = """
INSERT INTO vehicle_meter_assignments (vehicle_id, meter_id, valid_from)
SELECT v, m, $3 FROM unnest($1::text[], $2::text[]) AS u(v, m)
WHERE NOT EXISTS (SELECT 1 FROM vehicle_meter_assignments a
                  WHERE a.vehicle_id = u.v AND a.valid_to IS NULL)
"""


@dataclass
class DirectSummary:
    """What a direct backfill wrote, and how fast."""

    meter_rows: int = 0
    vehicle_rows: int = 0
    days: int = 0
    assignments: int = 0
    copy_s: float = 0.0
    rollup_s: float = 0.0
    elapsed_s: float = 0.0

    @property
    def rows(self) -> int:
        """History rows of both kinds."""
        return self.meter_rows + self.vehicle_rows

    @property
    def rows_per_s(self) -> float:
        """History rows per second of COPY (generation included)."""
        return self.rows / self.copy_s if self.copy_s else 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form for `--json`."""
        return {
            "mode": "direct (bypasses fleetd)",
            "meterRows": self.meter_rows,
            "vehicleRows": self.vehicle_rows,
            "days": self.days,
            "assignments": self.assignments,
            "copySeconds": round(self.copy_s, 3),
            "rollupSeconds": round(self.rollup_s, 3),
            "elapsedSeconds": round(self.elapsed_s, 3),
            "rowsPerSecond": round(self.rows_per_s),
        }


async def _connect(url: str) -> asyncpg.Connection:
    """A connection, or SimError naming the database when it is away or refuses us."""
    try:
        return await asyncpg.connect(
            url,
            timeout=10,
            server_settings={"application_name": "fleet-sim-direct", "timezone": "UTC"},
        )
    except ValueError as exc:  # asyncpg's ClientConfigurationError: the URL itself
        raise ValueError(f"--database-url {mask_url(url)}: {exc}") from exc
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise database_error(url, exc) from exc


async def write_assignments(conn: asyncpg.Connection, fleet: Fleet, valid_from: datetime) -> int:
    """Open assignments vehicle -> meter from `valid_from`, skipping vehicles that have one."""
    if not fleet.vehicle_ids:
        return 0
    status = await conn.execute(
        INSERT_ASSIGNMENTS,
        fleet.vehicle_ids,
        [fleet.meter_ids[m] for m in fleet.registered_meter],
        valid_from,
    )
    return int(status.split()[-1])


async def write_assignments_url(database_url: str, fleet: Fleet, valid_from: datetime) -> int:
    """`write_assignments` on a connection of its own (used by `fleet-sim run`)."""
    conn = await _connect(database_url)
    try:
        return await write_assignments(conn, fleet, valid_from)
    finally:
        await conn.close()


def _days(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at UTC midnights."""
    out = []
    lo = start
    while lo < end:
        midnight = lo.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        hi = min(midnight, end)
        out.append((lo, hi))
        lo = hi
    return out


def _pg_ts(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S+00")


class _Feed:
    """An async iterator of COPY text chunks fed by the generator (bounded: 4 ticks ahead)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.queue.get()
            if chunk is None:
                return
            yield chunk


def _tick_texts(fleet: Fleet, ts: datetime) -> tuple[bytes, bytes]:
    """Advance the fleet one interval; its meter and vehicle rows at `ts` as COPY text."""
    fleet.advance()
    mids, vids = fleet.meter_ids, fleet.vehicle_ids
    ac, volt, dc, soc, temp = fleet.meter_ac, fleet.voltage, fleet.vehicle_dc, fleet.soc, fleet.temp
    t = _pg_ts(ts)
    # Received one second after the device's timestamp.
    tail = "\t" + _pg_ts(ts + timedelta(seconds=1)) + "\n"
    meters = "".join(
        [
            f"{mids[i]}\t{t}\t{ac[i] // MICRO}.{ac[i] % MICRO:06d}\t{volt[i]:.1f}{tail}"
            for i in range(len(mids))
        ]
    )
    vehicles = "".join(
        [
            f"{vids[j]}\t{t}\t{soc[j]:.2f}\t{dc[j] // MICRO}.{dc[j] % MICRO:06d}"
            f"\t{temp[j]:.1f}{tail}"
            for j in range(len(vids))
        ]
    )
    return meters.encode(), vehicles.encode()


async def _generate_day(
    fleet: Fleet, lo: datetime, hi: datetime, meters: _Feed, vehicles: _Feed
) -> tuple[int, int]:
    """Advance the fleet over [lo, hi) and push each tick's rows as COPY text."""
    n_m = n_v = 0
    ts = lo
    try:
        while ts < hi:
            m_text, v_text = _tick_texts(fleet, ts)
            if fleet.meter_ids:
                await meters.queue.put(m_text)
                n_m += len(fleet.meter_ids)
            if fleet.vehicle_ids:
                await vehicles.queue.put(v_text)
                n_v += len(fleet.vehicle_ids)
            ts += fleet.interval
    finally:
        await meters.queue.put(None)
        await vehicles.queue.put(None)
    return n_m, n_v


async def _run_day(
    generate: Coroutine[Any, Any, tuple[int, int]], copies: list[Coroutine[Any, Any, str]]
) -> tuple[int, int]:
    """Run the generator and the COPYs together; if one fails, stop the others (the generator
    would otherwise wait forever on a queue nobody reads)."""
    gen = asyncio.ensure_future(generate)
    tasks = [gen, *(asyncio.ensure_future(c) for c in copies)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return gen.result()


async def backfill_direct(
    database_url: str,
    config: FleetConfig,
    start: datetime,
    end: datetime,
    *,
    on_progress: Callable[[DirectSummary, datetime], None] | None = None,
    ingest_order: bool = False,
) -> DirectSummary:
    """Write the model's history for [start, end) into PostgreSQL, bypassing fleetd.

    Per UTC day: partitions (`PartitionCache`, as fleetd), COPY of both history tables on two
    connections, then exact rollups of every level from the raw rows. Finally the current tables and
    the vehicle -> meter assignments (valid from `start`). Raises ValueError if the range
    already holds history.
    """
    began = time.perf_counter()
    summary = DirectSummary()
    fleet = Fleet(config)
    conn_m = await _connect(database_url)
    conn_v = await _connect(database_url)
    try:
        busy = await conn_m.fetchval(
            "SELECT EXISTS (SELECT 1 FROM meter_readings WHERE ts >= $1 AND ts < $2)"
            " OR EXISTS (SELECT 1 FROM vehicle_readings WHERE ts >= $1 AND ts < $2)",
            start,
            end,
        )
        if busy:
            raise ValueError(
                f"history between {start.isoformat()} and {end.isoformat()} is not empty; "
                "--direct only fills an empty range"
            )
        summary.assignments = await write_assignments(conn_m, fleet, start)
        partitions = PartitionCache()
        if ingest_order:
            for kind, conn in (("meter", conn_m), ("vehicle", conn_v)):
                await conn.execute(
                    f"CREATE TEMP TABLE {_STAGE[kind]} (LIKE {_RAW[kind][0]}) ON COMMIT DELETE ROWS"
                )
        for lo, hi in _days(start, end):
            await partitions.ensure(conn_m, [lo.date()])
            t0 = time.perf_counter()
            if ingest_order:
                n_m, n_v = await _ingest_day(fleet, lo, hi, conn_m, conn_v)
                summary.meter_rows += n_m
                summary.vehicle_rows += n_v
                summary.copy_s += time.perf_counter() - t0
                summary.days += 1
                if on_progress is not None:
                    on_progress(summary, hi)
                continue
            meters, vehicles = _Feed(), _Feed()
            copies = []
            if fleet.meter_ids:
                copies.append(
                    conn_m.copy_to_table("meter_readings", source=meters, columns=METER_COLUMNS)
                )
            if fleet.vehicle_ids:
                copies.append(
                    conn_v.copy_to_table(
                        "vehicle_readings", source=vehicles, columns=VEHICLE_COLUMNS
                    )
                )
            n_m, n_v = await _run_day(_generate_day(fleet, lo, hi, meters, vehicles), copies)
            summary.meter_rows += n_m
            summary.vehicle_rows += n_v
            summary.copy_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            for level in LEVELS:
                b_lo, b_hi = floor_to(lo, level.width), ceil_to(hi, level.width)
                await asyncio.gather(
                    conn_m.execute(_rollup_sql("meter", level), b_lo, b_hi),
                    conn_v.execute(_rollup_sql("vehicle", level), b_lo, b_hi),
                )
            summary.rollup_s += time.perf_counter() - t0
            summary.days += 1
            if on_progress is not None:
                on_progress(summary, hi)
        # Every device reports every interval, so the newest rows are in the last hour.
        last = max(start, end - timedelta(hours=1))
        await asyncio.gather(
            conn_m.execute(CURRENT_METERS, last, end),
            conn_v.execute(CURRENT_VEHICLES, last, end),
        )
        # The levels are built above for every bucket of the range; reports read a level only
        # before its watermark (fleetdb.fold). Folding now moves the watermarks over whatever
        # of the range lies after them (re-aggregating those buckets from the raw rows, with
        # the same result), as fleetd would within a minute.
        await fold_until(conn_m, datetime.now(UTC))
    finally:
        await conn_m.close()
        await conn_v.close()
    summary.elapsed_s = time.perf_counter() - began
    return summary
