"""Many assignments at once (onboarding a fleet): from a CSV file or a JSON list, checked line by
line, then written in one transaction, all or nothing."""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from fleetctl.admin.assignments import Conn, insert_period, never_seen, never_seen_error
from fleetctl.analytics.energy import DB
from fleetctl.analytics.window import iso, parse_rfc3339
from fleetctl.errors import AnalyticsError, AssignmentConflictError

DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
CSV_COLUMNS = ("vehicle_id", "meter_id", "valid_from", "valid_to")
MAX_ROWS = 100_000


class AssignmentImportError(AnalyticsError):
    """A line (or JSON item) that cannot be imported; the message names it."""


@dataclass(frozen=True, slots=True)
class Period:
    """One assignment to import; `where` names it in errors ("line 7", "item 3")."""

    where: str
    vehicle_id: str
    meter_id: str
    valid_from: datetime
    valid_to: datetime | None


def _period(where: str, values: dict[str, Any]) -> Period:
    vehicle, meter = values.get("vehicle_id"), values.get("meter_id")
    for name, value in (("vehicle_id", vehicle), ("meter_id", meter)):
        if not isinstance(value, str) or not DEVICE_ID.fullmatch(value):
            raise AssignmentImportError(
                f"{where}: {name} must match [A-Za-z0-9_.:-]{{1,64}}, got {value!r}"
            )
    start_text, end_text = values.get("valid_from"), values.get("valid_to")
    if not isinstance(start_text, str) or not start_text:
        raise AssignmentImportError(f"{where}: valid_from is required (RFC 3339 with an offset)")
    if end_text is not None and not isinstance(end_text, str):  # JSON: a number, a list...
        raise AssignmentImportError(f"{where}: valid_to must be an RFC 3339 string or null")
    try:
        start = parse_rfc3339(start_text, "valid_from")
        end = parse_rfc3339(end_text, "valid_to") if end_text else None
    except AnalyticsError as exc:
        raise AssignmentImportError(f"{where}: {exc}") from exc
    if end is not None and end <= start:
        raise AssignmentImportError(f"{where}: valid_to must be after valid_from")
    return Period(where, str(vehicle), str(meter), start, end)


def parse_csv(text: str) -> list[Period]:
    """Rows of `vehicle_id,meter_id,valid_from[,valid_to]` (a header line first)."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if header[:3] != list(CSV_COLUMNS[:3]) or header[3:] not in ([], ["valid_to"]):
        raise AssignmentImportError(
            f"line 1: the header must be {','.join(CSV_COLUMNS)} (valid_to optional)"
        )
    periods = []
    for row in reader:
        where = f"line {reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) not in (3, 4) or len(row) > len(header):
            raise AssignmentImportError(f"{where}: expected {len(header)} columns, got {len(row)}")
        periods.append(_period(where, dict(zip(header, (c.strip() for c in row), strict=False))))
        if len(periods) > MAX_ROWS:
            raise AssignmentImportError(
                f"{where}: more than {MAX_ROWS:,} assignments in one import"
            )
    return _no_overlap_within(periods)


def parse_json(items: object) -> list[Period]:
    """A JSON list of {"vehicleId", "meterId", "validFrom"[, "validTo"]}."""
    if not isinstance(items, list):
        raise AssignmentImportError("the body must be a JSON list of assignments")
    if len(items) > MAX_ROWS:
        raise AssignmentImportError(f"more than {MAX_ROWS:,} assignments in one import")
    periods = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise AssignmentImportError(f"item {i}: must be an object")
        values = {
            "vehicle_id": item.get("vehicleId"),
            "meter_id": item.get("meterId"),
            "valid_from": item.get("validFrom"),
            "valid_to": item.get("validTo"),
        }
        periods.append(_period(f"item {i}", values))
    return _no_overlap_within(periods)


def _no_overlap_within(periods: list[Period]) -> list[Period]:
    """Two periods of one vehicle in the same import may not overlap (an open one runs on)."""
    by_vehicle: dict[str, list[Period]] = {}
    for p in periods:
        by_vehicle.setdefault(p.vehicle_id, []).append(p)
    for mine in by_vehicle.values():
        mine.sort(key=lambda p: p.valid_from)
        for a, b in itertools.pairwise(mine):
            if a.valid_to is None or a.valid_to > b.valid_from:
                raise AssignmentImportError(
                    f"{b.where}: {b.vehicle_id} from {iso(b.valid_from)} overlaps {a.where}"
                    + (" (open-ended: give it a valid_to)" if a.valid_to is None else "")
                )
    return periods


async def import_periods(db: DB, periods: list[Period], *, strict: bool = False) -> dict[str, Any]:
    """Write every period in one transaction, all or nothing; AssignmentImportError names the first
    line the database refuses (an overlap with a stored assignment). A period already stored as
    is counts as `unchanged`, so importing a file again changes nothing and succeeds.
    `neverSeen` names the ids that never reported; `strict` refuses the import if there are any
    (NeverSeenError naming the first line)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _import(conn, periods, strict)
    return await _import(db, periods, strict)


async def _import(conn: Conn, periods: list[Period], strict: bool) -> dict[str, Any]:
    written: list[Period] = []
    async with conn.transaction():
        unseen = await never_seen(
            conn, (p.vehicle_id for p in periods), (p.meter_id for p in periods)
        )
        if strict:
            _refuse(periods, unseen)
        for p in sorted(periods, key=lambda p: (p.vehicle_id, p.valid_from)):
            try:
                row = await insert_period(conn, p.vehicle_id, p.meter_id, p.valid_from, p.valid_to)
            except AssignmentConflictError as exc:
                raise AssignmentImportError(f"{p.where}: {exc}") from exc
            if row["changed"]:
                written.append(p)
    return {
        "imported": len(written),
        "unchanged": len(periods) - len(written),
        "vehicles": len({p.vehicle_id for p in written}),
        "neverSeen": unseen,
    }


def _refuse(periods: list[Period], unseen: dict[str, list[str]]) -> None:
    """With strict: NeverSeenError naming the first line with an id that never reported."""
    vehicles, meters = set(unseen["vehicles"]), set(unseen["meters"])
    for p in periods:
        name = (
            f"vehicle {p.vehicle_id}"
            if p.vehicle_id in vehicles
            else f"meter {p.meter_id}"
            if p.meter_id in meters
            else None
        )
        if name is not None:
            raise never_seen_error(f"{p.where}: {name}", len(vehicles) + len(meters) - 1)
