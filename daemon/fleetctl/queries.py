"""The analytics API: per-vehicle performance, fleet report, anomalies, current state.

Every function takes an asyncpg connection or pool and returns JSON-ready dicts with camelCase
keys and numbers as numbers: exactly what `fleetctl --json` prints and the HTTP API serves.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar, cast

import asyncpg

from fleetctl.energy import (
    DB,
    Energy,
    Segment,
    VehicleStats,
    battery,
    energy,
    energy_by_hour,
    fleet_meters,
    fleet_vehicles,
    hours_of,
)
from fleetctl.errors import InvalidRequestError, UnknownDeviceError
from fleetctl.gcpause import paused_gc
from fleetctl.rounding import round_to
from fleetctl.status import (
    DEFAULT_MIN_AC_KWH,
    MESSAGES,
    STATUSES,
    classify,
    micro,
    min_ac_micro,
    verdict_micro,
)
from fleetctl.units import FleetSpans, Unit, build_units, fleet_spans, spans_around
from fleetctl.window import Window, iso

DEFAULT_INTERVAL_S = 60
OFFLINE_AFTER_INTERVALS = 3
SORT_KEYS = ("efficiency", "loss", "ac", "vehicle")

_ZERO = Decimal(0)


def kwh(value: Decimal | None) -> float | None:
    """kWh as a JSON number, to the schema's resolution (1 Wh / 1000)."""
    return None if value is None else round(float(value), 6)


def _ratio(value: Decimal | float | None) -> float | None:
    return None if value is None else round_to(float(value), 6)


def _percent(value: float | None) -> float | None:
    return None if value is None else round_to(value * 100, 2)


def _expected(seconds: float, interval_s: int) -> int:
    # Aligned readings in a half-open window: a partial interval still holds one.
    return math.ceil(seconds / interval_s)


def _coverage(readings: int, expected: int) -> float | None:
    return None if expected <= 0 else round_to(100 * readings / expected, 2)


@dataclass
class _UnitEnergy:
    ac: Decimal
    dc: Decimal
    meter_readings: int


def _verdict(ac: Decimal, dc: Decimal, assigned: bool, min_ac_kwh: float) -> dict[str, Any]:
    status, message, ratio = classify(ac, dc, assigned=assigned, min_ac_kwh=min_ac_kwh)
    return {
        "totalAcKwh": kwh(ac),
        "totalDcKwh": kwh(dc),
        "lossKwh": kwh(ac - dc),
        "efficiency": _ratio(ratio),
        "efficiencyPercent": _percent(ratio),
        "status": status,
        "message": message,
    }


def _segments(units: list[Unit]) -> tuple[list[Segment], list[Segment], list[int]]:
    """Meter segments keyed by unit index, vehicle segments keyed by span index, and the unit
    index of each vehicle segment."""
    meter_segs = [Segment(i, u.meter, u.start, u.end) for i, u in enumerate(units)]
    vehicle_segs: list[Segment] = []
    owner: list[int] = []
    for i, u in enumerate(units):
        for span in u.spans:
            vehicle_segs.append(Segment(len(owner), span.vehicle, span.start, span.end))
            owner.append(i)
    return meter_segs, vehicle_segs, owner


async def _unit_energies(
    db: DB,
    units: list[Unit],
    whole: tuple[Window, dict[str, Energy], dict[str, Decimal]] | None = None,
) -> list[_UnitEnergy]:
    """Σ AC of each unit's meter time and Σ DC of its vehicles' spans.

    `whole` = (window, meter energies, vehicle DC) over the whole window, already known: units
    and spans covering the whole window (in a fleet report nearly all) take their figures from
    there and only the others are queried.
    """
    meter_segs, vehicle_segs, owner = _segments(units)
    out = [_UnitEnergy(_ZERO, _ZERO, 0) for _ in units]
    if whole is not None:
        window, meters, vehicle_dc = whole
        rest = []
        for seg in meter_segs:
            if seg.start == window.start and seg.end == window.end:
                e = meters.get(seg.device)
                if e is not None:
                    out[seg.key].ac, out[seg.key].meter_readings = e.kwh, e.readings
            else:
                rest.append(seg)
        meter_segs, rest = rest, []
        for seg in vehicle_segs:
            if seg.start == window.start and seg.end == window.end:
                out[owner[seg.key]].dc += vehicle_dc.get(seg.device, _ZERO)
            else:
                rest.append(seg)
        vehicle_segs = rest
    for key, e in (await energy(db, "meter", meter_segs)).items():
        out[key].ac, out[key].meter_readings = e.kwh, e.readings
    for key, e in (await energy(db, "vehicle", vehicle_segs)).items():
        out[owner[key]].dc += e.kwh
    return out


