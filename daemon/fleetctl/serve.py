"""`fleetctl serve`: the analytics HTTP API as a process of its own, so building a report never
holds up ingest. Serves /v1 (see fleetctl.api) and /healthz until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import asyncpg
import structlog

from fleetctl.api import AnalyticsApi
from fleetdb.connect import TRANSIENT_ERRORS
from fleetsvc.http import HttpServer, Response, json_response

log = structlog.get_logger("fleetctl.serve")

DEFAULT_API_ADDR = "127.0.0.1:9109"
# What fleetctl reads from the environment (fleetd's own settings are fleetd.settings.Settings).
ENVIRONMENT = ("FLEET_DATABASE_URL", "FLEET_ANALYTICS_DATABASE_URL", "FLEET_API_ADDR",
               "FLEET_LOG_FORMAT", "FLEET_LOG_LEVEL")  # fmt: skip
HEALTH_TIMEOUT_S = 2.0


class ApiService:
    """The HTTP server and its database pool; `run()` until `request_stop()`."""

    def __init__(self, addr: str, database_url: str) -> None:
        self.server = HttpServer(addr, name="fleetctl-serve")
        self.api = AnalyticsApi(database_url)
        self.api.install(self.server)
        self.server.add_route("/healthz", self._health)
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

    async def _health(self, path: str, _query: dict[str, str]) -> Response:
        if path != "/healthz":
            return json_response(404, {"error": "not found", "path": path})
        try:
            await asyncio.wait_for(self.api.ping(), HEALTH_TIMEOUT_S)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError, TimeoutError) as exc:  # type: ignore[misc]
            reason = f"database unreachable: {exc.__class__.__name__}: {exc}"
            return json_response(503, {"status": "unhealthy", "reasons": [reason]})
        return json_response(200, {"status": "ok"})


async def serve(addr: str, database_url: str) -> int:
    """Run the API until SIGTERM/SIGINT; the exit code."""
    service = ApiService(addr, database_url)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    await service.run()
    return 0
