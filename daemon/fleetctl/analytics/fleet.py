"""The fleet report (one row per vehicle, totals, counts per status) and anomalies."""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import asyncpg

from fleetctl.analytics import unit_energy
from fleetctl.analytics.chargers import chargers
from fleetctl.analytics.connections import same_snapshot
from fleetctl.analytics.energy import (
    DB,
    Energy,
    VehicleStats,
    fleet_energy,
    fleet_meters,
    fleet_vehicles,
)
from fleetctl.analytics.freshness import freshness
from fleetctl.analytics.gcpause import paused_gc
from fleetctl.analytics.pages import Key, Page, decode, fingerprint, page_of
from fleetctl.analytics.rows import (
    DEFAULT_INTERVAL_S,
    RowContext,
    VehicleFigures,
    build_row,
    expected_readings,
)
from fleetctl.analytics.status import STATUSES, min_ac_micro, verdict_micro
from fleetctl.analytics.unit_energy import (
    SpanEnergies,
    figures_of_units,
    span_energies,
    unit_energies,
)
from fleetctl.analytics.units import Span, Unit, build_units, fleet_spans
from fleetctl.analytics.window import Window, iso
from fleetctl.errors import InvalidRequestError
from fleetctl.params import DEFAULT_MIN_AC_KWH, SORT_KEYS

# The fleet aggregates read ~100,000-250,000 rows per kind. Parallel workers cost more than they
# save at that size (each worker's partial numeric sums are serialised and merged), and the
# planner, which cannot estimate the groups of a UNION, would join 10,000 aggregated vehicles
# with their first readings by 10,000 index probes instead of one hash join. Both are set for
# these statements only (JIT is off for every analytics session: fleetdb.connect).
_FLEET_PLAN = "SET LOCAL max_parallel_workers_per_gather TO {0}; SET LOCAL enable_nestloop TO {1}"


@dataclass
class _FleetRows:
    rows: list[dict[str, Any]]
    ac_u: int  # fleet totals, every meter counted once (a shared meter is not billed twice)
    dc_u: int
    meters: int
    freshness: dict[str, Any]


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


async def _fleet_rows(db: DB, window: Window, *, min_ac_kwh: float, interval_s: int) -> _FleetRows:
    interval = timedelta(seconds=interval_s)
    ctx = RowContext.of(window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)
    async with _snapshot(db) as conn:
        # The vehicle aggregate, the longest statement, runs on `conn`; with a pool, the
        # assignments and the meter aggregate run meanwhile on a second connection that reads
        # the same snapshot.
        async with same_snapshot(db, conn) as other:
            await conn.execute(_FLEET_PLAN.format("0", "off"))
            if other is not conn:
                await other.execute(_FLEET_PLAN.format("0", "off"))
            async with asyncio.TaskGroup() as tg:
                vehicles = tg.create_task(fleet_vehicles(conn, window.start, window.end, interval))
                if other is conn:
                    await vehicles
                spans = await fleet_spans(other, window, common=unit_energy.FLEET_SPAN_MIN)
                # The meters of the 1:1 spans on common bounds (a fleet assigned inside the
                # window): one fleet-wide aggregate per span, as span_energies reads for units.
                ahead: SpanEnergies = {
                    ("meter", s, e): await fleet_energy(other, "meter", s, e)
                    for s, e in spans.single
                }
                # Everything but the 1:1 spans: reassignments, partial spans and shared
                # meters, through the general path (unit_energies).
                units = build_units(spans.rest)
                meters: dict[str, tuple[int, int]] = {}
                if spans.whole or any(_is_window(u, window) for u in units):
                    meters = await fleet_meters(other, window.start, window.end)
                # The meter side of nearly every row while the vehicles are still aggregated.
                whole = _whole_window_figures(spans.whole, meters, window, ctx)
                single = _single_span_figures(spans.single, ahead, interval_s)
                # And the meters of the units on a common span, read ahead on this connection
                # too.
                ahead = await span_energies(other, "meter", units, window, ahead)
            own = vehicles.result()
        await conn.execute(_FLEET_PLAN.format("DEFAULT", "DEFAULT"))
        # A 1:1 span's DC is the vehicle's over the window when the span holds the vehicle's
        # first and last readings of it (or it has none); the others take the general path.
        single_rows, late = _own_dc(single, own)
        units += build_units(late)
        by_vehicle: dict[str, list[int]] = defaultdict(list)
        for i, u in enumerate(units):
            for v in u.vehicles:
                by_vehicle[v].append(i)
        whole_meters = {
            u.meter: Energy(Decimal(meters[u.meter][0]).scaleb(-6), meters[u.meter][1])
            for u in units
            if u.meter in meters
        }
        whole_dc = {v: Decimal(own[v].dc_u).scaleb(-6) for v in by_vehicle if v in own}
        energies = await unit_energies(conn, units, (window, whole_meters, whole_dc), ahead, own)
        fresh = await freshness(conn, datetime.now(UTC))

    rows: list[dict[str, Any]] = []
    ac_total = dc_total = 0
    fast = set(spans.whole)
    with paused_gc():
        for figures in whole:
            stats = own.get(figures.vehicle_id)
            if stats is not None:
                figures.own, figures.dc_u = stats, stats.dc_u
            ac_total += figures.ac_u
            dc_total += figures.dc_u
            rows.append(build_row(figures, ctx))
        for figures in single_rows:
            fast.add(figures.vehicle_id)
            ac_total += figures.ac_u
            dc_total += figures.dc_u
            rows.append(build_row(figures, ctx))
        for v in (set(spans.known) | set(by_vehicle)) - fast:
            mine = by_vehicle.get(v, [])
            figures = figures_of_units(
                v,
                [units[j] for j in mine],
                [energies[j] for j in mine],
                own.get(v),
                interval_s=interval_s,
            )
            rows.append(build_row(figures, ctx))
    for e in energies:
        ac_total += int(e.ac.scaleb(6))
        dc_total += int(e.dc.scaleb(6))
    meters_count = len(fast) + len({u.meter for u in units})
    return _FleetRows(rows, ac_total, dc_total, meters_count, fresh)