def _meters_json(units: list[Unit], vehicle_id: str) -> list[dict[str, Any]]:
    out = []
    for u in units:
        for span in u.spans:
            if span.vehicle == vehicle_id:
                out.append(
                    {
                        "meterId": u.meter,
                        "from": iso(span.start),
                        "to": iso(span.end),
                        "shared": u.shared,
                    }
                )
    return sorted(out, key=lambda m: m["from"])


def _row(
    vehicle_id: str,
    units: list[Unit],
    energies: list[_UnitEnergy],
    own: dict[str, Any],
    window: Window,
    *,
    min_ac_kwh: float,
    interval_s: int,
) -> dict[str, Any]:
    """One vehicle's figures from the units it belongs to and its own readings."""
    if len(energies) == 1:  # the common case, kept cheap: 10,000 rows per fleet report
        ac, dc, meter_readings = energies[0].ac, energies[0].dc, energies[0].meter_readings
    else:
        ac = sum((e.ac for e in energies), _ZERO)
        dc = sum((e.dc for e in energies), _ZERO)
        meter_readings = sum(e.meter_readings for e in energies)
    shared_with: list[str] = []
    for u in units:
        if u.shared:
            shared_with = sorted({v for u in units if u.shared for v in u.vehicles} - {vehicle_id})
            break
    assigned_s = sum(
        (s.end - s.start).total_seconds() for u in units for s in u.spans if s.vehicle == vehicle_id
    )
    expected_vehicle = _expected(window.seconds, interval_s)
    expected_meter = sum(_expected((u.end - u.start).total_seconds(), interval_s) for u in units)
    row: dict[str, Any] = {
        "vehicleId": vehicle_id,
        "meters": _meters_json(units, vehicle_id),
        **_verdict(ac, dc, bool(units), min_ac_kwh),
        "meterShared": bool(shared_with),
        "sharedWith": shared_with,
        "vehicleDcKwh": own["vehicleDcKwh"],
        "assignedSeconds": assigned_s,
        "batteryTemp": own["batteryTemp"],
        "soc": own["soc"],
        "readings": {"vehicle": own["readings"], "meter": meter_readings},
        "expectedReadings": {"vehicle": expected_vehicle, "meter": expected_meter},
        "coveragePercent": {
            "vehicle": _coverage(own["readings"], expected_vehicle),
            "meter": _coverage(meter_readings, expected_meter),
        },
    }
    return row


def _own_json(own: VehicleStats | None) -> dict[str, Any]:
    """The vehicle's own readings over the whole window (assigned or not)."""
    if own is None or not own[2]:
        return {
            "readings": 0,
            "vehicleDcKwh": 0.0,
            "batteryTemp": {"avg": None, "min": None, "max": None},
            "soc": {"first": None, "last": None},
        }
    dc_u, temp_sum, readings, temp_min, temp_max, soc_first, soc_last = own
    # real columns come back as float32 values; 2 decimals is the sensors' resolution. For a
    # float32 value x, round(x * 100) / 100 equals round(x, 2) (x * 100 is never near enough a
    # tie to round the other way) at half the cost, which counts 40,000 times per fleet report.
    return {
        "readings": readings,
        "vehicleDcKwh": dc_u / 1e6,  # int / float: the double nearest the exact kWh
        "batteryTemp": {
            "avg": round_to(temp_sum / readings, 2),
            "min": round(temp_min * 100) / 100,
            "max": round(temp_max * 100) / 100,
        },
        "soc": {"first": round(soc_first * 100) / 100, "last": round(soc_last * 100) / 100},
    }


