"""Vehicle → meter assignments over time: assign (closing the previous one), unassign, history.

Writing one again is a no-op ("unchanged"), so a file imported twice changes nothing. An id
that never reported is named (`neverSeen`): a typo would otherwise count a vehicle in the fleet
that has no data; `strict` refuses it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from fleetctl.analytics.energy import DB
from fleetctl.analytics.pages import Page, decode, fingerprint, instant_of, key_of, next_cursor
from fleetctl.analytics.window import iso
from fleetctl.errors import AnalyticsError, AssignmentConflictError, NeverSeenError
from fleetdb.kinds import METER, VEHICLE

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# A device that ever stored a reading has a current row: fleetd moves it in the transaction
# that stores the reading (late ones and replays too), and current rows are never deleted. So
# "no current row" is "never reported", answered by one index probe per id (the history would
# be one per id and daily partition).
_NEVER_SEEN_SQL = {
    f"{k.name}s": f"""SELECT u.id FROM unnest($1::text[]) AS u(id)
                  WHERE NOT EXISTS (SELECT FROM {k.current} c WHERE c.{k.device} = u.id)
                  ORDER BY u.id"""
    for k in (VEHICLE, METER)
}


def _json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "vehicleId": row["vehicle_id"],
        "meterId": row["meter_id"],
        "validFrom": iso(row["valid_from"]),
        "validTo": None if row["valid_to"] is None else iso(row["valid_to"]),
    }


async def assign(
    db: DB,
    vehicle_id: str,
    meter_id: str,
    valid_from: datetime | None = None,
    *,
    strict: bool = False,
) -> dict[str, Any]:
    """Assign the vehicle to the meter from `valid_from` (default now) on, open-ended.

    The open assignment that started before `valid_from` is closed at `valid_from`. An
    assignment that starts at or after `valid_from` is never rewritten: that is a conflict the
    operator must resolve, reported as AssignmentConflictError. Re-assigning the meter the
    vehicle already has, or the same period again, is a no-op (`changed` False). `neverSeen`
    names the ids that never reported; with `strict` they are refused (NeverSeenError).
    """
    start = (valid_from or datetime.now(UTC)).astimezone(UTC)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _assign(conn, vehicle_id, meter_id, start, strict)
    return await _assign(db, vehicle_id, meter_id, start, strict)


async def _assign(
    conn: Conn, vehicle_id: str, meter_id: str, start: datetime, strict: bool
) -> dict[str, Any]:
    async with conn.transaction():
        unseen = await never_seen(conn, [vehicle_id], [meter_id])
        names = [f"vehicle {v}" for v in unseen["vehicles"]]
        names += [f"meter {m}" for m in unseen["meters"]]
        if strict and names:
            raise never_seen_error(names[0], len(names) - 1)
        return {**await insert_period(conn, vehicle_id, meter_id, start, None), "neverSeen": unseen}


async def never_seen(
    conn: Conn, vehicles: Iterable[str], meters: Iterable[str]
) -> dict[str, list[str]]:
    """The ids among `vehicles` and `meters` that never reported (no reading stored, so no
    current row), sorted: {"vehicles": [...], "meters": [...]}."""
    wanted = {"vehicles": sorted(set(vehicles)), "meters": sorted(set(meters))}
    return {
        kind: [r["id"] for r in await conn.fetch(_NEVER_SEEN_SQL[kind], ids)] if ids else []
        for kind, ids in wanted.items()
    }


def never_seen_error(subject: str, others: int) -> NeverSeenError:
    """The refusal of `subject` ("vehicle V9", "line 7: meter M9") and `others` more ids."""
    more = f" (and {others} more)" if others else ""
    return NeverSeenError(
        f"{subject} has never reported{more}: check the id, or leave out --strict to assign "
        "it before its first reading"
    )


async def insert_period(
    conn: Conn,
    vehicle_id: str,
    meter_id: str,
    start: datetime,
    end: datetime | None,
) -> dict[str, Any]:
    """Inside the caller's transaction: the period [start, end) of vehicle -> meter.

    The same period again is a no-op (`changed` False). Open-ended (`end` None): as assign()
    (the open assignment is closed at `start`; a later one is a conflict; the same meter again
    is a no-op). Closed: inserted as is. Either way the database refuses two meters for one
    vehicle at one instant (AssignmentConflictError).
    """
    # Two concurrent assigns of one vehicle would both close the same open row.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('assign:' || $1))", vehicle_id)
    same = await conn.fetchrow(
        """SELECT * FROM vehicle_meter_assignments
            WHERE vehicle_id = $1 AND meter_id = $2 AND valid_from = $3
              AND valid_to IS NOT DISTINCT FROM $4""",
        vehicle_id,
        meter_id,
        start,
        end,
    )
    if same is not None:  # written before (the same file imported again): nothing to do
        return {**_json(same), "changed": False}
    if end is None:
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
        # A savepoint: a refused row must not abort the caller's transaction before it can
        # name the line.
        async with conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO vehicle_meter_assignments
                          (vehicle_id, meter_id, valid_from, valid_to)
                   VALUES ($1, $2, $3, $4) RETURNING *""",
                vehicle_id,
                meter_id,
                start,
                end,
            )
    except asyncpg.ExclusionViolationError as exc:
        raise AssignmentConflictError(
            f"{vehicle_id} would have two meters at once from {iso(start)}"
        ) from exc
    assert row is not None
    return {**_json(row), "changed": True}


