"""Dead letters: what fleetd refused and kept (`rejected_messages`), counted and shown."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from fleetctl.analytics.energy import DB
from fleetctl.analytics.pages import decode, fingerprint, instant_of, key_of, next_cursor
from fleetctl.analytics.window import iso
from fleetctl.errors import InvalidRequestError

MAX_LIMIT = 1000

# Reasons start with the field they name ("soc: must be <= 100 (got 150)"): counted by that
# field and by the rule without the value it quotes, so one broken firmware is one line.
_COUNTS_SQL = """
SELECT split_part(topic, '/', 1) AS kind, split_part(reason, ':', 1) AS field,
       regexp_replace(reason, ' \\(got .*\\)$', '') AS rule, count(*) AS n,
       max(received_at) AS newest
  FROM rejected_messages
 WHERE received_at >= $1 AND ($2::text IS NULL OR split_part(reason, ':', 1) = $2)
 GROUP BY 1, 2, 3
 ORDER BY n DESC, kind, field, rule
"""
# Newest first, ties by id: a unique order, so a page ends exactly where the next begins.
_NEWEST_SQL = """
SELECT id, received_at, topic, reason, payload
  FROM rejected_messages
 WHERE received_at >= $1 AND ($2::text IS NULL OR split_part(reason, ':', 1) = $2)
   AND ($4::timestamptz IS NULL OR (received_at, id) < ($4, $5::bigint))
 ORDER BY received_at DESC, id DESC
 LIMIT $3
"""


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
    """Counts of rejected messages by kind, field and rule since `since`, and the newest
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
        "counts": [
            {
                "kind": r["kind"],
                "field": r["field"],
                "rule": r["rule"],
                "count": r["n"],
                "newest": iso(r["newest"]),
            }
            for r in counts
        ],
        "newest": [
            {
                "id": r["id"],
                "receivedAt": iso(r["received_at"]),
                "topic": r["topic"],
                "reason": r["reason"],
                **_payload(bytes(r["payload"])),
            }
            for r in newest
        ],
        "nextCursor": next_page,
    }