async def _known_vehicle(db: DB, vehicle_id: str) -> bool:
    return bool(
        await db.fetchval(
            """SELECT EXISTS (SELECT 1 FROM vehicle_current WHERE vehicle_id = $1)
                   OR EXISTS (SELECT 1 FROM vehicle_meter_assignments WHERE vehicle_id = $1)""",
            vehicle_id,
        )
    )


async def vehicle_performance(
    db: DB,
    vehicle_id: str,
    window: Window,
    *,
    min_ac_kwh: float = DEFAULT_MIN_AC_KWH,
    interval_s: int = DEFAULT_INTERVAL_S,
) -> dict[str, Any]:
    """How much of the AC billed for this vehicle reached its battery, with an hourly breakdown.

    Raises UnknownDeviceError when no current row or assignment knows the vehicle.
    """
    around = build_units(await spans_around(db, vehicle_id, window))
    units = [u for u in around if vehicle_id in u.vehicles]
    # An assignment in the window proves the vehicle exists; only otherwise ask (a round trip
    # less on the usual path).
    if not units and not await _known_vehicle(db, vehicle_id):
        raise UnknownDeviceError(f"unknown vehicle {vehicle_id!r}")
    whole = [Segment(0, vehicle_id, window.start, window.end)]
    bat = (await battery(db, whole)).get(0)

    # Per-hour energies of every unit (meter side) and of every vehicle span in them (DC side).
    meter_segs, vehicle_segs, owner = _segments(units)
    ac_h = await energy_by_hour(db, "meter", meter_segs)
    whole_h = Segment(-1, vehicle_id, window.start, window.end)
    dc_h = await energy_by_hour(db, "vehicle", [*vehicle_segs, whole_h])

    energies = [_UnitEnergy(_ZERO, _ZERO, 0) for _ in units]
    hours: dict[datetime, dict[str, Any]] = {
        h: {"ac": _ZERO, "dc": _ZERO, "m": 0, "v": 0, "any": False}
        for h in hours_of(window.start, window.end)
    }
    for (key, hour), e in ac_h.items():
        energies[key].ac += e.kwh
        energies[key].meter_readings += e.readings
        hours[hour]["ac"] += e.kwh
        hours[hour]["m"] += e.readings
        hours[hour]["any"] = True
    for (key, hour), e in dc_h.items():
        if key == -1:
            hours[hour]["v"] += e.readings
            hours[hour]["any"] = True
            continue
        energies[owner[key]].dc += e.kwh
        hours[hour]["dc"] += e.kwh

    row = _row(
        vehicle_id,
        units,
        energies,
        _own_json(bat),
        window,
        min_ac_kwh=min_ac_kwh,
        interval_s=interval_s,
    )
    hourly: list[dict[str, Any]] = []
    for hour, h in hours.items():
        if not h["any"]:
            hourly.append(
                {
                    "hour": iso(hour),
                    "acKwh": None,
                    "dcKwh": None,
                    "efficiency": None,
                    "readings": {"vehicle": 0, "meter": 0},
                }
            )
            continue
        ratio = h["dc"] / h["ac"] if h["ac"] > 0 else None
        hourly.append(
            {
                "hour": iso(hour),
                "acKwh": kwh(h["ac"]),
                "dcKwh": kwh(h["dc"]),
                "efficiency": _ratio(ratio),
                "readings": {"vehicle": h["v"], "meter": h["m"]},
            }
        )
    return {"window": window.as_json(), **row, "hourly": hourly}


@dataclass
class _FleetRows:
    rows: list[dict[str, Any]]
    ac_u: int  # fleet totals, every meter counted once (a shared meter is not billed twice)
    dc_u: int
    meters: int