def _is_window(unit: Unit, window: Window) -> bool:
    return unit.start == window.start and unit.end == window.end


def whole_window_figures(
    vehicle_id: str,
    meter: str,
    meter_ac: tuple[int, int],
    own: VehicleStats | None,
    *,
    window: Window,
    ctx: RowContext,
    stamps: tuple[str, str] | None = None,
) -> VehicleFigures:
    """The figures of a vehicle fed by one unshared meter for the whole window, from the fleet
    aggregates: the meter's (Σ AC in micro-kWh, readings) and the vehicle's own statistics.
    Equal to figures_of_units() for that one unit (tests/unit/test_fleet_rows.py): the
    single_span_figures() of a span that is the whole window."""
    return single_span_figures(
        vehicle_id,
        meter,
        meter_ac,
        own,
        span=window,
        expected_meter=ctx.expected_vehicle,
        stamps=stamps,
    )


def single_span_figures(
    vehicle_id: str,
    meter: str,
    meter_ac: tuple[int, int],
    own: VehicleStats | None,
    *,
    span: Window,
    expected_meter: int,
    stamps: tuple[str, str] | None = None,
) -> VehicleFigures:
    """The figures of a vehicle fed over `span` (inside the report's window) by one meter, the
    only span of both in the window, from fleet-wide aggregates: the meter's over the span (Σ
    AC in micro-kWh, readings) and the vehicle's own statistics over the window, whose DC is
    the span's when the span holds all of the vehicle's readings of the window (the caller's
    to check). `expected_meter`: expected_readings() of the span. Equal to figures_of_units()
    for that one unit (tests/unit/test_fleet_rows.py)."""
    start, end = stamps or (iso(span.start), iso(span.end))
    ac_u, meter_readings = meter_ac
    return VehicleFigures(
        vehicle_id=vehicle_id,
        meters=[{"meterId": meter, "from": start, "to": end, "shared": False}],
        ac_u=ac_u,
        dc_u=0 if own is None else own.dc_u,
        meter_readings=meter_readings,
        expected_meter=expected_meter,
        assigned_s=span.seconds,
        shared_with=[],
        own=own,
    )


