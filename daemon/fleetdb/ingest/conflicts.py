"""Readings whose key (device, ts) is stored already with other values: conflicts.

The stored reading stays (first write wins); the one received is kept as a reject whose payload
is that reading (in the wire format) and whose `stored` column holds the stored values, so an
operator sees that the two disagreed. A reading equal to the stored one is a plain duplicate.
Equality is judged as storage would have stored the received values: kWh as numeric(12,6),
the others as real.

Only rows the history INSERT did not insert are ever looked at (the writer knows them from its
RETURNING), so a batch without duplicates costs nothing here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter
from typing import Any

import asyncpg

from fleetdb.kinds import DeviceKind

# The rule of every conflict: with the field that differs, what `fleetctl rejects` groups by.
RULE = "conflicts with the stored reading"


# A reading of any kind: its class is the kind's `reading` (fleetdb.kinds).
Reading = Any


@dataclass(frozen=True, slots=True)
class Conflict:
    """One received reading that disagrees with the stored one of its key."""

    of: DeviceKind
    device: str
    ts: datetime
    received_at: datetime
    received: dict[str, float]  # by wire name
    stored: dict[str, float]
    differ: tuple[str, ...]  # wire names, in the payload's order

    @property
    def kind(self) -> str:
        """The kind's name."""
        return self.of.name

    @property
    def topic(self) -> str:
        return f"{self.of.topic}/{self.device}/telemetry"

    @property
    def field(self) -> str:
        """The first field that differs (the group `fleetctl rejects` counts it in)."""
        return self.differ[0]

    @property
    def payload(self) -> bytes:
        """The received reading in the wire format: replayable, and the same bytes for a
        redelivery of the same reading (so its reject is stored once)."""
        body: dict[str, Any] = {self.of.id_wire: self.device, **self.received}
        body["timestamp"] = self.ts.isoformat().replace("+00:00", "Z")
        return json.dumps(body, separators=(",", ":")).encode()

    @property
    def reason(self) -> str:
        """`field: conflicts with the stored reading (got X, stored Y)`, per differing field."""
        return "; ".join(
            f"{f}: {RULE} (got {self.received[f]!r}, stored {self.stored[f]!r})"
            for f in self.differ
        )


def _stored_sql(kind: DeviceKind, table: str) -> str:
    """The stored values (as text) and which differ, of the given readings that have a stored
    row in `table` (a history or late table of `kind`) different from them."""
    fields = kind.columns
    params = "".join(f", ${i + 3}::{f.param}[]" for i, f in enumerate(fields))
    names = "".join(f", c{i}" for i in range(len(fields)))
    received = [f"u.c{i}::{f.sql_type}" if f.numeric else f"u.c{i}" for i, f in enumerate(fields)]
    differ = [f"x.{f.name} IS DISTINCT FROM {r}" for f, r in zip(fields, received, strict=True)]
    shown = [f"trim_scale(x.{f.name})::text" if f.numeric else f"x.{f.name}::text" for f in fields]
    return f"""
SELECT u.o, {", ".join(shown)}, {", ".join(differ)}
  FROM unnest($1::text[], $2::timestamptz[]{params}) WITH ORDINALITY AS u(d, t{names}, o)
  JOIN {table} x ON x.{kind.device} = u.d AND x.ts = u.t
 WHERE {" OR ".join(differ)}
"""


def _received(kind: DeviceKind, r: Reading) -> dict[str, float]:
    return {f.wire: getattr(r, f.name) for f in kind.columns}


async def find_stored(
    conn: asyncpg.Connection,
    kind: DeviceKind,
    pairs: Sequence[tuple[Reading, datetime]],
    *,
    late: bool = False,
) -> list[Conflict]:
    """The conflicts among `pairs` (readings with their receive times, of one kind) with the
    history (or, `late`, the late table of compacted days). Call in the batch's transaction,
    after its INSERT: a reading inserted by it is stored, so the other version of its key in
    the same batch is found too."""
    if not pairs:
        return []
    fields = kind.columns
    device = attrgetter(kind.device)
    rows = await conn.fetch(
        _stored_sql(kind, kind.late if late else kind.history),
        [device(r) for r, _ in pairs],
        [r.ts for r, _ in pairs],
        *([getattr(r, f.name) for r, _ in pairs] for f in fields),
    )
    n = len(fields)
    found = []
    for row in rows:
        r, received_at = pairs[row[0] - 1]
        stored = {f.wire: float(row[1 + i]) for i, f in enumerate(fields)}
        differ = tuple(f.wire for i, f in enumerate(fields) if row[1 + n + i])
        found.append(
            Conflict(kind, device(r), r.ts, received_at, _received(kind, r), stored, differ)
        )
    return found


def _micro(kwh: float) -> int:
    # As PostgreSQL stores float8 into numeric(12,6): 15 significant digits, then rounded to
    # 6 places half away from zero (values are >= 0); blocks hold kWh in millionths.
    return int(Decimal(f"{kwh:.15g}").scaleb(6).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def compare_with_block(
    kind: DeviceKind, r: Reading, received_at: datetime, kwh_u: int, floats: Sequence[float]
) -> Conflict | None:
    """A reading against its stored twin in a compacted day's block (kWh in millionths and
    the layout's real columns): the conflict, or None when they are equal."""
    import numpy as np  # noqa: PLC0415 - loaded already by the block decoder calling this

    by_column = dict(zip(kind.floats, floats, strict=True))
    stored: dict[str, float] = {}
    differ: list[str] = []
    for f in kind.columns:
        value = getattr(r, f.name)
        if f.numeric:
            stored[f.wire] = float(Decimal(kwh_u).scaleb(-6))
            same = _micro(value) == kwh_u
        else:
            s32 = np.float32(by_column[f.name])
            stored[f.wire] = float(str(s32))  # the shortest text of the real, as SQL shows it
            same = bool(np.float32(value) == s32)
        if not same:
            differ.append(f.wire)
    if not differ:
        return None
    device = getattr(r, kind.device)
    return Conflict(kind, device, r.ts, received_at, _received(kind, r), stored, tuple(differ))


# RETURNING 1, not a column: fleetd's login may write dead letters, never read them.
INSERT_CONFLICTS = """
WITH ins AS (
    INSERT INTO rejected_messages (received_at, topic, payload, reason, payload_sha256, stored,
                                   field, rule)
    SELECT r, t, p, m, h, s::jsonb, f, $8
      FROM unnest($1::timestamptz[], $2::text[], $3::bytea[], $4::text[], $5::bytea[],
                  $6::text[], $7::text[]) AS u(r, t, p, m, h, s, f)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM ins
"""


async def store(conn: asyncpg.Connection, conflicts: Sequence[Conflict]) -> int:
    """Keep `conflicts` as rejects (a redelivered one is stored once); how many are new."""
    if not conflicts:
        return 0
    payloads = [c.payload for c in conflicts]
    n: int = await conn.fetchval(
        INSERT_CONFLICTS,
        [c.received_at for c in conflicts],
        [c.topic for c in conflicts],
        payloads,
        [c.reason for c in conflicts],
        [hashlib.sha256(p).digest() for p in payloads],
        [json.dumps(c.stored) for c in conflicts],
        [c.field for c in conflicts],
        RULE,
    )
    return n