@asynccontextmanager
async def _snapshot(db: DB) -> AsyncIterator[asyncpg.Connection]:
    """One connection reading one snapshot (REPEATABLE READ, read only): the report's several
    statements see the same committed data even while fleetd writes."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as proxy:
            # The pool's proxy forwards every Connection method.
            conn = cast(asyncpg.Connection, proxy)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                yield conn
    elif db.is_in_transaction():  # the caller's transaction already decides what is seen
        yield db
    else:
        async with db.transaction(isolation="repeatable_read", readonly=True):
            yield db


_T = TypeVar("_T")
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$")
_SPARE_TIMEOUT_S = 1.0


@asynccontextmanager
async def _spare(db: DB) -> AsyncIterator[asyncpg.Connection | None]:
    """A second connection when `db` is a pool with one to spare, else None."""
    if not isinstance(db, asyncpg.Pool) or (
        db.get_idle_size() == 0 and db.get_size() >= db.get_max_size()
    ):
        yield None
        return
    try:
        # Bounded: callers holding one connection each must never wait on each other's second.
        proxy = await db.acquire(timeout=_SPARE_TIMEOUT_S)
    except TimeoutError:
        yield None
        return
    try:
        # The pool's proxy forwards every Connection method.
        yield cast(asyncpg.Connection, proxy)
    finally:
        await db.release(proxy)


@asynccontextmanager
async def _meanwhile(work: Coroutine[Any, Any, _T]) -> AsyncIterator[asyncio.Task[_T]]:
    """Run `work` as a task while the block does something else (the block awaits the task for
    its result). If the block leaves early (an error, a cancellation), the task is cancelled and
    awaited, so no statement is left running on its connection."""
    task = asyncio.ensure_future(work)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def _same_snapshot(db: DB, conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A second connection of pool `db` reading the snapshot of `conn`'s transaction (exported
    with pg_export_snapshot), so two statements of one report run at once on two cores and
    still see the same data. With a single connection, `conn` itself (one after the other)."""
    async with _spare(db) as other:
        if other is None:
            yield conn
            return
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        # SET TRANSACTION SNAPSHOT takes no parameters: the id is the server's own, checked too.
        if not _SNAPSHOT_ID.match(snapshot):
            raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
        async with other.transaction(isolation="repeatable_read", readonly=True):
            await other.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            yield other


# The fleet aggregates read ~100,000-250,000 rows per kind. Parallel workers cost more than they
# save at that size (each worker's partial numeric sums are serialised and merged: meters 79 ->
# 34 ms without them, 24 h ending now), and the planner, which cannot estimate the groups of a
# UNION, would join 10,000 aggregated vehicles with their first readings by 10,000 index probes
# (45 ms) instead of one hash join (2 ms). Their estimated cost is above jit_above_cost, and
# JIT compiling the vehicle statement took 72 ms of its 314 ms (EXPLAIN ANALYZE, 84 functions)
# for expressions that run ~200,000 times. All three are set for these statements only.
_FLEET_PLAN = (
    "SET LOCAL max_parallel_workers_per_gather TO {0}; SET LOCAL enable_nestloop TO {1};"
    " SET LOCAL jit TO {1}"
)


async def _fleet_plan(conn: asyncpg.Connection, on: bool) -> None:
    await conn.execute(_FLEET_PLAN.format(*(("0", "off") if on else ("DEFAULT", "DEFAULT"))))


@dataclass
class _FleetData:
    spans: FleetSpans
    own: dict[str, VehicleStats]
    meters: dict[str, tuple[int, int]]
    rows: _PartialRows


async def _fleet_data(
    db: DB, conn: asyncpg.Connection, window: Window, interval: timedelta, simple: _SimpleRows
) -> _FleetData:
    """The window's assignments and every vehicle's and meter's aggregates, in `conn`'s
    snapshot, and the 1:1 rows started from the meter side (`simple`).

    With a pool that has a connection to spare, the vehicle aggregate (the longest statement,
    ~70 ms) runs on `conn` while the other connection reads the assignments and the meters
    (~10 + ~30 ms), and the rows are started from those while the vehicles are still being
    aggregated: the server and Python work at the same time on the two cores.
    """
    async with _same_snapshot(db, conn) as other:
        await _fleet_plan(conn, True)
        if other is conn:
            spans = await fleet_spans(conn, window)
            own = await fleet_vehicles(conn, window.start, window.end, interval)
            meters = await fleet_meters(conn, window.start, window.end)
            rows = simple.start_rows(spans.whole, meters)
        else:
            vehicles = fleet_vehicles(conn, window.start, window.end, interval)
            async with _meanwhile(vehicles) as aggregating:
                spans = await fleet_spans(other, window)
                await _fleet_plan(other, True)
                meters = await fleet_meters(other, window.start, window.end)
                rows = simple.start_rows(spans.whole, meters)
                own = await aggregating
        await _fleet_plan(conn, False)
    return _FleetData(spans, own, meters, rows)