def _whole_window_figures(
    whole: dict[str, str], meters: dict[str, tuple[int, int]], window: Window, ctx: RowContext
) -> list[VehicleFigures]:
    """whole_window_figures() of every vehicle in `whole` (vehicle -> its only meter), without
    the vehicles' own statistics yet (the caller fills `own` and `dc_u` in)."""
    stamps = (iso(window.start), iso(window.end))
    no_meter = (0, 0)
    with paused_gc():
        return [
            whole_window_figures(
                vehicle_id,
                meter,
                meters.get(meter, no_meter),
                None,
                window=window,
                ctx=ctx,
                stamps=stamps,
            )
            for vehicle_id, meter in whole.items()
        ]


# 1:1 spans on common bounds: (start, end, the figures of the vehicles fed over it).
_Single = list[tuple[datetime, datetime, list[VehicleFigures]]]


def _single_span_figures(
    single: dict[tuple[datetime, datetime], dict[str, str]], ahead: SpanEnergies, interval_s: int
) -> _Single:
    """single_span_figures() of every 1:1 span on common bounds (FleetSpans.single), from the
    meters' aggregates over each span (`ahead`), without the vehicles' own statistics yet
    (_own_dc fills them in)."""
    no_meter = (0, 0)
    out: _Single = []
    with paused_gc():
        for (start, end), pairs in single.items():
            span = Window(start, end)
            meters = ahead["meter", start, end]
            expected = expected_readings(span.seconds, interval_s)
            stamps = (iso(start), iso(end))
            figures = [
                single_span_figures(
                    vehicle_id,
                    meter,
                    meters.get(meter, no_meter),
                    None,
                    span=span,
                    expected_meter=expected,
                    stamps=stamps,
                )
                for vehicle_id, meter in pairs.items()
            ]
            out.append((start, end, figures))
    return out


def _own_dc(
    single: _Single, own: dict[str, VehicleStats]
) -> tuple[list[VehicleFigures], list[Span]]:
    """(the figures of the 1:1 spans that hold their vehicle's first and last readings of the
    window, or of a vehicle without any, their statistics and DC filled in; the spans of the
    others, for the general path: readings before or after their span, or no timestamps)."""
    done: list[VehicleFigures] = []
    late: list[Span] = []
    for start, end, figures in single:
        for f in figures:
            st = own.get(f.vehicle_id)
            if st is not None:
                first, last = st.first_ts, st.last_ts
                if first is None or last is None or first < start or last >= end:
                    late.append(Span(f.vehicle_id, f.meters[0]["meterId"], start, end))
                    continue
                f.own, f.dc_u = st, st.dc_u
            done.append(f)
    return done, late


MAX_THRESHOLD = 1.5
MAX_WORST = 100


def check_threshold(threshold: float) -> None:
    """Refuse a threshold that is not an efficiency ratio (a percent such as 85, or 0)."""
    if not 0 < threshold <= MAX_THRESHOLD or math.isnan(threshold):
        raise InvalidRequestError(
            f"threshold must be an efficiency ratio in (0, {MAX_THRESHOLD}] (e.g. 0.85 for 85 %),"
            f" got {threshold:g}"
        )


def _efficiency_key(r: dict[str, Any]) -> Key:
    # Worst efficiency first, ties by vehicle; vehicles without a verdict last.
    eff = r["efficiency"]
    return [eff is None, 0.0 if eff is None else eff, r["vehicleId"]]


# Each ends in the vehicle id, so a key is unique and a page boundary is exact.
_SORT_KEY: dict[str, Callable[[dict[str, Any]], Key]] = {
    "efficiency": _efficiency_key,
    "loss": lambda r: [-(r["lossKwh"] or 0), r["vehicleId"]],
    "ac": lambda r: [-(r["totalAcKwh"] or 0), r["vehicleId"]],
    "vehicle": lambda r: [r["vehicleId"]],
}


