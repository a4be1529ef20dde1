"""The analytics HTTP API: read-only JSON, the same as `fleetctl --json`.

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

Unknown ids answer 404, bad parameters 400, each with {"error": "..."}.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

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
from fleetctl.analytics.rejects import rejects
from fleetctl.analytics.window import Window, parse_rfc3339
from fleetctl.errors import AnalyticsError, UnknownDeviceError
from fleetctl.params import DEFAULT_MIN_AC_KWH
from fleetdb.connect import create_pool
from fleetsvc.http import HttpServer, Response, json_response


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

    def install(self, server: HttpServer) -> None:
        """Register the routes on `server`."""
        server.add_route("/v1/analytics/", self.analytics)
        server.add_route("/v1/alerts", self.alerts)
        server.add_route("/v1/current/", self.current)
        server.add_route("/v1/assignments", self.assignments)
        server.add_route("/v1/rejects", self.rejects)
        server.add_post_route("/v1/assignments", self.import_assignments)
        server.on_close(self.close)

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
        if self._pool is None:
            self._pool = await create_pool(
                self._url, min_size=0, max_size=self._pool_size, application_name="fleetctl-serve"
            )
        return self._pool

    async def analytics(self, path: str, query: dict[str, str]) -> Response:
        """/v1/analytics/{performance/ID | fleet | anomalies | chargers}."""
        parts = [p for p in path.split("/") if p][2:]
        try:
            window = Window.parse(
                hours=_float(query, "hours"), start=query.get("start"), end=query.get("end")
            )
            min_ac = _float(query, "minAcKwh")
            min_ac = DEFAULT_MIN_AC_KWH if min_ac is None else min_ac
            db = await self.pool()
            body: Any
            if len(parts) == 2 and parts[0] == "performance":
                body = await vehicle_performance(db, parts[1], window, min_ac_kwh=min_ac)
            elif parts == ["fleet"]:
                sort = query.get("sort", "efficiency")
                body = await fleet_report(
                    db, window, sort=sort, min_ac_kwh=min_ac,
                    with_chargers=query.get("chargers") == "true",
                )  # fmt: skip
            elif parts == ["chargers"]:
                body = await chargers(db, window)
            elif parts == ["anomalies"]:
                threshold = _float(query, "threshold")
                body = await anomalies(
                    db,
                    window,
                    threshold=0.85 if threshold is None else threshold,
                    min_ac_kwh=min_ac,
                )
            else:
                return json_response(404, {"error": "not found", "path": path})
        except UnknownDeviceError as exc:
            return json_response(404, {"error": str(exc)})
        except (AnalyticsError, ValueError) as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, body)

    async def alerts(self, path: str, _query: dict[str, str]) -> Response:
        """/v1/alerts."""
        if path.rstrip("/") != "/v1/alerts":
            return json_response(404, {"error": "not found", "path": path})
        return json_response(200, await list_alerts(await self.pool()))

    async def current(self, path: str, _query: dict[str, str]) -> Response:
        """/v1/current/{meters|vehicles}[/{id}] and /v1/current/all."""
        parts = [p for p in path.split("/") if p][2:]
        kinds: dict[str, CurrentKind] = {"meters": "meters", "vehicles": "vehicles", "all": "all"}
        if not parts or parts[0] not in kinds or len(parts) > (1 if parts[0] == "all" else 2):
            return json_response(404, {"error": "not found", "path": path})
        try:
            device = parts[1] if len(parts) == 2 else None
            body = await current(await self.pool(), kinds[parts[0]], device)
        except UnknownDeviceError as exc:
            return json_response(404, {"error": str(exc)})
        return json_response(200, body)

    async def assignments(self, path: str, query: dict[str, str]) -> Response:
        """GET /v1/assignments: every assignment, or one vehicle's (?vehicleId=), or the open
        ones (?open=true)."""
        if path.rstrip("/") != "/v1/assignments":
            return json_response(404, {"error": "not found", "path": path})
        db = await self.pool()
        vehicle = query.get("vehicleId")
        if vehicle:
            rows = await assignments(db, vehicle)
            if query.get("open") == "true":
                rows = [r for r in rows if r["validTo"] is None]
        else:
            rows = await all_assignments(db, open_only=query.get("open") == "true")
        return json_response(200, {"count": len(rows), "assignments": rows})

    async def import_assignments(self, path: str, _query: dict[str, str], body: bytes) -> Response:
        """POST /v1/assignments: a JSON list written in one transaction, all or nothing."""
        if path.rstrip("/") != "/v1/assignments":
            return json_response(404, {"error": "not found", "path": path})
        if not self._admin_url:
            off = "assignment writes are off: set FLEET_ADMIN_DATABASE_URL (a fleet_admin login)"
            return json_response(403, {"error": off})
        try:
            items = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return json_response(400, {"error": f"body is not JSON: {exc}"})
        try:
            periods = parse_json(items)
            if self._admin_pool is None:
                self._admin_pool = await create_pool(
                    self._admin_url, min_size=0, max_size=1, application_name="fleetctl-admin"
                )
            result = await import_periods(self._admin_pool, periods)
        except AnalyticsError as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, result)

    async def rejects(self, path: str, query: dict[str, str]) -> Response:
        """GET /v1/rejects: dead letters counted by field and rule, the newest payloads."""
        if path.rstrip("/") != "/v1/rejects":
            return json_response(404, {"error": "not found", "path": path})
        try:
            since_text = query.get("since")
            since = (
                parse_rfc3339(since_text, "since") if since_text
                else datetime.now(UTC) - timedelta(hours=24)
            )  # fmt: skip
            limit = int(query.get("limit") or 20)
            body = await rejects(
                await self.pool(), since=since, field=query.get("field"), limit=limit
            )
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, body)


def _float(query: dict[str, str], name: str) -> float | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
