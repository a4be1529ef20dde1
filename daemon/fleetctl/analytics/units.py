"""Metering units: which meter AC is compared with which vehicles' DC.

An assignment clipped to the window gives a (vehicle, meter, [start, end)) span. On one meter,
spans of different vehicles that overlap in time form one unit: the meter's AC over the unit's
time is shared and cannot be split per vehicle, so the unit is judged as a whole (site-level
efficiency = Σ DC of its vehicles / Σ AC of the meter). A span that overlaps no other vehicle's
is a unit on its own, and that is the normal 1:1 case.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from fleetctl.analytics.energy import DB
from fleetctl.analytics.window import Window
from fleetdb.kinds import VEHICLE


@dataclass(frozen=True)
class Span:
    """Vehicle fed by meter over [start, end), already clipped to the query window."""

    vehicle: str
    meter: str
    start: datetime
    end: datetime


@dataclass
class Unit:
    """One meter over [start, end) and the vehicle spans it fed."""

    meter: str
    start: datetime
    end: datetime
    spans: list[Span] = field(default_factory=list)
    # Filled by seal() once the spans are complete: read for every row of a fleet report.
    vehicles: list[str] = field(default_factory=list)  # the vehicles the meter fed, sorted
    shared: bool = False  # more than one vehicle at overlapping times

    def seal(self) -> Unit:
        """Compute `vehicles` and `shared` from the spans."""
        self.vehicles = sorted({s.vehicle for s in self.spans})
        self.shared = len(self.vehicles) > 1
        return self


# Every assignment overlapping [$1, $2), clipped to it: (vehicle_id, meter_id, s, e).
OVERLAPPING = """
SELECT vehicle_id, meter_id, greatest(valid_from, $1) AS s, least(coalesce(valid_to, $2), $2) AS e
  FROM vehicle_meter_assignments
 WHERE tstzrange(valid_from, valid_to) && tstzrange($1, $2)
"""

# Spans that cover the whole window come back without their bounds (decoding 20,000 timestamps
# that equal the window's was a measurable part of a fleet report).
_FLEET_SPANS = f"""
SELECT array_agg(vehicle_id), array_agg(meter_id),
       array_agg(CASE WHEN s = $1 AND e = $2 THEN NULL ELSE s END),
       array_agg(CASE WHEN s = $1 AND e = $2 THEN NULL ELSE e END),
       (SELECT array_agg({VEHICLE.device}) FROM {VEHICLE.current})
  FROM ({OVERLAPPING}) o
"""


@dataclass
class FleetSpans:
    """The fleet's assignments in a window, split for the report."""

    whole: dict[str, str]  # vehicle -> meter, the only span of both, for the whole window
    # (start, end) -> {vehicle -> meter}: spans other than the window, each the only span of
    # its vehicle and of its meter, on bounds shared by at least `common` of them (fleet_spans)
    single: dict[tuple[datetime, datetime], dict[str, str]]
    rest: list[Span]  # every other span (partial, reassigned, shared meters)
    known: list[str]  # vehicles with a current row


async def fleet_spans(db: DB, window: Window, *, common: int | None = None) -> FleetSpans:
    """Every span in the window, the 1:1 whole-window ones (nearly all) apart, and with
    `common`, the 1:1 spans on bounds shared by at least `common` of them (a fleet assigned
    inside the window) apart too."""
    [(vehicles, meters, starts, ends, known)] = await db.fetch(
        _FLEET_SPANS, window.start, window.end
    )
    vehicles, meters = vehicles or [], meters or []
    per_vehicle, per_meter = Counter(vehicles), Counter(meters)
    out = FleetSpans({}, {}, [], known or [])
    single: dict[tuple[datetime, datetime], dict[str, str]] = defaultdict(dict)
    for v, m, s, e in zip(vehicles, meters, starts or [], ends or [], strict=True):
        if per_vehicle[v] != 1 or per_meter[m] != 1:
            out.rest.append(Span(v, m, s or window.start, e or window.end))
        elif s is None:
            out.whole[v] = m
        else:
            single[s, e][v] = m
    for (s, e), pairs in single.items():
        if common is not None and len(pairs) >= common:
            out.single[s, e] = pairs
        else:
            out.rest += [Span(v, m, s, e) for v, m in pairs.items()]
    return out


async def spans_around(db: DB, vehicle_id: str, window: Window) -> list[Span]:
    """The vehicle's spans plus every span on the meters it used (to detect sharing)."""
    rows = await db.fetch(
        f"""WITH mine AS ({OVERLAPPING} AND vehicle_id = $3)
            SELECT * FROM mine
            UNION
            SELECT a.* FROM ({OVERLAPPING}
                               AND meter_id IN (SELECT meter_id FROM mine)) a""",
        window.start,
        window.end,
        vehicle_id,
    )
    return [Span(r["vehicle_id"], r["meter_id"], r["s"], r["e"]) for r in rows]


def build_units(spans: list[Span]) -> list[Unit]:
    """Group spans per meter into units of time-overlapping spans (sorted by meter, start)."""
    by_meter: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_meter[span.meter].append(span)
    units: list[Unit] = []
    for meter in sorted(by_meter):
        group = by_meter[meter]
        if len(group) == 1:  # one vehicle per meter: the common case, 10,000 times a report
            only = group[0]
            units.append(Unit(meter, only.start, only.end, group, [only.vehicle], False))
            continue
        current: Unit | None = None
        for span in sorted(group, key=lambda s: (s.start, s.vehicle)):
            # Half-open spans that only touch (one vehicle leaves as the next arrives) don't share.
            if current is not None and span.start < current.end:
                current.spans.append(span)
                current.end = max(current.end, span.end)
            else:
                current = Unit(meter, span.start, span.end, [span])
                units.append(current)
    # Units from the loop above get their vehicles now that their spans are complete.
    return [u if u.vehicles else u.seal() for u in units]
