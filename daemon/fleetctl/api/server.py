"""`fleetctl serve`: the analytics HTTP API as a process of its own, so building a report never
holds up ingest. Serves /v1 (see fleetctl.api.handlers) and /healthz until SIGTERM or SIGINT.

/v1 needs `Authorization: Bearer <token>` when FLEET_API_TOKEN (or FLEET_API_TOKEN_FILE) is set;
without a token the API listens on loopback only. FLEET_API_TLS_CERT and FLEET_API_TLS_KEY turn
on HTTPS. /healthz stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from fleetctl.alerts.evaluation import fleet_metrics
from fleetctl.api import dashboard
from fleetctl.api.handlers import AnalyticsApi
from fleetdb.connect import TRANSIENT_ERRORS
from fleetsvc.http import HttpServer, Response, json_response, parse_addr

log = structlog.get_logger("fleetctl.serve")

DEFAULT_API_ADDR = "127.0.0.1:9109"
# What fleetctl reads from the environment (fleetd's own settings are fleetd.settings.Settings).
ENVIRONMENT = ("FLEET_DATABASE_URL", "FLEET_ANALYTICS_DATABASE_URL", "FLEET_ADMIN_DATABASE_URL",
               "FLEET_API_ADDR",
               "FLEET_API_TOKEN", "FLEET_API_TOKEN_FILE", "FLEET_API_TLS_CERT",
               "FLEET_API_TLS_KEY", "FLEET_LOG_FORMAT", "FLEET_LOG_LEVEL")  # fmt: skip
# The dashboard page and its assets carry no data (the page asks /v1 with the token).
PUBLIC = ("/healthz", "/", "/static/")


class ServeConfigError(Exception):
    """A bad or missing setting of `fleetctl serve`; the message names it in one line."""


@dataclass(frozen=True)
class ServeConfig:
    """Where to listen, what to read, and how callers prove who they are."""

    addr: str
    database_url: str
    token: str | None
    tls: ssl.SSLContext | None
    admin_url: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"ServeConfig(addr={self.addr!r}, token={'set' if self.token else None})"

    @classmethod
    def load(cls, env: Mapping[str, str], *, addr: str | None, database_url: str) -> ServeConfig:
        """From the environment (FLEET_API_*); raises ServeConfigError."""
        addr = addr or env.get("FLEET_API_ADDR") or DEFAULT_API_ADDR
        try:
            bind = parse_addr(addr)
        except ValueError as exc:
            raise ServeConfigError(f"FLEET_API_ADDR: {exc}") from exc
        if bind is None:
            raise ServeConfigError("FLEET_API_ADDR: fleetctl serve needs an address to listen on")
        token = _token(env)
        if token is None and not _loopback(bind[0]):
            raise ServeConfigError(
                f"FLEET_API_ADDR {addr} is not loopback: set FLEET_API_TOKEN (or "
                "FLEET_API_TOKEN_FILE) so /v1 asks for it, or listen on 127.0.0.1"
            )
        return cls(addr, database_url, token, _tls(env), env.get("FLEET_ADMIN_DATABASE_URL"))


def _token(env: Mapping[str, str]) -> str | None:
    path = env.get("FLEET_API_TOKEN_FILE")
    if path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ServeConfigError(f"FLEET_API_TOKEN_FILE {path}: {exc.strerror}") from exc
        if not token:
            raise ServeConfigError(f"FLEET_API_TOKEN_FILE {path} is empty")
        return token
    token = env.get("FLEET_API_TOKEN", "").strip()
    if env.get("FLEET_API_TOKEN") is not None and not token:
        raise ServeConfigError("FLEET_API_TOKEN is set but empty")
    if token and len(token) < 16:
        raise ServeConfigError("FLEET_API_TOKEN must be at least 16 characters")
    return token or None


def _tls(env: Mapping[str, str]) -> ssl.SSLContext | None:
    cert, key = env.get("FLEET_API_TLS_CERT"), env.get("FLEET_API_TLS_KEY")
    if not cert and not key:
        return None
    if not cert or not key:
        raise ServeConfigError("FLEET_API_TLS_CERT and FLEET_API_TLS_KEY go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ServeConfigError(f"FLEET_API_TLS_CERT/KEY: {exc}") from exc
    return ctx


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