def _sort(rows: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    return sorted(rows, key=_SORT_KEY[sort])


async def fleet_report(
    db: DB,
    window: Window,
    *,
    sort: str = "efficiency",
    min_ac_kwh: float = DEFAULT_MIN_AC_KWH,
    interval_s: int = DEFAULT_INTERVAL_S,
    with_chargers: bool = False,
    page: Page | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One row per vehicle, fleet totals and counts per status; worst efficiency first.
    `with_chargers`: each row also gets `charger`, the diagnosis (analytics.chargers) of the
    meter it used last in the window.

    `page`: `limit` vehicles after the page's cursor, in the sort order (ties by vehicle id);
    `nextCursor` leads to the next page (None on the last). Totals and counts are the whole
    fleet's on every page. `now`: the instant the window was resolved against (the cursor
    carries it to the next pages)."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
    page = page or Page()
    query = fingerprint("fleet", window.as_json(), sort, min_ac_kwh, with_chargers)
    if page.cursor is not None:
        decode(page.cursor, "fleet", query)  # a bad cursor fails before the report runs
    head, fleet = await _fleet_head(db, window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)
    rows, next_page = page_of(
        _sort(fleet.rows, sort),
        _SORT_KEY[sort],
        page,
        listing="fleet",
        query=query,
        now=now or datetime.now(UTC),
    )
    if with_chargers:
        diagnosis = {
            c["meterId"]: c for c in (await chargers(db, window, interval_s=interval_s))["chargers"]
        }
        for r in rows:
            c = diagnosis.get(r["meters"][-1]["meterId"]) if r["meters"] else None
            r["charger"] = None if c is None else {k: c[k] for k in _ROW_CHARGER}
    return {**head, "vehicles": rows, "nextCursor": next_page}


# What a fleet row carries of its charger's diagnosis (`chargers=true`).
_ROW_CHARGER: tuple[str, ...] = ("meterId", "status", "reason", "conversionEfficiency")
_ROW_CHARGER += ("standbyW", "boundActive", "ci95", "fit")


async def fleet_summary(
    db: DB,
    window: Window,
    *,
    worst: int = 10,
    min_ac_kwh: float = DEFAULT_MIN_AC_KWH,
    interval_s: int = DEFAULT_INTERVAL_S,
) -> dict[str, Any]:
    """The fleet report without its 10,000 rows: window, totals, counts per status and the
    `worst` vehicles by efficiency (what a dashboard shows)."""
    if not 0 <= worst <= MAX_WORST:
        raise InvalidRequestError(f"worst must be between 0 and {MAX_WORST}, got {worst}")
    head, fleet = await _fleet_head(db, window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)
    ranked = heapq.nsmallest(worst, fleet.rows, key=_efficiency_key)
    return {**head, "worst": ranked}


async def _fleet_head(
    db: DB, window: Window, *, min_ac_kwh: float, interval_s: int
) -> tuple[dict[str, Any], _FleetRows]:
    """The report's fields but its rows (window, freshness, totals, counts), and the rows."""
    fleet = await _fleet_rows(db, window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)
    counts = dict.fromkeys(STATUSES, 0)
    for r in fleet.rows:
        counts[r["status"]] += 1
    ac_u, dc_u = fleet.ac_u, fleet.dc_u
    _, ratio = verdict_micro(ac_u, dc_u, min_ac_micro(min_ac_kwh))
    head = {
        "window": window.as_json(),
        "generatedAt": iso(datetime.now(UTC)),
        **fleet.freshness,
        "totals": {
            "vehicles": len(fleet.rows),
            "meters": fleet.meters,
            "totalAcKwh": ac_u / 1e6,
            "totalDcKwh": dc_u / 1e6,
            "lossKwh": (ac_u - dc_u) / 1e6,
            "efficiency": None if ratio is None else round(ratio, 6),
            "efficiencyPercent": None if ratio is None else round(ratio * 100, 2),
        },
        "statusCounts": counts,
    }
    return head, fleet


async def anomalies(
    db: DB,
    window: Window,
    *,
    threshold: float = 0.85,
    min_ac_kwh: float = DEFAULT_MIN_AC_KWH,
    interval_s: int = DEFAULT_INTERVAL_S,
) -> dict[str, Any]:
    """Vehicles whose efficiency is below `threshold` (worst first), and impossible readings
    (efficiency above 1: a meter or assignment error) listed apart.

    `threshold` is a ratio in (0, 1.5]: 0.85, not 85 (InvalidRequestError otherwise)."""
    check_threshold(threshold)
    fleet = await _fleet_rows(db, window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)
    rows = fleet.rows
    below = [r for r in rows if r["efficiency"] is not None and r["efficiency"] < threshold]
    errors = [r for r in rows if r["status"] == "meter_error"]
    return {
        "window": window.as_json(),
        **fleet.freshness,
        "threshold": threshold,
        "minAcKwh": min_ac_kwh,
        "count": len(below),
        "vehicles": _sort(below, "efficiency"),
        "meterErrors": _sort(errors, "vehicle"),
    }
