"""The ops HTTP server: /healthz, /readyz, /metrics, plus routes plugged in with add_route().

A deliberately tiny HTTP/1.1 server on asyncio.start_server (GET and HEAD, one request per
connection, `Connection: close`): it serves a health checker and a Prometheus scraper, so a
framework would be more code to trust than this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fleetd.ops.health import check

if TYPE_CHECKING:
    from fleetd.service import Daemon

log = structlog.get_logger("fleetd.http")

Handler = Callable[["Daemon", str, dict[str, str]], Awaitable[tuple[int, object]]]

MAX_REQUEST_BYTES = 8192  # request line + headers; we take no bodies
READ_TIMEOUT_S = 5.0  # a client that sends nothing must not hold a connection open
BIND_RETRY_S = 5.0
DISABLED = ("", "off", "none", "disabled")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def parse_addr(addr: str) -> tuple[str, int] | None:
    """ "host:port" -> (host, port); None when the server is disabled ("" or "off")."""
    if addr.strip().lower() in DISABLED:
        return None
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"http_addr must be host:port or 'off', got {addr!r}")
    return host.strip("[]"), int(port)


class OpsHttpServer:
    """One daemon's ops endpoint. `run(daemon)` is a Daemon companion; `port` holds the bound
    port (useful with port 0) once `started` is set."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.port: int | None = None
        self.started = asyncio.Event()
        self._daemon: Daemon | None = None
        # Extra JSON routes by path prefix (the longest match wins); the built-in routes
        # (/healthz, /readyz, /metrics) always come first.
        self.routes: dict[str, Handler] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def add_route(self, prefix: str, handler: Handler) -> None:
        """Serve every GET path starting with `prefix` with `handler(daemon, path, query)`,
        which returns (status, JSON-serialisable body)."""
        if not prefix.startswith("/"):
            raise ValueError(f"route prefix must start with '/': {prefix!r}")
        self.routes[prefix] = handler

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` when the server stops (e.g. to close a route's connection pool)."""
        self._closers.append(closer)

    async def run(self, daemon: Daemon) -> None:
        """Serve until cancelled. A port already in use is logged and retried instead of taking
        ingestion down with it."""
        bind = parse_addr(self.addr)
        if bind is None:
            return
        self._daemon = daemon
        host, port = bind
        while True:
            try:
                server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
                break
            except OSError as exc:
                log.error("http_bind_failed", addr=self.addr, error=str(exc))  # noqa: TRY400
                await asyncio.sleep(BIND_RETRY_S)
        self.port = server.sockets[0].getsockname()[1]
        log.info("http_listening", host=host, port=self.port)
        self.started.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.started.clear()
            for closer in self._closers:
                with contextlib.suppress(Exception):
                    await closer()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body, head_only = await self._respond(reader)
            reason = _REASONS.get(status, "Unknown")
            headers = (
                f"HTTP/1.1 {status} {reason}\r\n"
                f"Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(headers.encode("latin-1") + (b"" if head_only else body))
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return (*_json(431, {"error": "request too large"}), False)
        except asyncio.IncompleteReadError:
            return (*_json(400, {"error": "incomplete request"}), False)
        except TimeoutError:
            return (*_json(408, {"error": "timeout"}), False)
        if len(raw) > MAX_REQUEST_BYTES:
            return (*_json(431, {"error": "request too large"}), False)
        parts = raw.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return (*_json(400, {"error": "malformed request line"}), False)
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return (*_json(405, {"error": f"method {method} not allowed"}), False)
        url = urlsplit(target)
        path = unquote(url.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        status, ctype, body = await self.dispatch(path, query)
        return status, ctype, body, method == "HEAD"

    async def dispatch(self, path: str, query: dict[str, str]) -> tuple[int, str, bytes]:
        """Route one GET: (status, content type, body)."""
        daemon = self._daemon
        assert daemon is not None
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(daemon.metrics.registry)
        if path in ("/healthz", "/readyz"):
            return _json(*health_response(daemon, ready=path == "/readyz"))
        for prefix in sorted(self.routes, key=len, reverse=True):
            if path.startswith(prefix):
                try:
                    return _json(*await self.routes[prefix](daemon, path, query))
                except Exception as exc:
                    log.exception("http_handler_failed", path=path)
                    return _json(500, {"error": f"{exc.__class__.__name__}: {exc}"})
        return _json(404, {"error": "not found", "path": path})


def health_response(daemon: Daemon, *, ready: bool = False) -> tuple[int, dict[str, object]]:
    """(status, body) of /healthz, or of /readyz when `ready` (also needs subscribed and not
    shutting down, so a load balancer stops sending before we stop serving)."""
    health = check(daemon)
    reasons = list(health.reasons)
    if ready:
        if not daemon.ready.is_set():
            reasons.insert(0, "not subscribed yet")
        if daemon.stopping:
            reasons.insert(0, "shutting down")
    if reasons:
        return 503, {"status": "unhealthy", "reasons": reasons, **health.details}
    return 200, {"status": "ok", **health.details}


def _json(status: int, body: object) -> tuple[int, str, bytes]:
    data = json.dumps(body, default=str, separators=(",", ":")).encode() + b"\n"
    return status, "application/json", data
