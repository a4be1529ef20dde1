"""Energy per metering unit (a meter and the vehicles it fed in the window) and the report
figures of a vehicle from its units: the general path, for any assignment history."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fleetctl.analytics.energy import DB, Energy, Segment, VehicleStats, energy, fleet_energy
from fleetctl.analytics.rows import VehicleFigures, expected_readings
from fleetctl.analytics.status import micro
from fleetctl.analytics.units import Unit
from fleetctl.analytics.window import Window, iso
from fleetdb.rollups import Kind

_ZERO = Decimal(0)


@dataclass(slots=True)
class UnitEnergy:
    ac: Decimal
    dc: Decimal
    meter_readings: int


def segments_of(units: list[Unit]) -> tuple[list[Segment], list[Segment], list[int]]:
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


async def unit_energies(
    db: DB,
    units: list[Unit],
    whole: tuple[Window, dict[str, Energy], dict[str, Decimal]] | None = None,
    spans: SpanEnergies | None = None,
    own: dict[str, VehicleStats] | None = None,
) -> list[UnitEnergy]:
    """Σ AC of each unit's meter time and Σ DC of its vehicles' spans.

    `whole` = (window, meter energies, vehicle DC) over the whole window, already known: units
    and spans covering the whole window take their figures from there and only the others are
    queried. `spans`: fleet-wide aggregates over common spans already read (span_energies).
    `own`: every vehicle with readings in the window and its statistics over it: a span of a
    vehicle not in it holds no DC, nor more than its window's when it holds the vehicle's
    first and last readings of the window (so all of them).
    """
    meter_segs, vehicle_segs, owner = segments_of(units)
    out = [UnitEnergy(_ZERO, _ZERO, 0) for _ in units]
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
    if own is not None:
        rest = []
        for seg in vehicle_segs:
            st = own.get(seg.device)
            if st is None:
                continue  # no reading in the window
            first, last = st.first_ts, st.last_ts
            if first is not None and last is not None and seg.start <= first and last < seg.end:
                out[owner[seg.key]].dc += Decimal(st.dc_u).scaleb(-6)
                continue
            rest.append(seg)
        vehicle_segs = rest
    known = spans or {}
    meter_segs, meter_spans = await _by_span(db, "meter", meter_segs, known)
    for seg, (kwh_u, n) in meter_spans:
        out[seg.key].ac, out[seg.key].meter_readings = Decimal(kwh_u).scaleb(-6), n
    for key, e in (await energy(db, "meter", meter_segs)).items():
        out[key].ac, out[key].meter_readings = e.kwh, e.readings
    vehicle_segs, vehicle_spans = await _by_span(db, "vehicle", vehicle_segs, known)
    for seg, (kwh_u, _) in vehicle_spans:
        out[owner[seg.key]].dc += Decimal(kwh_u).scaleb(-6)
    for key, e in (await energy(db, "vehicle", vehicle_segs)).items():
        out[owner[key]].dc += e.kwh
    return out


# Segments sharing one time span, from this many on, are read with one fleet-wide aggregate
# over the span (every device, a range scan per piece) instead of a join per segment: a fleet
# assigned to its meters after the window's start (a window starting before the fleet's first
# readings) has 10,000 segments of one span, which took seconds segment by segment.
FLEET_SPAN_MIN = 100


# Fleet-wide (Σ micro-kWh, readings) per device, by (kind, span start, span end).
SpanEnergies = dict[tuple[Kind, datetime, datetime], dict[str, tuple[int, int]]]


def _common_spans(segments: list[Segment]) -> dict[tuple[datetime, datetime], list[Segment]]:
    groups: dict[tuple[datetime, datetime], list[Segment]] = defaultdict(list)
    for seg in segments:
        groups[seg.start, seg.end].append(seg)
    return groups


async def span_energies(
    db: DB, kind: Kind, units: list[Unit], window: Window, known: SpanEnergies | None = None
) -> SpanEnergies:
    """The fleet-wide aggregates unit_energies would read for `kind`'s common spans (other than
    the whole window), read ahead: a fleet report reads the meters' while its second connection
    is still aggregating the vehicles. `known`: aggregates already read (kept, not read again)."""
    if kind == "meter":
        counts = Counter((u.start, u.end) for u in units)
    else:
        counts = Counter((s.start, s.end) for u in units for s in u.spans)
    out: SpanEnergies = dict(known or {})
    for (start, end), n in counts.items():
        key = (kind, start, end)
        if n >= FLEET_SPAN_MIN and (start, end) != (window.start, window.end) and key not in out:
            out[key] = await fleet_energy(db, kind, start, end)
    return out


async def _by_span(
    db: DB, kind: Kind, segments: list[Segment], known: SpanEnergies
) -> tuple[list[Segment], list[tuple[Segment, tuple[int, int]]]]:
    """(segments left to read one by one, (segment, (Σ micro-kWh, readings)) of the others)."""
    rest: list[Segment] = []
    done: list[tuple[Segment, tuple[int, int]]] = []
    for (start, end), group in _common_spans(segments).items():
        if len(group) < FLEET_SPAN_MIN:
            rest += group
            continue
        fleet = known.get((kind, start, end))
        if fleet is None:
            fleet = await fleet_energy(db, kind, start, end)
        done += [(seg, fleet.get(seg.device, (0, 0))) for seg in group]
    return rest, done


def figures_of_units(
    vehicle_id: str,
    units: list[Unit],
    energies: list[UnitEnergy],
    own: VehicleStats | None,
    *,
    interval_s: int,
) -> VehicleFigures:
    """A vehicle's figures from the units it belongs to (several after a reassignment; a shared
    meter's unit is judged as a whole) and its own readings."""
    if len(units) == 1 and not units[0].shared and len(units[0].spans) == 1:
        return _one_span_figures(vehicle_id, units[0], energies[0], own, interval_s=interval_s)
    return general_figures(vehicle_id, units, energies, own, interval_s=interval_s)


