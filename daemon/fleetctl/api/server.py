"""`fleetctl serve`: the analytics HTTP API as a process of its own, so building a report never
holds up ingest. Serves /v1 (see fleetctl.api.handlers) and /healthz until SIGTERM or SIGINT.

/v1 needs `Authorization: Bearer <token>` when FLEET_API_TOKEN (or FLEET_API_TOKEN_FILE) is set;
without a token the API listens on loopback only. FLEET_API_TLS_CERT and FLEET_API_TLS_KEY turn
on HTTPS. /healthz stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import asyncpg
import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from fleetctl.alerts.store import fleet_metrics
from fleetctl.api import dashboard
from fleetctl.api.handlers import AnalyticsApi
from fleetctl.settings import ServeConfig
from fleetdb.connect import TRANSIENT_ERRORS
from fleetsvc.http import HttpServer, Response, json_response

log = structlog.get_logger("fleetctl.serve")

# The dashboard page and its assets carry no data (the page asks /v1 with the token).
PUBLIC = ("/healthz", "/", "/static/")

HEALTH_TIMEOUT_S = 2.0


class ApiService:
    """The HTTP server and its database pool; `run()` until `request_stop()`."""

    def __init__(self, config: ServeConfig) -> None:
        self.server = HttpServer(
            config.addr, name="fleetctl-serve", token=config.token, public=PUBLIC, tls=config.tls
        )
        self.api = AnalyticsApi(config.database_url, admin_url=config.admin_url)
        self.api.install(self.server)
        self.server.add_route("/healthz", self._health)
        self.server.add_route("/metrics", self._metrics)
        self.server.add_route("/", self._page)
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop serving (safe to call from a signal handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until request_stop(); requests in progress are cut when it returns."""
        http = asyncio.create_task(self.server.run(), name="http")
        stop = asyncio.create_task(self._stop.wait(), name="stop")
        try:
            await asyncio.wait([http, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (http, stop):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        log.info("stopped")

    async def _page(self, path: str, _query: dict[str, str]) -> Response:
        """The dashboard (fleetctl.api.dashboard): / and /static/..., everything else 404."""
        found = dashboard.asset("index.html" if path == "/" else path.removeprefix("/static/"))
        if found is None or (path != "/" and not path.startswith("/static/")):
            return json_response(404, {"error": "not found", "path": path})
        return 200, *found

    async def _metrics(self, path: str, _query: dict[str, str]) -> Response:
        """The fleet gauges (fleetctl.alerts.fleet_metrics), behind the token like /v1."""
        if path != "/metrics":
            return json_response(404, {"error": "not found", "path": path})
        return 200, CONTENT_TYPE_LATEST, await fleet_metrics(await self.api.pool())

    async def _health(self, path: str, _query: dict[str, str]) -> Response:
        if path != "/healthz":
            return json_response(404, {"error": "not found", "path": path})
        try:
            await asyncio.wait_for(self.api.ping(), HEALTH_TIMEOUT_S)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError, TimeoutError) as exc:  # type: ignore[misc]
            reason = f"database unreachable: {exc.__class__.__name__}: {exc}"
            return json_response(503, {"status": "unhealthy", "reasons": [reason]})
        return json_response(200, {"status": "ok"})


async def serve(config: ServeConfig) -> int:
    """Run the API until SIGTERM/SIGINT; the exit code."""
    service = ApiService(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    await service.run()
    return 0
