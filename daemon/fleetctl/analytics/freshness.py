"""How old the newest stored reading is: on a read replica that lags, or behind a stalled
ingest, every report says so."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleetctl.analytics.energy import DB
from fleetctl.analytics.window import iso
from fleetdb.kinds import REGISTRY

# Every kind's current table (fleetdb.kinds): the newest reading of any kind.
_NEWEST_SQL = f"""
SELECT greatest({", ".join(f"(SELECT max(ts) FROM {k.current})" for k in REGISTRY)})
"""


async def freshness(db: DB, now: datetime) -> dict[str, Any]:
    """{"newestReadingAt": RFC 3339 or None, "dataAgeSeconds": seconds before `now` or None}."""
    newest: datetime | None = await db.fetchval(_NEWEST_SQL)
    if newest is None:
        return {"newestReadingAt": None, "dataAgeSeconds": None}
    return {
        "newestReadingAt": iso(newest),
        "dataAgeSeconds": round((now - newest).total_seconds(), 3),
    }