async def _fleet_rows(db: DB, window: Window, *, min_ac_kwh: float, interval_s: int) -> _FleetRows:
    simple = _SimpleRows(window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)
    async with _snapshot(db) as conn:
        data = await _fleet_data(db, conn, window, timedelta(seconds=interval_s), simple)
        spans, own, meters = data.spans, data.own, data.meters
        # Everything but the 1:1 whole-window assignments: reassignments, partial spans and
        # shared meters, through the general path (per-segment queries for partial spans).
        units = build_units(spans.rest)
        by_vehicle: dict[str, list[int]] = defaultdict(list)
        for i, u in enumerate(units):
            for v in u.vehicles:
                by_vehicle[v].append(i)
        whole_meters = {
            u.meter: Energy(Decimal(meters[u.meter][0]).scaleb(-6), meters[u.meter][1])
            for u in units
            if u.meter in meters
        }
        whole_dc = {v: Decimal(own[v][0]).scaleb(-6) for v in by_vehicle if v in own}
        energies = await _unit_energies(conn, units, (window, whole_meters, whole_dc))

    rows = simple.finish_rows(data.rows, own)
    others = (set(spans.known) | set(by_vehicle)) - spans.whole.keys()
    for v in others:
        mine = by_vehicle.get(v, [])
        rows.append(
            _row(
                v,
                [units[j] for j in mine],
                [energies[j] for j in mine],
                _own_json(own.get(v)),
                window,
                min_ac_kwh=min_ac_kwh,
                interval_s=interval_s,
            )
        )
    ac_u = sum(data.rows.ac_u)
    dc_u = sum(own[v][0] for v in spans.whole if v in own)
    ac_u += sum(micro(e.ac) for e in energies)
    dc_u += sum(micro(e.dc) for e in energies)
    return _FleetRows(rows, ac_u, dc_u, len(spans.whole) + len({u.meter for u in units}))