def general_figures(
    vehicle_id: str,
    units: list[Unit],
    energies: list[UnitEnergy],
    own: VehicleStats | None,
    *,
    interval_s: int,
) -> VehicleFigures:
    """figures_of_units() for any units, without the one-span shortcut."""
    shared_with = sorted({v for u in units if u.shared for v in u.vehicles} - {vehicle_id})
    mine = sorted(
        ((s.start, s.end, u) for u in units for s in u.spans if s.vehicle == vehicle_id),
        key=lambda t: t[0],
    )
    meters: list[dict[str, Any]] = [
        {"meterId": u.meter, "from": iso(start), "to": iso(end), "shared": u.shared}
        for start, end, u in mine
    ]
    return VehicleFigures(
        vehicle_id=vehicle_id,
        meters=meters,
        ac_u=sum(micro(e.ac) for e in energies),
        dc_u=sum(micro(e.dc) for e in energies),
        meter_readings=sum(e.meter_readings for e in energies),
        expected_meter=sum(
            expected_readings((u.end - u.start).total_seconds(), interval_s) for u in units
        ),
        assigned_s=sum(
            (s.end - s.start).total_seconds()
            for u in units
            for s in u.spans
            if s.vehicle == vehicle_id
        ),
        shared_with=shared_with,
        own=own,
        assigned=bool(units),
    )


def _one_span_figures(
    vehicle_id: str, unit: Unit, energy: UnitEnergy, own: VehicleStats | None, *, interval_s: int
) -> VehicleFigures:
    """figures_of_units() of a vehicle with one span on an unshared meter, the common case of
    a partial span the fleet report leaves to the general path (readings outside the span),
    without its general sorting and sums
    (tests/unit/test_fleet_rows.py checks they agree)."""
    span = unit.spans[0]
    return VehicleFigures(
        vehicle_id=vehicle_id,
        meters=[
            {"meterId": unit.meter, "from": iso(span.start), "to": iso(span.end), "shared": False}
        ],
        ac_u=micro(energy.ac),
        dc_u=micro(energy.dc),
        meter_readings=energy.meter_readings,
        expected_meter=expected_readings((unit.end - unit.start).total_seconds(), interval_s),
        assigned_s=(span.end - span.start).total_seconds(),
        shared_with=[],
        own=own,
        assigned=True,
    )
