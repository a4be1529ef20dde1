"""The analytics HTTP API: read-only JSON, the same as `fleetctl --json`, as a route table.

Each row of the table (AnalyticsApi.table) is an Operation (fleetctl.api.contract: its
parameter models, its answer model, its error statuses) and the handler that answers it. The
server reads and checks the parameters through the models before a handler runs, so a bad one
is a 400 naming it; unknown ids answer 404; both {"error": "..."}. The OpenAPI document at
/v1/openapi.json is generated from the same table (fleetctl.api.openapi), and its page is
/v1/docs. docs/api.md describes the contract.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import asyncpg
from aiohttp import web

from fleetctl.admin.assignment_import import import_periods, parse_json
from fleetctl.admin.assignments import list_assignments
from fleetctl.alerts.store import list_alerts
from fleetctl.analytics import (
    anomalies,
    chargers,
    current,
    current_body,
    fleet_daily,
    fleet_report,
    fleet_summary,
    rejects,
    search_vehicles,
    vehicle_performance,
)
from fleetctl.analytics.assignment_check import assignment_check
from fleetctl.analytics.daily import DayCache
from fleetctl.analytics.pages import Page
from fleetctl.api import params as p
from fleetctl.api import schemas as s
from fleetctl.api.contract import Handler, Operation
from fleetctl.api.dashboard import static_dir
from fleetctl.api.openapi import document
from fleetdb.connect import create_pool
from fleetsvc.web import BadRequestError, ForbiddenError, Route, json_response

BODY_TIMEOUT_S = 30.0  # a POST body trickled in slower than this is cut
DEFAULT_REJECTS = 20  # newest payloads of /v1/rejects without a limit

# The table's rows without their handlers: what each route takes and answers.
PERFORMANCE = Operation(
    "GET",
    "/v1/analytics/performance/{vehicleId}",
    "one vehicle's billed AC, stored DC, efficiency and hourly breakdown",
    s.Performance,
    p.PerformanceQuery,
    p.VehiclePath,
    errors=(400, 404),
)
FLEET = Operation(
    "GET",
    "/v1/analytics/fleet",
    "every vehicle's efficiency and status, worst first, a page at a time",
    s.Fleet,
    p.FleetQuery,
)
FLEET_SUMMARY = Operation(
    "GET",
    "/v1/analytics/fleet/summary",
    "the fleet's totals, counts per status and worst vehicles (no rows)",
    s.FleetSummary,
    p.FleetSummaryQuery,
)
FLEET_DAILY = Operation(
    "GET",
    "/v1/analytics/fleet/daily",
    "the whole fleet's AC, DC and efficiency per UTC day (whole hours of the window)",
    s.FleetDaily,
    p.FleetDailyQuery,
)
ANOMALIES = Operation(
    "GET",
    "/v1/analytics/anomalies",
    "vehicles below the threshold, and impossible readings",
    s.Anomalies,
    p.AnomaliesQuery,
)
CHARGERS = Operation(
    "GET",
    "/v1/analytics/chargers",
    "each charger's fitted conversion efficiency and standby draw, worst first",
    s.Chargers,
    p.ChargersQuery,
)
CURRENT_ALL = Operation(
    "GET",
    "/v1/current/all",
    "every meter's and vehicle's newest reading (meters first, by id), a page at a time",
    s.CurrentAll,
    p.CurrentQuery,
)
CURRENT_KIND = Operation(
    "GET",
    "/v1/current/{kind:meters|vehicles}",
    "the newest reading of every meter or vehicle, by id, a page at a time",
    s.CurrentKind,
    p.CurrentQuery,
    p.CurrentKindPath,
)
CURRENT_DEVICE = Operation(
    "GET",
    "/v1/current/{kind:meters|vehicles}/{deviceId}",
    "one device's newest reading",
    s.CurrentDevices,
    p.NoQuery,
    p.CurrentDevicePath,
    errors=(400, 404),
)
ALERTS = Operation(
    "GET",
    "/v1/alerts",
    "open alerts and those resolved in the last 24 h, a page at a time",
    s.Alerts,
    p.AlertsQuery,
)
VEHICLES = Operation(
    "GET",
    "/v1/vehicles",
    "vehicle ids starting with a prefix (any case), by id, a page at a time (type-ahead)",
    s.Vehicles,
    p.VehiclesQuery,
)
ASSIGNMENTS = Operation(
    "GET",
    "/v1/assignments",
    "vehicle-meter assignments by vehicle and start, a page at a time",
    s.Assignments,
    p.AssignmentsQuery,
)
ASSIGNMENT_CHECK = Operation(
    "GET",
    "/v1/assignments/check",
    "vehicles whose charging hours do not line up with their meter's AC, with the meter "
    "that fits best",
    s.AssignmentCheck,
    p.AssignmentCheckQuery,
)
IMPORT = Operation(
    "POST",
    "/v1/assignments",
    "import assignments in one transaction, all or nothing; those already stored are "
    "unchanged, ids that never reported named (refused with strict=true)",
    s.Imported,
    p.ImportQuery,
    body=list[s.AssignmentIn],
    errors=(400, 403),
)
REJECTS = Operation(
    "GET",
    "/v1/rejects",
    "dead letters grouped by kind, field and rule (count, first and last seen, an example), "
    "and the newest payloads a page at a time",
    s.Rejects,
    p.RejectsQuery,
)
OPENAPI = Operation(
    "GET",
    "/v1/openapi.json",
    "this document (OpenAPI 3.1)",
    None,
    public=True,
    content_type="application/json",
)
DOCS = Operation(
    "GET",
    "/v1/docs",
    "this document as a page (Swagger UI)",
    None,
    public=True,
    content_type="text/html",
)


def _version() -> str:
    try:
        return version("fleet-telemetry")
    except PackageNotFoundError:  # a source tree without an install
        return "0"


class AnalyticsApi:
    """The /v1 routes on a small pool of their own, opened on first use."""

    def __init__(
        self,
        database_url: str,
        *,
        admin_url: str | None = None,
        pool_size: int = 2,
        limits: p.ApiLimits | None = None,
    ) -> None:
        self._url = database_url
        self._admin_url = admin_url
        self._pool_size = pool_size
        self._limits = limits or p.ApiLimits()
        self._pool: asyncpg.Pool | None = None
        self._admin_pool: asyncpg.Pool | None = None
        self._day_cache = DayCache()  # closed days of /v1/analytics/fleet/daily

    def table(self) -> tuple[tuple[Operation, Handler], ...]:
        """The /v1 route table: each operation and its handler."""
        return (
            (PERFORMANCE, self.performance),
            (FLEET, self.fleet),
            (FLEET_SUMMARY, self.fleet_summary),
            (FLEET_DAILY, self.fleet_daily),
            (ANOMALIES, self.anomalies),
            (CHARGERS, self.chargers),
            (CURRENT_ALL, self.current),
            (CURRENT_KIND, self.current),
            (CURRENT_DEVICE, self.current),
            (ALERTS, self.alerts),
            (VEHICLES, self.vehicles),
            (ASSIGNMENTS, self.assignments),
            (ASSIGNMENT_CHECK, self.assignment_check),
            (IMPORT, self.import_assignments),
            (REJECTS, self.rejects),
            (OPENAPI, self.openapi),
            (DOCS, self.docs),
        )

    def routes(self) -> tuple[Route, ...]:
        """The server's routes of the table."""
        return tuple(op.route(handler) for op, handler in self.table())

    @cached_property
    def openapi_document(self) -> dict[str, Any]:
        """The OpenAPI document of the table (built once)."""
        return document((op for op, _ in self.table()), version=_version(), limits=self._limits)

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

    async def performance(
        self, _r: web.Request, q: p.PerformanceQuery, path: p.VehiclePath
    ) -> web.StreamResponse:
        """GET /v1/analytics/performance/{vehicleId}."""
        body = await vehicle_performance(
            await self.pool(),
            path.vehicleId,
            q.window(self._limits),
            min_ac_kwh=q.minAcKwh,
            meter_id=q.meterId,
        )
        return json_response(200, body)

    async def fleet(self, _r: web.Request, q: p.FleetQuery, _p: None) -> web.StreamResponse:
        """GET /v1/analytics/fleet: a page (with limit) or every vehicle."""
        now = q.now()
        body = await fleet_report(
            await self.pool(),
            q.window(self._limits, now),
            sort=q.sort,
            min_ac_kwh=q.minAcKwh,
            with_chargers=q.chargers,
            page=q.page(),
            now=now,
        )
        return json_response(200, body)

    async def fleet_summary(
        self, _r: web.Request, q: p.FleetSummaryQuery, _p: None
    ) -> web.StreamResponse:
        """GET /v1/analytics/fleet/summary."""
        body = await fleet_summary(
            await self.pool(), q.window(self._limits), worst=q.worst, min_ac_kwh=q.minAcKwh
        )
        return json_response(200, body)

    async def fleet_daily(
        self, _r: web.Request, q: p.FleetDailyQuery, _p: None
    ) -> web.StreamResponse:
        """GET /v1/analytics/fleet/daily."""
        body = await fleet_daily(
            await self.pool(),
            q.window(self._limits),
            min_ac_kwh=q.minAcKwh,
            cache=self._day_cache,
        )
        return json_response(200, body)

    async def vehicles(self, _r: web.Request, q: p.VehiclesQuery, _p: None) -> web.StreamResponse:
        """GET /v1/vehicles?prefix=: the type-ahead's search."""
        body = await search_vehicles(await self.pool(), q.prefix, page=q.page(), now=q.now())
        return json_response(200, body)

    async def anomalies(self, _r: web.Request, q: p.AnomaliesQuery, _p: None) -> web.StreamResponse:
        """GET /v1/analytics/anomalies."""
        body = await anomalies(
            await self.pool(),
            q.window(self._limits),
            threshold=q.threshold,
            min_ac_kwh=q.minAcKwh,
        )
        return json_response(200, body)

    async def chargers(self, _r: web.Request, q: p.ChargersQuery, _p: None) -> web.StreamResponse:
        """GET /v1/analytics/chargers."""
        report = await chargers(
            await self.pool(), q.window(self._limits), max_interval=q.maxInterval
        )
        return json_response(200, report)

    async def current(
        self,
        _r: web.Request,
        q: p.CurrentQuery | p.NoQuery,
        path: p.CurrentKindPath | p.CurrentDevicePath | None,
    ) -> web.StreamResponse:
        """GET /v1/current/all, /v1/current/{kind}[/{deviceId}]."""
        kind = "all" if path is None else path.kind
        device = path.deviceId if isinstance(path, p.CurrentDevicePath) else None
        page = q.page() if isinstance(q, p.CurrentQuery) else None
        if device is None and (page is None or page == Page()):
            # A whole listing: PostgreSQL writes the devices' JSON, the same bytes (issue 27).
            data = await current_body(await self.pool(), kind)
            return web.Response(status=200, body=data, content_type="application/json")
        body = await current(await self.pool(), kind, device, page=page)
        return json_response(200, body)

    async def alerts(self, _r: web.Request, q: p.AlertsQuery, _p: None) -> web.StreamResponse:
        """GET /v1/alerts."""
        body = await list_alerts(await self.pool(), page=q.page(), now=q.now())
        return json_response(200, body)

    async def assignments(
        self, _r: web.Request, q: p.AssignmentsQuery, _p: None
    ) -> web.StreamResponse:
        """GET /v1/assignments: every assignment, or one vehicle's (?vehicleId=), or the open
        ones (?open=true)."""
        body = await list_assignments(
            await self.pool(),
            vehicle_id=q.vehicleId,
            open_only=q.open,
            page=q.page(),
        )
        return json_response(200, body)

    async def assignment_check(
        self, _r: web.Request, q: p.AssignmentCheckQuery, _p: None
    ) -> web.StreamResponse:
        """GET /v1/assignments/check."""
        body = await assignment_check(await self.pool(), q.window(self._limits), every=q.all)
        return json_response(200, body)

    async def import_assignments(
        self, request: web.Request, q: p.ImportQuery, _p: None
    ) -> web.StreamResponse:
        """POST /v1/assignments: a JSON list written in one transaction, all or nothing (as
        `fleetctl assign --file`: the same again is unchanged, ?strict=true refuses ids that
        never reported)."""
        if not self._admin_url:
            raise ForbiddenError(
                "assignment writes are off: set FLEET_ADMIN_DATABASE_URL (a fleet_admin login)"
            )
        try:
            body = await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
        except TimeoutError:
            raise BadRequestError(f"body not received within {BODY_TIMEOUT_S:.0f} s") from None
        try:
            items = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise BadRequestError(f"body is not JSON: {exc}") from None
        periods = parse_json(items)
        if self._admin_pool is None:
            self._admin_pool = await create_pool(
                self._admin_url, min_size=0, max_size=1, application_name="fleetctl-admin"
            )
        imported = await import_periods(self._admin_pool, periods, strict=q.strict)
        return json_response(200, imported)

    async def rejects(self, _r: web.Request, q: p.RejectsQuery, _p: None) -> web.StreamResponse:
        """GET /v1/rejects: dead letters counted by field and rule, the newest payloads."""
        now = q.now()
        body = await rejects(
            await self.pool(),
            since=q.since or now - timedelta(hours=24),
            field=q.field,
            limit=DEFAULT_REJECTS if q.limit is None else q.limit,
            cursor=q.cursor,
            now=now,
        )
        return json_response(200, body)

    async def openapi(self, _r: web.Request, _q: p.NoQuery, _p: None) -> web.StreamResponse:
        """GET /v1/openapi.json (public: it describes, it holds no data)."""
        return json_response(200, self.openapi_document)

    async def docs(self, _r: web.Request, _q: p.NoQuery, _p: None) -> web.StreamResponse:
        """GET /v1/docs: Swagger UI over /v1/openapi.json, from files vendored by
        `make static` (no CDN)."""
        # Named here: the headers are added before aiohttp names a file's type itself.
        return web.FileResponse(
            static_dir() / "docs.html", headers={"Content-Type": "text/html; charset=utf-8"}
        )
