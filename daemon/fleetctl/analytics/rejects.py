"""Dead letters: what fleetd refused and kept (`rejected_messages`), counted and shown."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import asyncpg

from fleetctl.analytics.energy import DB
from fleetctl.analytics.pages import decode, fingerprint, instant_of, key_of, next_cursor
from fleetctl.analytics.window import iso
from fleetctl.errors import InvalidRequestError
from fleetdb.kinds import by_topic

MAX_LIMIT = 1000

# Grouped by what broke: the field and rule fleetd stored with each reject (sql/014), without
# the values, ids and offsets its reason quotes; a reject stored before those columns existed
# is grouped by the same words, read from its reason. One example per group: the last stored.
_COUNTS_SQL = """
WITH r AS (
    SELECT id, received_at,
           CASE WHEN split_part(topic, '/', 1) IN ('meters', 'vehicles')
                THEN split_part(topic, '/', 1) ELSE 'other' END AS kind,
           coalesce(field, fleet_reject_field(reason)) AS field,
           coalesce(rule, fleet_reject_rule(reason)) AS rule
      FROM rejected_messages
     WHERE received_at >= $1),
g AS (
    SELECT kind, field, rule, count(*) AS n, min(received_at) AS first_seen,
           max(received_at) AS last_seen, max(id) AS example_id
      FROM r
     WHERE $2::text IS NULL OR field = $2
     GROUP BY kind, field, rule)
SELECT g.*, x.received_at AS example_at, x.topic AS example_topic, x.reason AS example_reason
  FROM g
  -- One primary-key probe per group (OFFSET 0 keeps the subquery from becoming a join): a
  -- join let the planner, expecting thousands of groups, read the whole key for a handful
  -- (0.23 of 0.82 s over 200,000 rejects).
  CROSS JOIN LATERAL (SELECT received_at, topic, reason FROM rejected_messages
                       WHERE id = g.example_id OFFSET 0) AS x
 ORDER BY n DESC, kind, field, rule
"""
# Newest first, ties by id: a unique order, so a page ends exactly where the next begins.
_NEWEST_SQL = """
SELECT id, received_at, topic, reason, payload, stored
  FROM rejected_messages
 WHERE received_at >= $1 AND ($2::text IS NULL OR coalesce(field, fleet_reject_field(reason)) = $2)
   AND ($4::timestamptz IS NULL OR (received_at, id) < ($4, $5::bigint))
 ORDER BY received_at DESC, id DESC
 LIMIT $3
"""


def _group(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "kind": r["kind"],
        "field": r["field"],
        "rule": r["rule"],
        "count": r["n"],
        "firstSeen": iso(r["first_seen"]),
        "lastSeen": iso(r["last_seen"]),
        "newest": iso(r["last_seen"]),  # the answer's name before firstSeen/lastSeen
        "example": {
            "id": r["example_id"],
            "receivedAt": iso(r["example_at"]),
            "deviceId": _device_of(r["example_topic"]),
            "topic": r["example_topic"],
            "reason": r["example_reason"],
        },
    }


def _device_of(topic: str) -> str | None:
    """The device id a device's telemetry topic names (None for a topic of another shape, or a
    gateway's: its id names no device)."""
    levels = topic.split("/")
    if len(levels) != 3 or not levels[1] or by_topic(levels[0]) is None:
        return None
    return levels[1]


def _payload(raw: bytes) -> dict[str, str]:
    try:
        return {"payload": raw.decode("utf-8"), "payloadEncoding": "utf-8"}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(raw).decode(), "payloadEncoding": "base64"}


async def rejects(
    db: DB,
    *,
    since: datetime,
    field: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Rejected messages since `since` grouped by kind, field and rule (count, first and last
    seen, the newest as an example with its device id and reason), and the newest
    `limit` of them with their payloads (as text, or base64 when not UTF-8); `nextCursor`
    leads to the `limit` after them (None when there are no more). `now`: the instant a
    default `since` was taken from, kept in the cursor for the next pages."""
    if not 0 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
    query = fingerprint("rejects", iso(since), field)
    after: list[Any] = [None, None]
    if cursor is not None:
        stamp, ident = key_of(decode(cursor, "rejects", query), str, int)
        after = [instant_of(stamp), ident]
    counts = await db.fetch(_COUNTS_SQL, since, field)
    newest = await db.fetch(_NEWEST_SQL, since, field, limit + 1, *after) if limit else []
    newest, next_page = next_cursor(
        newest,
        limit or None,
        lambda r: [r["received_at"].isoformat(), r["id"]],
        listing="rejects",
        query=query,
        now=now or since,
    )
    return {
        "since": iso(since),
        "field": field,
        "total": sum(r["n"] for r in counts),
        "counts": [_group(r) for r in counts],
        "newest": [
            {
                "id": r["id"],
                "receivedAt": iso(r["received_at"]),
                "topic": r["topic"],
                "reason": r["reason"],
                **_payload(bytes(r["payload"])),
                # A conflict (sql/015): the stored values; the payload is the reading received.
                "stored": None if r["stored"] is None else json.loads(r["stored"]),
            }
            for r in newest
        ],
        "nextCursor": next_page,
    }