class _Coverage(dict[int, float | None]):
    """Coverage % of a reading count against one expected count, computed once per count:
    a fleet report's 20,000 counts take a few hundred distinct values."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected

    def __missing__(self, readings: int) -> float | None:
        self[readings] = value = _coverage(readings, self.expected)
        return value


class _SimpleRows:
    """_row() for the case that is nearly every row of a fleet report (one unshared meter for
    the whole window), with what is the same for all rows computed once. Same output.

    Built in two passes, the meter's side first: the report starts its rows while the server
    is still aggregating the vehicles."""

    def __init__(self, window: Window, *, min_ac_kwh: float, interval_s: int) -> None:
        self.start, self.end = iso(window.start), iso(window.end)
        self.seconds = window.seconds
        self.expected = _expected(window.seconds, interval_s)
        self.min_ac_u = min_ac_micro(min_ac_kwh)
        self.coverage = _Coverage(self.expected)

    def row(
        self, vehicle_id: str, meter: str, ac: tuple[int, int], own: VehicleStats | None
    ) -> dict[str, Any]:
        """The fleet-report row of `vehicle_id`, fed by `meter` (Σ AC in micro-kWh, readings)
        for the whole window."""
        partial = self.start_rows({vehicle_id: meter}, {meter: ac})
        return self.finish_rows(partial, {} if own is None else {vehicle_id: own})[0]

    def start_rows(self, whole: dict[str, str], meters: dict[str, tuple[int, int]]) -> _PartialRows:
        """Rows of the vehicles in `whole` (vehicle -> its only meter) with the meter's figures
        (Σ AC in micro-kWh, readings) filled in and the vehicle's left to finish_rows."""
        start, end, seconds, expected, coverage = (
            self.start,
            self.end,
            self.seconds,
            self.expected,
            self.coverage,
        )
        no_meter = (0, 0)
        out = _PartialRows([], [])
        rows, acs = out.rows, out.ac_u
        with paused_gc():
            for vehicle_id, meter in whole.items():
                ac_u, n_meter = meters.get(meter, no_meter)
                acs.append(ac_u)
                # Every key in its JSON place; None where finish_rows writes.
                rows.append({
                    "vehicleId": vehicle_id,
                    "meters": [{"meterId": meter, "from": start, "to": end, "shared": False}],
                    "totalAcKwh": ac_u / 1e6,
                    "totalDcKwh": None,
                    "lossKwh": None,
                    "efficiency": None,
                    "efficiencyPercent": None,
                    "status": None,
                    "message": None,
                    "meterShared": False,
                    "sharedWith": [],
                    "vehicleDcKwh": None,
                    "assignedSeconds": seconds,
                    "batteryTemp": None,
                    "soc": None,
                    "readings": {"vehicle": 0, "meter": n_meter},
                    "expectedReadings": {"vehicle": expected, "meter": expected},
                    "coveragePercent": {"vehicle": None, "meter": coverage[n_meter]},
                })  # fmt: skip
        return out

    def finish_rows(
        self, partial: _PartialRows, own: dict[str, VehicleStats]
    ) -> list[dict[str, Any]]:
        """The rows of start_rows() completed with each vehicle's own statistics."""
        coverage, min_ac_u, messages = self.coverage, self.min_ac_u, MESSAGES
        with paused_gc():
            for row, ac_u in zip(partial.rows, partial.ac_u, strict=True):
                stats = own.get(row["vehicleId"])
                if stats is None or not stats[2]:
                    dc_u, mine = 0, _own_json(stats)
                    n_vehicle, dc_kwh = 0, mine["vehicleDcKwh"]
                    temp, soc = mine["batteryTemp"], mine["soc"]
                else:  # _own_json inlined: this runs 10,000 times per fleet report
                    dc_u, temp_sum, n_vehicle, temp_min, temp_max, soc_first, soc_last = stats
                    dc_kwh = dc_u / 1e6
                    temp = {
                        "avg": round_to(temp_sum / n_vehicle, 2),
                        "min": round(temp_min * 100) / 100,
                        "max": round(temp_max * 100) / 100,
                    }
                    soc = {
                        "first": round(soc_first * 100) / 100,
                        "last": round(soc_last * 100) / 100,
                    }
                status, ratio = verdict_micro(ac_u, dc_u, min_ac_u)
                row["totalDcKwh"] = row["vehicleDcKwh"] = dc_kwh
                row["lossKwh"] = (ac_u - dc_u) / 1e6
                if ratio is not None:
                    row["efficiency"] = round_to(ratio, 6)
                    row["efficiencyPercent"] = round_to(ratio * 100, 2)
                row["status"] = status
                row["message"] = messages[status]
                row["batteryTemp"] = temp
                row["soc"] = soc
                row["readings"]["vehicle"] = n_vehicle
                row["coveragePercent"]["vehicle"] = coverage[n_vehicle]
        return partial.rows


@dataclass
class _PartialRows:
    rows: list[dict[str, Any]]
    ac_u: list[int]  # Σ AC of each row's meter, micro-kWh


