"""HTTP ingest (FLEET_INGEST_HTTP_ADDR, off by default): `POST /v1/telemetry` and the seeds'
routes as aliases, on the shared server (fleetsvc.web), beside `/healthz` and `/openapi.json`.

Each item takes the MQTT path: decoded and validated by the same rules (fleetdb.ingest.messages),
into the same batcher, written in the same transactions; the answer is sent only once the
transactions holding every item committed, with each item's outcome (fleetd.ingest.tickets). A
request refused as a whole (401, 400, 413, 429, 503) stored nothing, so it can be retried; a retry
of one that was answered, or cut off by a crash, stores nothing twice (each reading's key is its
device and timestamp)."""

from __future__ import annotations

import logging
import math
import ssl
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fleetd.ingest.http_items import BodyError, Kind, decode_item, elements
from fleetd.ingest.tickets import Outcome, Ticket
from fleetd.ingest.tokens import Token, find_token, load_tokens
from fleetd.ops.http import health_response
from fleetdb.ingest.messages import MeterPayload, VehiclePayload
from fleetsvc.settings_fields import ConfigError
from fleetsvc.web import Call, HttpServer, Route, json_response
from fleetsvc.web.server import BindError
from fleetsvc.web.tls import TlsPairError, server_context

if TYPE_CHECKING:
    from fleetd.service import Daemon
    from fleetd.settings import Settings

PRIMARY = "/v1/telemetry"
# The seeds' routes: (path, the kind the route names, or None: each item says its own).
ALIASES: tuple[tuple[str, Kind | None], ...] = (
    ("/v1/telemetry/ingest", None),
    ("/api/v1/telemetry/meter", "meter"),
    ("/api/v1/telemetry/vehicle", "vehicle"),
    ("/api/v1/telemetry/meter/batch", "meter"),
    ("/api/v1/telemetry/vehicle/batch", "vehicle"),
    ("/v1/ingestion/telemetry", None),
    ("/v1/ingestion/meter", "meter"),
    ("/v1/ingestion/vehicle", "vehicle"),
    ("/v1/ingestion/batch", None),
)
RESPONSES = (200, 400, 401, 413, 429, 503)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """HTTPS with FLEET_INGEST_TLS_CERT/KEY, as `fleetctl serve` does with its own pair."""
    try:
        return server_context(settings.ingest_tls_cert, settings.ingest_tls_key)
    except TlsPairError as exc:
        raise ConfigError(f"FLEET_INGEST_TLS_CERT/KEY: {exc}") from None