async def unassign(db: DB, vehicle_id: str, at: datetime | None = None) -> dict[str, Any]:
    """End the vehicle's open assignment at `at` (default now). AnalyticsError when it has none
    open, or when `at` is not after its start."""
    end = (at or datetime.now(UTC)).astimezone(UTC)
    row = await db.fetchrow(
        """UPDATE vehicle_meter_assignments SET valid_to = $2
            WHERE vehicle_id = $1 AND valid_to IS NULL AND valid_from < $2 RETURNING *""",
        vehicle_id,
        end,
    )
    if row is not None:
        return _json(row)
    open_row = await db.fetchrow(
        "SELECT * FROM vehicle_meter_assignments WHERE vehicle_id = $1 AND valid_to IS NULL",
        vehicle_id,
    )
    if open_row is None:
        raise AnalyticsError(f"{vehicle_id} has no open assignment to end")
    raise AnalyticsError(
        f"{vehicle_id}'s assignment to {open_row['meter_id']} starts at "
        f"{iso(open_row['valid_from'])}: end it after that"
    )


async def assignments(db: DB, vehicle_id: str) -> list[dict[str, Any]]:
    """The vehicle's assignment history, oldest first."""
    rows: list[dict[str, Any]] = (await list_assignments(db, vehicle_id=vehicle_id))["assignments"]
    return rows


# By vehicle, start and id: the order of a vehicle's history, and a unique key for keyset pages.
_LIST_SQL = """
SELECT * FROM vehicle_meter_assignments
 WHERE ($1::text IS NULL OR vehicle_id = $1) AND (NOT $2 OR valid_to IS NULL)
   AND ($3::text IS NULL OR (vehicle_id, valid_from, id) > ($3, $4::timestamptz, $5::bigint))
 ORDER BY vehicle_id, valid_from, id
 LIMIT $6"""
_COUNT_SQL = """
SELECT count(*) FROM vehicle_meter_assignments
 WHERE ($1::text IS NULL OR vehicle_id = $1) AND (NOT $2 OR valid_to IS NULL)"""


async def list_assignments(
    db: DB, *, vehicle_id: str | None = None, open_only: bool = False, page: Page | None = None
) -> dict[str, Any]:
    """Assignments (one vehicle's, or every vehicle's; only the open ones with `open_only`) by
    vehicle and start: {"count": all that match, "assignments": this page, "nextCursor"}."""
    page = page or Page()
    query = fingerprint("assignments", vehicle_id, open_only)
    after: list[Any] = [None, None, None]
    if page.cursor is not None:
        v, start, ident = key_of(decode(page.cursor, "assignments", query), str, str, int)
        after = [v, instant_of(start), ident]
    limit = None if page.limit is None else page.limit + 1
    rows = await db.fetch(_LIST_SQL, vehicle_id, open_only, *after, limit)
    count = await db.fetchval(_COUNT_SQL, vehicle_id, open_only)
    shown, next_page = next_cursor(
        rows,
        page.limit,
        lambda r: [r["vehicle_id"], r["valid_from"].isoformat(), r["id"]],
        listing="assignments",
        query=query,
        now=datetime.now(UTC),
    )
    return {"count": count, "assignments": [_json(r) for r in shown], "nextCursor": next_page}
