"""One vehicle's performance over a window, with an hourly breakdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fleetctl.analytics.chargers import fit_points
from fleetctl.analytics.energy import DB, Energy, Segment, battery, energy_by_hour, hours_of
from fleetctl.analytics.freshness import freshness
from fleetctl.analytics.rows import DEFAULT_INTERVAL_S, RowContext, build_row
from fleetctl.analytics.unit_energy import UnitEnergy, figures_of_units, segments_of
from fleetctl.analytics.units import Unit, build_units, spans_around
from fleetctl.analytics.window import Window, iso
from fleetctl.errors import UnknownDeviceError
from fleetctl.params import DEFAULT_MIN_AC_KWH
from fleetdb.kinds import VEHICLE

_ZERO = Decimal(0)
HOUR = timedelta(hours=1)


async def _known_vehicle(db: DB, vehicle_id: str) -> bool:
    return bool(
        await db.fetchval(
            f"""SELECT EXISTS (SELECT 1 FROM {VEHICLE.current} WHERE {VEHICLE.device} = $1)
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
    meter_id: str | None = None,
) -> dict[str, Any]:
    """How much of the AC billed for this vehicle reached its battery, with an hourly breakdown.

    `meter_id`: only the metering units of that meter, i.e. the vehicle's figures against that
    meter for the time it was assigned to it in the window (shared time still judged as a
    whole unit); with no such time the answer is insufficient_data, as for no assignment.
    Raises UnknownDeviceError when no current row or assignment knows the vehicle.
    """
    around = build_units(await spans_around(db, vehicle_id, window))
    units = [u for u in around if vehicle_id in u.vehicles and meter_id in (None, u.meter)]
    # An assignment in the window proves the vehicle exists; only otherwise ask (a round trip
    # less on the usual path).
    if not units and not await _known_vehicle(db, vehicle_id):
        raise UnknownDeviceError(f"unknown vehicle {vehicle_id!r}")
    whole = [Segment(0, vehicle_id, window.start, window.end)]
    own = (await battery(db, whole)).get(0)

    # Per-hour energies of every unit (meter side) and of every vehicle span in them (DC side).
    meter_segs, vehicle_segs, owner = segments_of(units)
    ac_h = await energy_by_hour(db, "meter", meter_segs)
    whole_h = Segment(-1, vehicle_id, window.start, window.end)
    dc_h = await energy_by_hour(db, "vehicle", [*vehicle_segs, whole_h])

    energies = [UnitEnergy(_ZERO, _ZERO, 0) for _ in units]
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

    figures = figures_of_units(vehicle_id, units, energies, own, interval_s=interval_s)
    ctx = RowContext.of(window, min_ac_kwh=min_ac_kwh, interval_s=interval_s)
    hourly = [_hour_json(hour, h) for hour, h in hours.items()]
    fresh = await freshness(db, datetime.now(UTC))
    diagnosis = _chargers(
        units,
        vehicle_segs,
        owner=owner,
        ac_h=ac_h,
        dc_h=dc_h,
        window=window,
        interval_s=interval_s,
    )
    return {
        "window": window.as_json(),
        **fresh,
        **({} if meter_id is None else {"meterId": meter_id}),
        **build_row(figures, ctx),
        "chargers": diagnosis,
        "hourly": hourly,
    }


def _chargers(
    units: list[Unit],
    vehicle_segs: list[Segment],
    *,
    owner: list[int],
    ac_h: dict[tuple[int, datetime], Energy],
    dc_h: dict[tuple[int, datetime], Energy],
    window: Window,
    interval_s: int,
) -> list[dict[str, Any]]:
    """The charger diagnosis (analytics.chargers) of each metering unit the vehicle used, from
    the hourly energies the report read anyway: whole hours inside the unit's time in which no
    span of the unit starts or ends, and that lost no reading."""
    out = []
    nominal = 3600 // interval_s
    for i, u in enumerate(units):
        spans = [k for k, o in enumerate(owner) if o == i]
        segs = [vehicle_segs[k] for k in spans]
        points = []
        for hour in hours_of(max(u.start, window.start), min(u.end, window.end)):
            end = hour + HOUR
            if hour < u.start or end > u.end:
                continue
            if any(
                s.start < end and hour < s.end and not (s.start <= hour and end <= s.end)
                for s in segs
            ):
                continue
            meter = ac_h.get((i, hour))
            if meter is None or not meter.readings:
                continue
            mine = [dc_h[(k, hour)] for k in spans if (k, hour) in dc_h]
            dc = sum((e.kwh for e in mine), _ZERO)
            # Hours that lost a reading: as analytics.chargers.diagnose leaves them out.
            if any(e.readings < nominal for e in mine) or (meter.readings < nominal and dc > 0):
                continue
            points.append((float(dc), meter.readings * interval_s / 3600, float(meter.kwh)))
        out.append(
            {"meterId": u.meter, "from": iso(u.start), "to": iso(u.end), **fit_points(points)}
        )
    return out


def _hour_json(hour: datetime, h: dict[str, Any]) -> dict[str, Any]:
    if not h["any"]:
        return {
            "hour": iso(hour),
            "acKwh": None,
            "dcKwh": None,
            "efficiency": None,
            "readings": {"vehicle": 0, "meter": 0},
        }
    ratio = float(h["dc"] / h["ac"]) if h["ac"] > 0 else None
    return {
        "hour": iso(hour),
        "acKwh": round(float(h["ac"]), 6),
        "dcKwh": round(float(h["dc"]), 6),
        "efficiency": None if ratio is None else round(ratio, 6),
        "readings": {"vehicle": h["v"], "meter": h["m"]},
    }