class IngestHttpServer(HttpServer):
    """One daemon's HTTP ingest listener; `serve(daemon)` is a Daemon companion."""

    def __init__(self, daemon: Daemon, tokens: list[Token] | None = None) -> None:
        settings = daemon.settings
        self._daemon = daemon
        if tokens is None:
            assert settings.ingest_tokens_file is not None  # Settings requires it
            tokens = load_tokens(settings.ingest_tokens_file)
        self._tokens = tokens
        routes = [self._route(PRIMARY, None, "readings in: one, an array, or the seeds' shapes")]
        routes += [self._route(path, kind, f"alias of {PRIMARY}") for path, kind in ALIASES]
        routes += [
            Route("GET", "/healthz", self._health, public=True, summary="healthy: 200, else 503"),
            Route("GET", "/openapi.json", self._openapi, public=True, summary="this document"),
        ]
        super().__init__(
            settings.ingest_http_addr,
            routes,
            name="fleetd-ingest",
            tls=tls_context(settings),
            max_body_bytes=settings.ingest_max_body_bytes,
            # One line per request at debug: at info, gateways posting every second would drown
            # the ingest summary. The Authorization header is never logged.
            access_log_level=logging.DEBUG,
        )

    async def serve(self, _daemon: Daemon) -> None:
        """The companion entry point (Daemon companions take the daemon)."""
        try:
            await self.run()
        except BindError as exc:
            # Named by its own variable (the ops listener's BindError names FLEET_HTTP_ADDR).
            raise ConfigError(f"FLEET_INGEST_HTTP_ADDR: {exc}") from None

    def _route(self, path: str, kind: Kind | None, summary: str) -> Route:
        async def handler(call: Call) -> web.StreamResponse:
            return await self._ingest(call.request, kind)

        # public: the server's single-token check is not ours; every request is checked
        # against the tokens file in _ingest.
        return Route("POST", path, handler, public=True, summary=summary, responses=RESPONSES)

    async def _ingest(self, request: web.Request, kind: Kind | None) -> web.StreamResponse:
        daemon, settings = self._daemon, self._daemon.settings
        if daemon.stopping:
            return _refuse(503, "shutting down: retry on another fleetd or later", retry_s=5)
        token = find_token(self._tokens, request.headers.get("Authorization"))
        if token is None:
            return json_response(
                401,
                {"error": "a valid bearer token is required (Authorization: Bearer <token>)"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        limit = settings.ingest_max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _refuse(413, f"body of {request.content_length} bytes exceeds {limit}")
        body = await request.read()  # aiohttp refuses past client_max_size with a 413 too
        try:
            items = elements(body)
        except BodyError as exc:
            return json_response(400, {"error": str(exc)})
        if not items:
            return json_response(400, {"error": "body: no readings"})
        if len(items) > settings.ingest_max_items:
            message = (
                f"{len(items)} readings exceed FLEET_INGEST_MAX_ITEMS ({settings.ingest_max_items})"
            )
            return _refuse(413, message)
        if not daemon.flusher.healthy:
            return _refuse(503, "the database is not reachable: nothing was stored", retry_s=5)
        waiting = len(daemon.batcher) + daemon.in_flight
        if waiting + len(items) > settings.max_buffered_rows:
            return _refuse(429, f"busy: {waiting} readings wait for the database", retry_s=1)
        wait_s = token.take(len(items), settings.ingest_rate_per_token)
        if wait_s:
            return _refuse(429, "this token's rate of readings is used up", retry_s=wait_s)
        return json_response(200, await self._store(items, kind, token))

    async def _store(self, items: list[Any], kind: Kind | None, token: Token) -> dict[str, Any]:
        settings = self._daemon.settings
        intake = self._daemon.intake
        now, mono = datetime.now(UTC), time.monotonic()
        future, past = (
            timedelta(seconds=settings.max_future_s),
            timedelta(days=settings.max_past_days),
        )
        ticket = Ticket(len(items))
        for index, element in enumerate(items):
            device, item = decode_item(element, kind, now, max_future=future, max_past=past)
            if device and not token.allows(device):
                reason = f"device {device!r} is not one this token may write"
                ticket.settle(index, Outcome("forbidden", reason))
                continue
            intake.on_item(item, now, mono, ticket, index)
        outcomes = await ticket.wait()
        counts = dict.fromkeys(("stored", "duplicate", "conflict", "rejected", "forbidden"), 0)
        for outcome in outcomes:
            counts[outcome.status] += 1
        results = [
            {"index": i, "status": o.status} | ({"reason": o.reason} if o.reason else {})
            for i, o in enumerate(outcomes)
        ]
        return counts | {"items": results}

    async def _health(self, _call: Call) -> web.StreamResponse:
        return json_response(*health_response(self._daemon))

    async def _openapi(self, _call: Call) -> web.StreamResponse:
        return json_response(200, openapi_document(self.routes))


def _refuse(status: int, message: str, *, retry_s: float | None = None) -> web.Response:
    headers = {} if retry_s is None else {"Retry-After": str(max(1, math.ceil(retry_s)))}
    return json_response(status, {"error": message}, headers=headers)


_ANSWERS = {
    200: "every item committed or refused: the counts and each item's outcome",
    400: "the body is not JSON or not one of the shapes: nothing stored",
    401: "no valid bearer token",
    413: "the body or the number of readings is over the limit: nothing stored",
    429: "busy or over this token's rate: nothing stored, retry after Retry-After seconds",
    503: "the database is not reachable or fleetd is stopping: nothing stored",
}


def openapi_document(routes: tuple[Route, ...]) -> dict[str, Any]:
    """fleetd's OpenAPI 3.1 document: the ingest routes, /healthz and itself."""
    meter = MeterPayload.model_json_schema()
    vehicle = VehiclePayload.model_json_schema()
    reading = {
        "oneOf": [{"$ref": "#/components/schemas/Meter"}, {"$ref": "#/components/schemas/Vehicle"}]
    }
    typed = {
        "type": "object",
        "required": ["type", "payload"],
        "properties": {"type": {"enum": ["METER", "VEHICLE"]}, "payload": reading},
    }
    item = {"oneOf": [reading, typed]}
    body = {
        "oneOf": [
            item,
            {"type": "array", "items": item},
            {
                "type": "object",
                "required": ["data"],
                "properties": {"data": {"type": "array", "items": item}},
            },
        ]
    }
    outcome = {
        "type": "object",
        "required": ["index", "status"],
        "properties": {
            "index": {"type": "integer"},
            "status": {"enum": ["stored", "duplicate", "conflict", "rejected", "forbidden"]},
            "reason": {"type": "string"},
        },
    }
    counts = {
        s: {"type": "integer"} for s in ("stored", "duplicate", "conflict", "rejected", "forbidden")
    }
    result = {
        "type": "object",
        "properties": counts | {"items": {"type": "array", "items": outcome}},
    }
    error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    paths: dict[str, Any] = {}
    for route in routes:
        responses: dict[str, Any] = {}
        for status in route.responses:
            schema = result if status == 200 and route.method == "POST" else error
            if route.method == "GET":
                schema = {"type": "object"}
            description = _ANSWERS.get(status, "OK") if route.method == "POST" else "OK"
            responses[str(status)] = {
                "description": description,
                "content": {"application/json": {"schema": schema}},
            }
        op: dict[str, Any] = {"summary": route.summary, "responses": responses}
        if route.method == "POST":
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
            op["security"] = [{"bearer": []}]
        paths[route.path] = {route.method.lower(): op}
    return {
        "openapi": "3.1.0",
        "info": {"title": "fleetd ingest", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Meter": meter, "Vehicle": vehicle},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
