"""Current state: every device's newest reading, with its age and an offline flag."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fleetctl.analytics.connections import spare
from fleetctl.analytics.energy import DB
from fleetctl.analytics.pages import (
    Page,
    decode,
    decode_error,
    fingerprint,
    key_of,
    next_cursor,
)
from fleetctl.analytics.rows import DEFAULT_INTERVAL_S
from fleetctl.analytics.window import iso
from fleetctl.errors import InvalidRequestError, UnknownDeviceError
from fleetctl.params import CURRENT_KINDS, CurrentKind
from fleetdb.kinds import METER, VEHICLE, DeviceKind

OFFLINE_AFTER_INTERVALS = 3


# Numbers arrive as float8 and timestamps as UTC text (ISO DateStyle, PostgreSQL's default and
# set by connect_analytics), and the age is computed by the server: decoding 20,000 numerics into
# Decimals and timestamps into datetimes, then formatting them again, cost more than the query.
# One row of column arrays rather than 10,000 rows: records are objects the cyclic collector
# tracks, list items of str and float are not. array_agg takes the rows in
# the order the subquery sorts them (PostgreSQL's documented behaviour for a plain aggregate).
# The server also decides `offline` (exactly) and rounds the age to whole milliseconds: a
# function call per device less in Python, where 20,000 dicts are the critical path.
def _current_sql(k: DeviceKind) -> str:
    """A page of `k`'s current rows: device, times, age, offline, then its value columns in
    the registry's order (the energy column as float8 `kwh`)."""
    names = ", ".join(f"array_agg({'kwh' if c.numeric else c.name})" for c in k.columns)
    values = ", ".join(f"{c.name}::float8 AS kwh" if c.numeric else c.name for c in k.columns)
    return f"""
        SELECT array_agg({k.device}), array_agg(ts), array_agg(updated_at), array_agg(age_ms),
               array_agg(offline), {names}
          FROM (SELECT {k.device}, (ts AT TIME ZONE 'UTC')::text AS ts,
                       (updated_at AT TIME ZONE 'UTC')::text AS updated_at,
                       round(date_part('epoch', $2::timestamptz - ts) * 1000) AS age_ms,
                       $2::timestamptz - ts > $3::float8 * interval '1 second' AS offline,
                       {values}
                  FROM {k.current}
                 WHERE ($1::text IS NULL OR {k.device} = $1)
                   AND ($4::text IS NULL OR {k.device} > $4)
                 ORDER BY {k.device} LIMIT $5) c"""


_CURRENT_SQL: dict[str, str] = {f"{k.name}s": _current_sql(k) for k in (METER, VEHICLE)}


# The totals of a kind when only a page of its devices is listed.
_TOTALS_SQL = {
    kind: f"""SELECT count(*), count(*) FILTER (WHERE $1::timestamptz - ts > $2::float8 *
                                                      interval '1 second')
                FROM {k.current}"""
    for kind, k in (("meters", METER), ("vehicles", VEHICLE))
}
# A page of "all" lists meters, then vehicles: the position is (kind index, device id).
_KIND_ORDER: tuple[CurrentKind, ...] = ("meters", "vehicles")


class _Stamps(dict[str, str]):
    """'2026-11-23 14:59:00.5' (a UTC timestamp as PostgreSQL prints it) -> RFC 3339 with Z,
    formatted once per distinct value: devices report on the same minutes and a flush commits
    thousands of rows with one updated_at."""

    def __missing__(self, text: str) -> str:
        self[text] = stamp = text[:10] + "T" + text[11:] + "Z"
        return stamp


