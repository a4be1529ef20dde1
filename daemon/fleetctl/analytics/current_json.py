"""Current state as the HTTP answer's bytes: PostgreSQL writes each device's JSON object, so
GET /v1/current/all neither builds 20,000 dicts nor encodes them again (issue 27).

The text is the one `json_body(current(...))` sends, byte for byte for the values fleetd stores
(finite numbers in the registry's ranges, ASCII device ids; a non-ASCII id arrives as UTF-8
rather than as \\u escapes: the same JSON value). Numbers are written as Python's `repr` writes
them: the energy and the age as float8's shortest text (both use the shortest digits that read
back) with ".0" on whole numbers; the real columns rounded to 2 decimals half to even on their
exact binary value, as Python's `round(x, 2)` does (numeric's round goes half away from zero).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from fleetctl.analytics.connections import spare
from fleetctl.analytics.current import OFFLINE_AFTER_INTERVALS
from fleetctl.analytics.energy import DB
from fleetctl.analytics.rows import DEFAULT_INTERVAL_S
from fleetctl.analytics.window import iso
from fleetctl.params import CurrentKind
from fleetdb.kinds import METER, VEHICLE, DeviceKind


def _float(x: str) -> str:
    """float8 `x` as Python's repr writes it: float8's text is the shortest that reads back, as
    repr's; whole numbers get repr's ".0" ('-0.0' included). Both write fixed notation between
    1e-4 and 1e15, where every stored value lies (ingest checks the ranges)."""
    return (
        f"CASE WHEN {x} = trunc({x}) AND abs({x}) < 1e15 THEN {x}::text || '.0' ELSE {x}::text END"
    )


def _round2(name: str) -> str:
    """`round(name, 2)` of a real column, as float8, the same double Python's round gives.

    A float32 times 100 is exact in float8 (24 + 7 bits), and round() is rint(): ties to even
    on the exact value, as Python rounds; dividing by 100 then gives the double nearest the
    2-decimal result, which is what Python's round returns."""
    return f"round({name}::float8 * 100) / 100"


def _json_sql(k: DeviceKind) -> str:
    """count, offline and the devices' objects joined by commas (by device id), keys in the
    order `current._fetch_devices` builds them (the registry's columns between the times)."""
    values = [
        f"{c.name}::float8 AS {c.name}" if c.numeric else f"{_round2(c.name)} AS {c.name}"
        for c in k.columns
    ]
    keys = [f"'\"{c.wire}\":' || {_float('c.' + c.name)}" for c in k.columns]
    obj = " || ',' || ".join(
        [
            f"""'{{"{k.id_wire}":' || to_json(c.id)::text""",
            """'"timestamp":"' || c.ts || 'Z"'""",
            *keys,
            """'"updatedAt":"' || c.upd || 'Z"'""",
            f"""'"lastSeenSeconds":' || {_float("c.age")}""",
            """'"offline":' || c.offline::text || '}'""",
        ]
    )
    return f"""
        SELECT count(*), count(*) FILTER (WHERE c.offline),
               coalesce(string_agg({obj}, ',' ORDER BY c.id), '')
          FROM (SELECT {k.device} AS id,
                       overlay((ts AT TIME ZONE 'UTC')::text placing 'T' from 11 for 1) AS ts,
                       overlay((updated_at AT TIME ZONE 'UTC')::text placing 'T' from 11 for 1)
                           AS upd,
                       round(date_part('epoch', $1::timestamptz - ts) * 1000) / 1000 AS age,
                       $1::timestamptz - ts > $2::float8 * interval '1 second' AS offline,
                       {", ".join(values)}
                  FROM {k.current}) c"""


_JSON_SQL: dict[str, str] = {"meters": _json_sql(METER), "vehicles": _json_sql(VEHICLE)}


async def _kind(db: DB, kind: str, now: datetime, off: int) -> tuple[int, int, str]:
    n, n_off, devices = await db.fetchrow(_JSON_SQL[kind], now, off)  # type: ignore[misc]
    return n, n_off, devices


def _json(body: object) -> bytes:
    """As fleetsvc's json_body encodes an answer (one line, newline-terminated); analytics
    leaves the HTTP package alone, and a test holds the two answers equal."""
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _marker(kind: str) -> str:
    """A string json.dumps writes as "\\u0000<kind>\\u0000", where the devices' text goes."""
    return f"\0{kind}\0"


async def current_body(
    db: DB, kind: CurrentKind, *, interval_s: int = DEFAULT_INTERVAL_S, now: datetime | None = None
) -> bytes:
    """The bytes `json_body(await current(db, kind, now=now))` gives for a whole listing (no
    device, no page): with a pool, the two kinds of "all" on two connections at once."""
    now = now or datetime.now(UTC)
    off = OFFLINE_AFTER_INTERVALS * interval_s
    kinds = ("meters", "vehicles") if kind == "all" else (kind,)
    async with spare(db) as other, asyncio.TaskGroup() as tg:
        tasks = {}
        for i, k in enumerate(kinds):
            tasks[k] = tg.create_task(_kind(other if i and other else db, k, now, off))
            if other is None:
                await tasks[k]  # one connection: one statement at a time
    parts = {k: t.result() for k, t in tasks.items()}
    head: dict[str, object] = {"kind": kind, "asOf": iso(now), "offlineAfterSeconds": off}
    if kind == "all":
        body = {
            **head,
            "count": sum(n for n, _, _ in parts.values()),
            "offline": sum(o for _, o, _ in parts.values()),
            **{
                k: {"count": n, "offline": o, "devices": _marker(k)}
                for k, (n, o, _) in parts.items()
            },
        }
    else:
        n, o, _ = parts[kind]
        body = {**head, "count": n, "offline": o, "devices": _marker(kind)}
    # Split the envelope at its markers (meters' before vehicles'), never the devices' text.
    rest, pieces = _json({**body, "nextCursor": None}), []
    for k, (_, _, devices) in parts.items():
        before, rest = rest.split(_json(_marker(k))[:-1], 1)
        pieces += [before, b"[", devices.encode(), b"]"]
    return b"".join([*pieces, rest])
