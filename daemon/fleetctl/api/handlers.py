"""The analytics HTTP API: read-only JSON, the same as `fleetctl --json`, as a route table.

GET /v1/analytics/performance/{vehicleId}   ?hours= | ?start=&end=, minAcKwh=
GET /v1/analytics/fleet                     ?hours= | ?start=&end=, sort=, minAcKwh=, chargers=true
GET /v1/analytics/anomalies                 ?hours= | ?start=&end=, threshold=, minAcKwh=
GET /v1/analytics/chargers                  ?hours= | ?start=&end=: fitted efficiency, standby
GET /v1/current/{meters|vehicles}[/{id}]   /v1/current/all: every meter and vehicle
GET /v1/assignments                         ?vehicleId=, open=true
GET /v1/rejects                             ?since=, field=, limit=
GET /v1/alerts                              open alerts and those resolved in the last 24 h
POST /v1/assignments                        [{vehicleId, meterId, validFrom[, validTo]}, ...]:
                                            all or nothing, as FLEET_ADMIN_DATABASE_URL

Each route declares its parameters (ROUTES below): the server checks them before a handler
runs, so a bad one is a 400 naming it. Unknown ids answer 404; both {"error": "..."}.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from fleetctl.admin.assignment_import import import_periods, parse_json
from fleetctl.admin.assignments import all_assignments, assignments
from fleetctl.alerts.store import list_alerts
from fleetctl.analytics import (
    CurrentKind,
    anomalies,
    chargers,
    current,
    fleet_report,
    vehicle_performance,
)
from fleetctl.analytics.rejects import MAX_LIMIT, rejects
from fleetctl.analytics.window import Window
from fleetctl.params import DEFAULT_MIN_AC_KWH
from fleetdb.connect import create_pool
from fleetsvc.web import (
    BadRequestError,
    Call,
    Choice,
    Flag,
    ForbiddenError,
    Handler,
    Instant,
    Integer,
    Number,
    Param,
    Route,
    Text,
    json_response,
)

MAX_HOURS = 87_600.0  # ten years; a maximum window is a setting to come (issue 23)
BODY_TIMEOUT_S = 30.0  # a POST body trickled in slower than this is cut

WINDOW = (
    Param("hours", Number(0, MAX_HOURS, exclusive_minimum=True), description="the last H hours"),
    Param("start", Instant(), description="window start (RFC 3339); with end or hours"),
    Param("end", Instant(), description="window end (RFC 3339); default now"),
)
MIN_AC = Param(
    "minAcKwh",
    Number(0, 1e6),
    default=DEFAULT_MIN_AC_KWH,
    description="below this much billed AC energy a vehicle gets no verdict",
)
DEVICE_ID = Text(max_length=200)


def window_of(args: Any) -> Window:
    """The report window of a call's hours/start/end (the CLI's rules: fleetctl Window)."""
    start: datetime | None = args["start"]
    end: datetime | None = args["end"]
    return Window.parse(
        hours=args["hours"],
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
    )


class AnalyticsApi:
    """The /v1 routes on a small pool of their own, opened on first use."""

    def __init__(
        self, database_url: str, *, admin_url: str | None = None, pool_size: int = 2
    ) -> None:
        self._url = database_url
        self._admin_url = admin_url
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._admin_pool: asyncpg.Pool | None = None

    def routes(self) -> tuple[Route, ...]:
        """The /v1 route table."""
        kinds: tuple[CurrentKind, ...] = ("meters", "vehicles")
        current_routes = tuple(
            route
            for kind in kinds
            for route in (
                Route("GET", f"/v1/current/{kind}", self.current(kind), summary=f"every {kind}"),
                Route(
                    "GET",
                    f"/v1/current/{kind}/{{deviceId}}",
                    self.current(kind),
                    (Param("deviceId", DEVICE_ID, where="path"),),
                    summary=f"one {kind[:-1]}'s newest reading",
                    responses=(200, 404),
                ),
            )
        )
        return (
            Route(
                "GET",
                "/v1/analytics/performance/{vehicleId}",
                self.performance,
                (Param("vehicleId", DEVICE_ID, where="path"), *WINDOW, MIN_AC),
                summary="one vehicle's billed AC, stored DC and efficiency",
                responses=(200, 400, 404),
            ),
            Route(
                "GET",
                "/v1/analytics/fleet",
                self.fleet,
                (
                    *WINDOW,
                    MIN_AC,
                    Param(
                        "sort",
                        Choice(("efficiency", "vehicle", "loss", "ac")),
                        default="efficiency",
                    ),
                    Param("chargers", Flag(), default=False, description="each row's charger"),
                ),
                summary="every vehicle's efficiency and status",
                responses=(200, 400),
            ),
            Route(
                "GET",
                "/v1/analytics/anomalies",
                self.anomalies,
                (
                    *WINDOW,
                    MIN_AC,
                    Param("threshold", Number(0, 1.5, exclusive_minimum=True), default=0.85),
                ),
                summary="vehicles below the threshold, impossible readings",
                responses=(200, 400),
            ),
            Route(
                "GET",
                "/v1/analytics/chargers",
                self.chargers,
                WINDOW,
                summary="fitted converter efficiency and standby per meter",
                responses=(200, 400),
            ),
            Route("GET", "/v1/current/all", self.current("all"), summary="every meter and vehicle"),
            *current_routes,
            Route("GET", "/v1/alerts", self.alerts, summary="open and recently resolved alerts"),
            Route(
                "GET",
                "/v1/assignments",
                self.assignments,
                (Param("vehicleId", DEVICE_ID), Param("open", Flag(), default=False)),
                summary="vehicle-meter assignments",
            ),
            Route(
                "POST",
                "/v1/assignments",
                self.import_assignments,
                summary="import assignments, all or nothing",
                responses=(200, 400, 403),
            ),
            Route(
                "GET",
                "/v1/rejects",
                self.rejects,
                (
                    Param("since", Instant(), description="default 24 h ago"),
                    Param("field", Text(max_length=100)),
                    Param("limit", Integer(0, MAX_LIMIT), default=20),
                ),
                summary="dead letters by field and rule, the newest payloads",
            ),
        )

    async def close(self) -> None:
        """Close the pools that were opened."""
        for pool in (self._pool, self._admin_pool):
            if pool is not None:
                await pool.close()
        self._pool = self._admin_pool = None

    async def ping(self) -> None:
        """One round trip to the database (for /healthz)."""
        await (await self.pool()).fetchval("SELECT 1")

    async def pool(self) -> asyncpg.Pool:
        """The analytics pool (opened on first use)."""
        if self._pool is None:
            self._pool = await create_pool(
                self._url, min_size=0, max_size=self._pool_size, application_name="fleetctl-serve"
            )
        return self._pool

    async def performance(self, call: Call) -> web.StreamResponse:
        """GET /v1/analytics/performance/{vehicleId}."""
        a = call.args
        body = await vehicle_performance(
            await self.pool(), a["vehicleId"], window_of(a), min_ac_kwh=a["minAcKwh"]
        )
        return json_response(200, body)

    async def fleet(self, call: Call) -> web.StreamResponse:
        """GET /v1/analytics/fleet."""
        a = call.args
        body = await fleet_report(
            await self.pool(),
            window_of(a),
            sort=a["sort"],
            min_ac_kwh=a["minAcKwh"],
            with_chargers=a["chargers"],
        )
        return json_response(200, body)

    async def anomalies(self, call: Call) -> web.StreamResponse:
        """GET /v1/analytics/anomalies."""
        a = call.args
        body = await anomalies(
            await self.pool(), window_of(a), threshold=a["threshold"], min_ac_kwh=a["minAcKwh"]
        )
        return json_response(200, body)

    async def chargers(self, call: Call) -> web.StreamResponse:
        """GET /v1/analytics/chargers."""
        return json_response(200, await chargers(await self.pool(), window_of(call.args)))

    def current(self, kind: CurrentKind) -> Handler:
        """GET /v1/current/{meters|vehicles}[/{deviceId}] and /v1/current/all."""

        async def handler(call: Call) -> web.StreamResponse:
            body = await current(await self.pool(), kind, call.args.get("deviceId"))
            return json_response(200, body)

        return handler

    async def alerts(self, _call: Call) -> web.StreamResponse:
        """GET /v1/alerts."""
        return json_response(200, await list_alerts(await self.pool()))

    async def assignments(self, call: Call) -> web.StreamResponse:
        """GET /v1/assignments: every assignment, or one vehicle's (?vehicleId=), or the open
        ones (?open=true)."""
        db = await self.pool()
        vehicle, open_only = call.args["vehicleId"], call.args["open"]
        if vehicle:
            rows = await assignments(db, vehicle)
            if open_only:
                rows = [r for r in rows if r["validTo"] is None]
        else:
            rows = await all_assignments(db, open_only=open_only)
        return json_response(200, {"count": len(rows), "assignments": rows})

    async def import_assignments(self, call: Call) -> web.StreamResponse:
        """POST /v1/assignments: a JSON list written in one transaction, all or nothing."""
        if not self._admin_url:
            raise ForbiddenError(
                "assignment writes are off: set FLEET_ADMIN_DATABASE_URL (a fleet_admin login)"
            )
        try:
            body = await asyncio.wait_for(call.request.read(), BODY_TIMEOUT_S)
        except TimeoutError:
            raise BadRequestError(f"body not received within {BODY_TIMEOUT_S:.0f} s") from None
        try:
            items = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequestError(f"body is not JSON: {exc}") from None
        periods = parse_json(items)
        if self._admin_pool is None:
            self._admin_pool = await create_pool(
                self._admin_url, min_size=0, max_size=1, application_name="fleetctl-admin"
            )
        return json_response(200, await import_periods(self._admin_pool, periods))

    async def rejects(self, call: Call) -> web.StreamResponse:
        """GET /v1/rejects: dead letters counted by field and rule, the newest payloads."""
        a = call.args
        since = a["since"] or datetime.now(UTC) - timedelta(hours=24)
        body = await rejects(await self.pool(), since=since, field=a["field"], limit=a["limit"])
        return json_response(200, body)