async def _fetch_devices(
    db: DB,
    kind: CurrentKind,
    device_id: str | None,
    *,
    now: datetime,
    off: int,
    z: _Stamps,
    after: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    [columns] = await db.fetch(_CURRENT_SQL[kind], device_id, now, off, after, limit)
    rows = zip(*(c or () for c in columns), strict=True)
    # real columns arrive as float32 values (98.51000213...): 2 decimals is the sensors'
    # resolution.
    if kind == "meters":
        return [
            {
                "meterId": i,
                "timestamp": z[ts],
                "kwhConsumedAc": kwh,
                "voltage": round(volt, 2),
                "updatedAt": z[upd],
                "lastSeenSeconds": age_ms / 1000,
                "offline": offline,
            }
            for i, ts, upd, age_ms, offline, kwh, volt in rows
        ]
    return [
        {
            "vehicleId": i,
            "timestamp": z[ts],
            "soc": round(soc, 2),
            "kwhDeliveredDc": kwh,
            "batteryTemp": round(temp, 2),
            "updatedAt": z[upd],
            "lastSeenSeconds": age_ms / 1000,
            "offline": offline,
        }
        for i, ts, upd, age_ms, offline, soc, kwh, temp in rows
    ]


def _kind_json(devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "count": len(devices),
        "offline": sum(1 for d in devices if d["offline"]),
        "devices": devices,
    }


async def _current_all(db: DB, now: datetime, off: int) -> dict[str, Any]:
    """Both kinds: with a pool, the vehicles are fetched on a second connection while the
    meters' dicts are built, so the server's and Python's halves overlap."""
    z = _Stamps()
    async with spare(db) as other, asyncio.TaskGroup() as tg:
        vehicles_task = tg.create_task(
            _fetch_devices(other or db, "vehicles", None, now=now, off=off, z=z)
        )
        if other is None:
            await vehicles_task  # one connection: one statement at a time
        meters = await _fetch_devices(db, "meters", None, now=now, off=off, z=z)
    vehicles = vehicles_task.result()
    m, v = _kind_json(meters), _kind_json(vehicles)
    return {
        "kind": "all",
        "asOf": iso(now),
        "offlineAfterSeconds": off,
        "count": m["count"] + v["count"],
        "offline": m["offline"] + v["offline"],
        "meters": m,
        "vehicles": v,
    }


async def current(
    db: DB,
    kind: CurrentKind,
    device_id: str | None = None,
    *,
    interval_s: int = DEFAULT_INTERVAL_S,
    now: datetime | None = None,
    page: Page | None = None,
) -> dict[str, Any]:
    """The newest reading of every device of a kind (or one), with its age and offline flag.

    kind "all": every meter and every vehicle in one call, under "meters" and "vehicles".
    `page`: `limit` devices by id after the cursor's (meters first for "all"); `nextCursor`
    leads to the next page (None on the last; a listing always carries it).
    """
    if kind not in CURRENT_KINDS:
        raise ValueError("kind must be 'meters', 'vehicles' or 'all'")
    now = now or datetime.now(UTC)
    off = OFFLINE_AFTER_INTERVALS * interval_s
    if kind == "all" and device_id is not None:
        raise InvalidRequestError("one device needs its kind: meters or vehicles, not all")
    if page is not None and page != Page():
        if device_id is not None:
            raise InvalidRequestError("one device is not a listing: leave out limit and cursor")
        return await _current_page(db, kind, page, now=now, off=off)
    if kind == "all":
        return {**await _current_all(db, now, off), "nextCursor": None}
    devices = await _fetch_devices(db, kind, device_id, now=now, off=off, z=_Stamps())
    if device_id is not None and not devices:
        raise UnknownDeviceError(f"unknown {kind[:-1]} {device_id!r}")
    listing = {"kind": kind, "asOf": iso(now), "offlineAfterSeconds": off, **_kind_json(devices)}
    return listing if device_id is not None else {**listing, "nextCursor": None}


async def _current_page(
    db: DB, kind: CurrentKind, page: Page, *, now: datetime, off: int
) -> dict[str, Any]:
    """`page.limit` devices (all without a limit) after the cursor's, by id (meters, then
    vehicles for "all"); count and offline are the kind's totals, as without a page."""
    kinds = _KIND_ORDER if kind == "all" else (kind,)
    query = fingerprint("current", kind)
    start, after = 0, None
    if page.cursor is not None:
        position = key_of(decode(page.cursor, f"current/{kind}", query), int, str)
        start, after = position[0], position[1]
        if not 0 <= start < len(kinds):
            raise decode_error()
    z = _Stamps()
    lists: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    # One more than a page tells whether another follows.
    room = None if page.limit is None else page.limit + 1
    for i in range(start, len(kinds)):
        fetched = await _fetch_devices(
            db,
            kinds[i],
            None,
            now=now,
            off=off,
            z=z,
            after=after if i == start else None,
            limit=room,
        )
        lists[kinds[i]] = fetched
        if room is not None:
            room -= len(fetched)
            if room <= 0:
                break
    keyed = [(i, d) for i, k in enumerate(kinds) for d in lists[k]]
    shown, next_page = next_cursor(
        keyed,
        page.limit,
        lambda item: [item[0], _device_id(item[1])],
        listing=f"current/{kind}",
        query=query,
        now=now,
    )
    out: dict[str, Any] = {"kind": kind, "asOf": iso(now), "offlineAfterSeconds": off}
    total = offline = 0
    for i, k in enumerate(kinds):
        n, n_off = await db.fetchrow(_TOTALS_SQL[k], now, off)  # type: ignore[misc]
        part = {"count": n, "offline": n_off, "devices": [d for j, d in shown if j == i]}
        total, offline = total + n, offline + n_off
        if kind == "all":
            out[k] = part
        else:
            out.update(part)
    if kind == "all":
        out.update(count=total, offline=offline)
    return {**out, "nextCursor": next_page}


def _device_id(device: dict[str, Any]) -> str:
    return str(device.get("meterId") or device.get("vehicleId"))
