"""Vehicle → meter assignments over time: assign (closing the previous one) and history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from fleetctl.energy import DB
from fleetctl.errors import AssignmentConflictError
from fleetctl.window import iso


def _json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "vehicleId": row["vehicle_id"],
        "meterId": row["meter_id"],
        "validFrom": iso(row["valid_from"]),
        "validTo": None if row["valid_to"] is None else iso(row["valid_to"]),
    }


async def assign(
    db: DB, vehicle_id: str, meter_id: str, valid_from: datetime | None = None
) -> dict[str, Any]:
    """Assign the vehicle to the meter from `valid_from` (default now) on, open-ended.

    The open assignment that started before `valid_from` is closed at `valid_from`. An
    assignment that starts at or after `valid_from` is never rewritten: that is a conflict the
    operator must resolve, reported as AssignmentConflictError. Re-assigning the meter the
    vehicle already has is a no-op.
    """
    start = (valid_from or datetime.now(UTC)).astimezone(UTC)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _assign(conn, vehicle_id, meter_id, start)
    return await _assign(db, vehicle_id, meter_id, start)


async def _assign(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    vehicle_id: str,
    meter_id: str,
    start: datetime,
) -> dict[str, Any]:
    async with conn.transaction():
        # Two concurrent assigns of one vehicle would both close the same open row.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('assign:' || $1))", vehicle_id)
        later = await conn.fetchrow(
            """SELECT * FROM vehicle_meter_assignments
                WHERE vehicle_id = $1 AND valid_from >= $2 ORDER BY valid_from LIMIT 1""",
            vehicle_id,
            start,
        )
        if later is not None:
            raise AssignmentConflictError(
                f"{vehicle_id} already has an assignment to {later['meter_id']} from "
                f"{iso(later['valid_from'])}; assign from a later time"
            )
        open_row = await conn.fetchrow(
            """SELECT * FROM vehicle_meter_assignments
                WHERE vehicle_id = $1 AND valid_to IS NULL""",
            vehicle_id,
        )
        if open_row is not None and open_row["meter_id"] == meter_id:
            return {**_json(open_row), "changed": False}
        await conn.execute(
            """UPDATE vehicle_meter_assignments SET valid_to = $2
                WHERE vehicle_id = $1 AND valid_to IS NULL""",
            vehicle_id,
            start,
        )
        try:
            row = await conn.fetchrow(
                """INSERT INTO vehicle_meter_assignments (vehicle_id, meter_id, valid_from)
                   VALUES ($1, $2, $3) RETURNING *""",
                vehicle_id,
                meter_id,
                start,
            )
        except asyncpg.ExclusionViolationError as exc:
            # A closed assignment reaching past `start`: the database refuses the overlap.
            raise AssignmentConflictError(
                f"{vehicle_id} would have two meters at once from {iso(start)}"
            ) from exc
    assert row is not None
    return {**_json(row), "changed": True}


async def assignments(db: DB, vehicle_id: str) -> list[dict[str, Any]]:
    """The vehicle's assignment history, oldest first."""
    rows = await db.fetch(
        """SELECT * FROM vehicle_meter_assignments WHERE vehicle_id = $1 ORDER BY valid_from""",
        vehicle_id,
    )
    return [_json(r) for r in rows]
