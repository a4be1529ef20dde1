"""Replaying dead letters with today's rules: a fixed firmware's readings, or a relaxed rule.

Each stored reject is validated again (the same decode as fleetd's, its receive time as "now"
for the time bounds); what passes is written exactly as fleetd writes it (the same writer:
history ON CONFLICT DO NOTHING, rollups from RETURNING, the current row only forward), so a
reading is stored once however often it is replayed or redelivered. Every reject keeps a record
of its outcome. `fleetctl rejects replay` runs it as fleet_admin.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from fleetdb.ingest.messages import Rejected, decode
from fleetdb.ingest.writer import by_kind, write
from fleetdb.kinds import REGISTRY, DeviceKind
from fleetdb.partitions import PartitionCache

DB = asyncpg.Connection | asyncpg.Pool
CHUNK = 500

_PENDING_SQL = """
SELECT id, received_at, topic, payload FROM rejected_messages
 WHERE received_at >= $1 AND id > $3
   AND (replay_outcome IS NULL OR replay_outcome LIKE 'still rejected%')
   AND stored IS NULL  -- a conflict is valid and not stored on purpose: nothing to replay
 ORDER BY id
 LIMIT $2
 FOR UPDATE SKIP LOCKED
"""
_RECORD_SQL = """
UPDATE rejected_messages AS r SET replayed_at = now(), replay_outcome = o.outcome
  FROM unnest($1::bigint[], $2::text[]) AS o(id, outcome) WHERE r.id = o.id
"""


async def replay(
    db: DB, *, since: datetime, kinds: tuple[DeviceKind, ...] = REGISTRY
) -> dict[str, Any]:
    """Replay the rejects received since `since` that were not stored yet; counts of outcomes."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _replay(conn, since, kinds)
    return await _replay(db, since, kinds)


async def _replay(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    since: datetime,
    kinds: tuple[DeviceKind, ...],
) -> dict[str, Any]:
    totals = {"replayed": 0, "stored": 0, "alreadyStored": 0, "stillRejected": 0}
    reasons: dict[str, int] = {}
    partitions = PartitionCache()
    last_id = 0
    while True:
        # READ COMMITTED as the writer's own transactions (fleetdb.ingest.writer.write), which
        # run nested in this one: each write reads the rollup watermarks after its lock.
        async with conn.transaction(isolation="read_committed"):
            rows = await conn.fetch(_PENDING_SQL, since, CHUNK, last_id)
            if not rows:
                break
            last_id = rows[-1]["id"]
            ids: list[int] = []
            outcomes: list[str] = []
            for row in rows:
                item = decode(row["topic"], bytes(row["payload"]), row["received_at"], kinds=kinds)
                if isinstance(item, Rejected):
                    outcome = f"still rejected: {item.reason}"
                    totals["stillRejected"] += 1
                    reasons[item.field] = reasons.get(item.field, 0) + 1
                else:
                    await partitions.ensure(conn, [item.ts.date()])  # type: ignore[arg-type]
                    batch = by_kind([(item, row["received_at"])], kinds)
                    result = await write(conn, batch, [])  # type: ignore[arg-type]
                    outcome = "stored" if result.inserted else "already stored"
                    totals["stored" if outcome == "stored" else "alreadyStored"] += 1
                ids.append(row["id"])
                outcomes.append(outcome)
            await conn.execute(_RECORD_SQL, ids, outcomes)
            totals["replayed"] += len(rows)
    return {**totals, "stillRejectedByField": reasons, "since": since.isoformat()}
