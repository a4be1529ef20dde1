"""`fleetctl serve`: the analytics HTTP API as a process of its own, so building a report never
holds up ingest. Serves /v1 (see fleetctl.api.handlers), /metrics, the dashboard at / and a
public /healthz until SIGTERM or SIGINT.

/v1 and /metrics need `Authorization: Bearer <token>` when FLEET_API_TOKEN (or
FLEET_API_TOKEN_FILE) is set; without a token the API listens on loopback only and answers only
loopback Host names. FLEET_API_TLS_CERT and FLEET_API_TLS_KEY turn on HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from fleetctl.alerts.store import fleet_metrics
from fleetctl.api.dashboard import static_dir
from fleetctl.api.handlers import AnalyticsApi
from fleetctl.api.params import ApiLimits
from fleetctl.errors import AnalyticsError, UnknownDeviceError
from fleetctl.settings import ServeConfig
from fleetdb.connect import TRANSIENT_ERRORS
from fleetsvc.heap import settle_after_startup
from fleetsvc.settings_fields import ConfigError
from fleetsvc.web import Call, HttpServer, Route, json_body
from fleetsvc.web.server import BindError

log = structlog.get_logger("fleetctl.serve")

HEALTH_TIMEOUT_S = 5.0  # callers do not wait for it (but the first): it may take its time
HEALTH_CACHE_S = 1.0  # /healthz is public: at most one database round trip a second
MAX_BODY_BYTES = 16 << 20  # a POSTed body (100,000 assignments fit)
# The application's errors, by the most specific class: their text is fit to show.
ERROR_STATUSES: dict[type[Exception], int] = {UnknownDeviceError: 404, AnalyticsError: 400}


class HealthCache:
    """/healthz's verdict, asked of the database at most once per HEALTH_CACHE_S however many
    callers; the error text goes to the log, never to the (unauthenticated) caller.

    Past the second, callers keep getting the last verdict while one check runs beside them
    (only the very first callers wait for it): under 2,000 clients a check takes several turns
    of a busy event loop, and 2,000 callers parked on it and woken together cost a fifth of the
    CPU per request (145 -> 117 us under `wrk -c2000`). The verdict is kept as its encoded body,
    so a call costs no JSON encoding either."""

    def __init__(self, api: AnalyticsApi) -> None:
        self._api = api
        self._until = 0.0
        self._answer: tuple[int, bytes] | None = None
        self._check_task: asyncio.Task[None] | None = None

    async def answer(self) -> tuple[int, bytes]:
        """(status, JSON body), fresh within about the last second."""
        check = self._check_task
        if check is None and time.monotonic() >= self._until:
            check = self._check_task = asyncio.create_task(self._refresh(), name="health-check")
        if self._answer is None and check is not None:  # nothing to show yet: wait for it
            await asyncio.shield(check)
        if self._answer is None:
            raise RuntimeError("the health check ended without a verdict")
        return self._answer

    async def _refresh(self) -> None:
        try:
            status, body = await self._check()
            self._answer = status, json_body(body)
            self._until = time.monotonic() + HEALTH_CACHE_S
        finally:
            self._check_task = None

    async def _check(self) -> tuple[int, dict[str, object]]:
        try:
            await asyncio.wait_for(self._api.ping(), HEALTH_TIMEOUT_S)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError, TimeoutError) as exc:  # type: ignore[misc]
            log.warning("health_check_failed", error=f"{exc.__class__.__name__}: {exc}")
            return 503, {"status": "unhealthy", "reasons": ["database unreachable"]}
        except Exception:
            # Anything else is a verdict too: the check runs in a task nobody awaits once a
            # verdict exists, so an error escaping here would leave the last "ok" answered
            # forever (and an unretrieved task exception in the log).
            log.exception("health_check_error")
            return 503, {"status": "unhealthy", "reasons": ["health check failed"]}
        return 200, {"status": "ok"}


class ApiService:
    """The HTTP server and its database pool; `run()` until `request_stop()`."""

    def __init__(self, config: ServeConfig) -> None:
        self.api = AnalyticsApi(
            config.database_url,
            admin_url=config.admin_url,
            limits=ApiLimits(max_window_days=config.max_window_days),
        )
        self._health = HealthCache(self.api)
        page = static_dir() / "index.html"

        async def index(_call: Call) -> web.StreamResponse:
            return web.FileResponse(page, headers={"Content-Type": "text/html; charset=utf-8"})

        self.server = HttpServer(
            config.addr,
            (
                Route("GET", "/healthz", self._healthz, public=True, summary="serving and DB up"),
                # The page and its assets carry no data (the page asks /v1 with the token).
                Route("GET", "/", index, public=True, summary="the dashboard"),
                Route("GET", "/metrics", self._metrics, summary="fleet gauges (Prometheus)"),
                *self.api.routes(),
            ),
            name="fleetctl-serve",
            token=config.token,
            tls=config.tls,
            static={"/static": static_dir()},
            error_statuses=ERROR_STATUSES,
            max_body_bytes=MAX_BODY_BYTES,
        )
        self.server.on_close(self.api.close)
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop serving (safe to call from a signal handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until request_stop(); requests in progress get the server's short grace."""
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

    async def _metrics(self, _call: Call) -> web.StreamResponse:
        """The fleet gauges (fleetctl.alerts.store.fleet_metrics), behind the token like /v1."""
        body = await fleet_metrics(await self.api.pool())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _call: Call) -> web.StreamResponse:
        status, body = await self._health.answer()
        return web.Response(status=status, body=body, content_type="application/json")


async def serve(config: ServeConfig) -> int:
    """Run the API until SIGTERM/SIGINT; the exit code. An address it cannot listen on is a
    ConfigError (one line, exit 2, which the unit does not restart: a port taken stays taken)."""
    service = ApiService(config)
    settle_after_startup()  # after the imports and the app, before the first client
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    try:
        await service.run()
    except BindError as exc:
        raise ConfigError(
            f"FLEET_API_ADDR: {exc}: stop what listens there, or set FLEET_API_ADDR (or --addr) "
            "to a free host:port"
        ) from exc
    return 0