def _sort(rows: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    if sort == "vehicle":
        return sorted(rows, key=lambda r: r["vehicleId"])
    if sort == "loss":
        return sorted(rows, key=lambda r: (-(r["lossKwh"] or 0), r["vehicleId"]))
    if sort == "ac":
        return sorted(rows, key=lambda r: (-(r["totalAcKwh"] or 0), r["vehicleId"]))
    # Worst efficiency first, ties by vehicle; vehicles without a verdict last. Two stable
    # sorts on plain keys instead of one on 10,000 built tuples.
    inf = math.inf
    by_id = sorted(rows, key=lambda r: r["vehicleId"])
    return sorted(by_id, key=lambda r: inf if r["efficiency"] is None else r["efficiency"])


async def fleet_report(
    db: DB,
    window: Window,
    *,
    sort: str = "efficiency",
    min_ac_kwh: float = DEFAULT_MIN_AC_KWH,
    interval_s: int = DEFAULT_INTERVAL_S,
) -> dict[str, Any]:
    """One row per vehicle, fleet totals and counts per status; worst efficiency first."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
    fleet = await _fleet_rows(db, window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)
    counts = dict.fromkeys(STATUSES, 0)
    for r in fleet.rows:
        counts[r["status"]] += 1
    vehicles = _sort(fleet.rows, sort)
    ac_u, dc_u = fleet.ac_u, fleet.dc_u
    _, ratio = verdict_micro(ac_u, dc_u, min_ac_micro(min_ac_kwh))
    return {
        "window": window.as_json(),
        "generatedAt": iso(datetime.now(UTC)),
        "totals": {
            "vehicles": len(fleet.rows),
            "meters": fleet.meters,
            "totalAcKwh": ac_u / 1e6,
            "totalDcKwh": dc_u / 1e6,
            "lossKwh": (ac_u - dc_u) / 1e6,
            "efficiency": _ratio(ratio),
            "efficiencyPercent": _percent(ratio),
        },
        "statusCounts": counts,
        "vehicles": vehicles,
    }


async def anomalies(
    db: DB,
    window: Window,
    *,
    threshold: float = 0.85,
    min_ac_kwh: float = DEFAULT_MIN_AC_KWH,
    interval_s: int = DEFAULT_INTERVAL_S,
) -> dict[str, Any]:
    """Vehicles whose efficiency is below `threshold` (worst first), and impossible readings
    (efficiency above 1: a meter or assignment error) listed apart."""
    rows = (await _fleet_rows(db, window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)).rows
    below = [r for r in rows if r["efficiency"] is not None and r["efficiency"] < threshold]
    errors = [r for r in rows if r["status"] == "meter_error"]
    return {
        "window": window.as_json(),
        "threshold": threshold,
        "minAcKwh": min_ac_kwh,
        "count": len(below),
        "vehicles": _sort(below, "efficiency"),
        "meterErrors": _sort(errors, "vehicle"),
    }


CurrentKind = Literal["meters", "vehicles", "all"]
CURRENT_KINDS = ("meters", "vehicles", "all")

# Numbers arrive as float8 and timestamps as UTC text (ISO DateStyle, PostgreSQL's default and
# set by connect_analytics), and the age is computed by the server: decoding 20,000 numerics into
# Decimals and timestamps into datetimes, then formatting them again, cost more than the query.
# One row of column arrays rather than 10,000 rows: records are objects the cyclic collector
# tracks (fleetctl.gcpause), list items of str and float are not. array_agg takes the rows in
# the order the subquery sorts them (PostgreSQL's documented behaviour for a plain aggregate).
# The server also decides `offline` (exactly) and rounds the age to whole milliseconds: a
# function call per device less in Python, where 20,000 dicts are the critical path.
_CURRENT_SQL: dict[str, str] = {
    "meters": """
        SELECT array_agg(meter_id), array_agg(ts), array_agg(updated_at), array_agg(age_ms),
               array_agg(offline), array_agg(kwh), array_agg(voltage)
          FROM (SELECT meter_id, (ts AT TIME ZONE 'UTC')::text AS ts,
                       (updated_at AT TIME ZONE 'UTC')::text AS updated_at,
                       round(date_part('epoch', $2::timestamptz - ts) * 1000) AS age_ms,
                       $2::timestamptz - ts > $3::float8 * interval '1 second' AS offline,
                       kwh_consumed_ac::float8 AS kwh, voltage
                  FROM meter_current WHERE $1::text IS NULL OR meter_id = $1
                 ORDER BY meter_id) c""",
    "vehicles": """
        SELECT array_agg(vehicle_id), array_agg(ts), array_agg(updated_at), array_agg(age_ms),
               array_agg(offline), array_agg(soc), array_agg(kwh), array_agg(battery_temp)
          FROM (SELECT vehicle_id, (ts AT TIME ZONE 'UTC')::text AS ts,
                       (updated_at AT TIME ZONE 'UTC')::text AS updated_at,
                       round(date_part('epoch', $2::timestamptz - ts) * 1000) AS age_ms,
                       $2::timestamptz - ts > $3::float8 * interval '1 second' AS offline, soc,
                       kwh_delivered_dc::float8 AS kwh, battery_temp
                  FROM vehicle_current WHERE $1::text IS NULL OR vehicle_id = $1
                 ORDER BY vehicle_id) c""",
}


class _Stamps(dict[str, str]):
    """'2026-11-23 14:59:00.5' (a UTC timestamp as PostgreSQL prints it) -> RFC 3339 with Z,
    formatted once per distinct value: devices report on the same minutes and a flush commits
    thousands of rows with one updated_at."""

    def __missing__(self, text: str) -> str:
        self[text] = stamp = text[:10] + "T" + text[11:] + "Z"
        return stamp


async def _fetch_devices(
    db: DB, kind: CurrentKind, device_id: str | None, *, now: datetime, off: int, z: _Stamps
) -> list[dict[str, Any]]:
    [columns] = await db.fetch(_CURRENT_SQL[kind], device_id, now, off)
    rows = zip(*(c or () for c in columns), strict=True)
    # One comprehension of literal dict displays: the cheapest way CPython builds 10,000 dicts.
    # real columns arrive as float32 values (98.51000213...): 2 decimals is the sensors'
    # resolution, and round(x * 100) / 100 is round(x, 2) for them (see _own_json).
    with paused_gc():
        if kind == "meters":
            return [
                {"meterId": i, "timestamp": z[ts], "kwhConsumedAc": kwh,
                 "voltage": round(volt * 100) / 100, "updatedAt": z[upd],
                 "lastSeenSeconds": age_ms / 1000, "offline": offline}
                for i, ts, upd, age_ms, offline, kwh, volt in rows
            ]  # fmt: skip
        return [
            {"vehicleId": i, "timestamp": z[ts], "soc": round(soc * 100) / 100,
             "kwhDeliveredDc": kwh, "batteryTemp": round(temp * 100) / 100, "updatedAt": z[upd],
             "lastSeenSeconds": age_ms / 1000, "offline": offline}
            for i, ts, upd, age_ms, offline, soc, kwh, temp in rows
        ]  # fmt: skip


def _kind_json(devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "count": len(devices),
        "offline": sum(1 for d in devices if d["offline"]),
        "devices": devices,
    }


async def _current_all(db: DB, now: datetime, off: int) -> dict[str, Any]:
    """Both kinds: with a pool, the vehicles are fetched on a spare connection while the
    meters' dicts are built, so the server's and Python's halves overlap."""
    z = _Stamps()
    async with _spare(db) as other:
        if other is None:
            meters = await _fetch_devices(db, "meters", None, now=now, off=off, z=z)
            vehicles = await _fetch_devices(db, "vehicles", None, now=now, off=off, z=z)
        else:
            fetch = _fetch_devices(other, "vehicles", None, now=now, off=off, z=z)
            async with _meanwhile(fetch) as fetching:
                meters = await _fetch_devices(db, "meters", None, now=now, off=off, z=z)
                vehicles = await fetching
    m, v = _kind_json(meters), _kind_json(vehicles)
    return {
        "kind": "all",
        "asOf": iso(now),
        "offlineAfterSeconds": off,
        "count": m["count"] + v["count"],
        "offline": m["offline"] + v["offline"],
        "meters": m,
        "vehicles": v,
    }


async def current(
    db: DB,
    kind: CurrentKind,
    device_id: str | None = None,
    *,
    interval_s: int = DEFAULT_INTERVAL_S,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The newest reading of every device of a kind (or one), with its age and offline flag.

    kind "all": every meter and every vehicle in one call, under "meters" and "vehicles".
    """
    if kind not in CURRENT_KINDS:
        raise ValueError("kind must be 'meters', 'vehicles' or 'all'")
    now = now or datetime.now(UTC)
    off = OFFLINE_AFTER_INTERVALS * interval_s
    if kind == "all":
        if device_id is not None:
            raise InvalidRequestError("one device needs its kind: meters or vehicles, not all")
        return await _current_all(db, now, off)
    devices = await _fetch_devices(db, kind, device_id, now=now, off=off, z=_Stamps())
    if device_id is not None and not devices:
        raise UnknownDeviceError(f"unknown {kind[:-1]} {device_id!r}")
    return {"kind": kind, "asOf": iso(now), "offlineAfterSeconds": off, **_kind_json(devices)}
