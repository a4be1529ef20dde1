"""`fleetctl partitions`: the daily partitions ensured ahead, listed, or dropped when old
(dropping needs the schema owner)."""

from __future__ import annotations

from typing import Any

import asyncpg

from fleetctl.errors import AnalyticsError
from fleetdb.partitions import PartitionCache
from fleetdb.retention import HISTORY, ROLLUPS, drop_older_than, list_partitions


async def partitions_command(
    conn: asyncpg.Connection, action: str, days: int | None, *, rollups: bool
) -> Any:
    """`fleetctl partitions ensure|list|drop-older-than DAYS [--rollups]`."""
    if action == "ensure":
        created = await PartitionCache().ensure_ahead(conn)
        return {"created": created}
    if action == "drop-older-than":
        if days is None or days < 1:
            raise AnalyticsError("partitions drop-older-than needs DAYS >= 1")
        dropped = await drop_older_than(conn, days, ROLLUPS if rollups else HISTORY)
        return {"dropped": dropped}
    return [
        {
            "name": p.name,
            "table": p.parent,
            "day": p.day.isoformat(),
            "bytes": p.bytes,
            "rowsEstimate": p.rows_estimate,
        }
        for p in await list_partitions(conn)
    ]
