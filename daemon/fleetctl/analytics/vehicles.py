"""Vehicle ids by prefix, a page at a time: what a type-ahead asks while an operator types.

A fleet holds ~10,000 vehicles; a page holding all of them is ~300 kB of JSON and a list nobody
scrolls. The search reads the ids PostgreSQL knows (every vehicle with a current row, and every
assigned one, which may not have reported yet) through their primary-key and assignment
indexes, keeps those whose id starts with the prefix, case-insensitively, and answers the next
`limit` by id: a few milliseconds at fleet size.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fleetctl.analytics.energy import DB
from fleetctl.analytics.pages import Page, decode, fingerprint, key_of, next_cursor
from fleetctl.analytics.window import iso
from fleetdb.kinds import VEHICLE

DEFAULT_LIMIT = 20

# starts_with(lower(id), lower(prefix)): no LIKE pattern, so `_` and `%` in a prefix are plain
# characters. The keyset (`> $2`) and the order are in the C collation, both tables' id
# collation, so pages never overlap.
_SEARCH_SQL = f"""
SELECT v.vehicle_id, c.ts
  FROM (SELECT vehicle_id COLLATE "C" AS vehicle_id FROM {VEHICLE.current}
         WHERE starts_with(lower(vehicle_id), $1)
           AND ($2::text IS NULL OR vehicle_id COLLATE "C" > $2)
        UNION
        SELECT vehicle_id COLLATE "C" FROM vehicle_meter_assignments
         WHERE starts_with(lower(vehicle_id), $1)
           AND ($2::text IS NULL OR vehicle_id COLLATE "C" > $2)) v
  LEFT JOIN {VEHICLE.current} c USING (vehicle_id)
 ORDER BY v.vehicle_id
 LIMIT $3
"""


async def search_vehicles(
    db: DB, prefix: str = "", *, page: Page | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Vehicles whose id starts with `prefix` (any case), by id: {"prefix", "vehicles":
    [{"vehicleId", "lastSeenAt"}], "nextCursor"}; `lastSeenAt` is null for a vehicle that is
    assigned but never reported. Without a limit, DEFAULT_LIMIT rows: a search is never the
    whole fleet by accident."""
    page = page or Page()
    limit = page.limit or DEFAULT_LIMIT
    now = now or datetime.now(UTC)
    query = fingerprint("vehicles", prefix.lower())
    after = None
    if page.cursor is not None:
        [after] = key_of(decode(page.cursor, "vehicles", query), str)
    rows = await db.fetch(_SEARCH_SQL, prefix.lower(), after, limit + 1)
    found = [{"vehicleId": r[0], "lastSeenAt": None if r[1] is None else iso(r[1])} for r in rows]
    shown, next_page = next_cursor(
        found, limit, lambda v: [v["vehicleId"]], listing="vehicles", query=query, now=now
    )
    return {"prefix": prefix, "vehicles": shown, "nextCursor": next_page}
