"""HttpServer: aiohttp, embedded. `run()` serves the route table until cancelled, inside the
caller's TaskGroup or task, without touching signals; `port` and `started` tell a test where
it listens. Limits are enforced while reading: request line and each header field at most
8,190 bytes (aiohttp's parser), 64 headers, the whole head (request line and headers) at most
32 KiB, answered 431 and closed (listener.MAX_HEAD_BYTES: 64 headers of 8 KiB would be 512 KiB a
connection), a connection that has not sent a whole request within 5 s is closed (slowloris),
at most 2,500 connections at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from fleetsvc.web.access_log import access_logger, enabling_logger
from fleetsvc.web.listener import CappedSite, listen_socket
from fleetsvc.web.middleware import guard
from fleetsvc.web.routes import Route, add_routes
from fleetsvc.web.security import access_check, is_loopback

log = structlog.get_logger("fleet.http")

MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 64
IDLE_TIMEOUT_S = 5.0  # before the first request and between keep-alive requests
MAX_CONNECTIONS = 2500  # 2,000 clients and room for a scraper and health checks
MAX_BODY_BYTES = 1 << 20
SHUTDOWN_GRACE_S = 2.0  # requests in progress at shutdown get this long
DISABLED = ("", "off", "none", "disabled")


def parse_addr(addr: str) -> tuple[str, int] | None:
    """ "host:port" -> (host, port); None when the server is disabled ("" or "off")."""
    if addr.strip().lower() in DISABLED:
        return None
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be host:port or 'off', got {addr!r}")
    return host.strip("[]"), int(port)


def _quiet_logger() -> logging.Logger:
    # aiohttp logs every malformed request with a traceback at ERROR: under a flood of bad
    # requests that is thousands of lines a second. The 400 answer is enough; not a global.
    logger = logging.Logger("fleet.http.protocol")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


class HttpServer:
    """The routes of one process on one address. With a `token`, every route but the public
    ones needs `Authorization: Bearer <token>`; without one, only loopback Host names are
    answered when listening on loopback. With `tls`, HTTPS only. Each answered request is one
    `http_access` line at `access_log_level` (fleetsvc.web.access_log; None: none)."""

    def __init__(
        self,
        addr: str,
        routes: Collection[Route],
        *,
        name: str = "http",
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
        static: Mapping[str, Path] | None = None,
        error_statuses: Mapping[type[Exception], int] | None = None,
        max_connections: int = MAX_CONNECTIONS,
        max_body_bytes: int = MAX_BODY_BYTES,
        access_log_level: int | None = logging.INFO,
    ) -> None:
        self.addr = addr
        self.name = name
        self.routes = tuple(routes)
        self._token = token
        self._tls = tls
        self._static = dict(static or {})
        self._error_statuses = dict(error_statuses or {})
        self._max_connections = max_connections
        self._max_body_bytes = max_body_bytes
        self._access_log_level = access_log_level
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.port: int | None = None
        self.site: CappedSite | None = None
        self.started = asyncio.Event()

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` when the server stops (e.g. to close a route's connection pool)."""
        self._closers.append(closer)

    def app(self, host: str) -> web.Application:
        """The aiohttp application: routes, static directories and the one middleware (access,
        errors, headers)."""
        public: set[web.AbstractResource] = set()
        allowed: frozenset[str] | None = (
            None if self._token or not is_loopback(host) else frozenset()
        )
        access = access_check(allowed, self._token, public)
        app = web.Application(
            middlewares=[guard(self.name, self._error_statuses, access)],
            client_max_size=self._max_body_bytes,
        )
        public |= add_routes(app, self.routes)
        for prefix, directory in self._static.items():
            public.add(app.router.add_static(prefix, directory, follow_symlinks=False))
        return app

    async def run(self) -> None:
        """Serve until cancelled. An address it cannot listen on (a port in use) raises
        BindError at once: a service that cannot serve says so and exits, rather than look
        up to systemd while nobody can reach it."""
        bind = parse_addr(self.addr)
        if bind is None:
            return
        host, port = bind
        # What each connection's protocol gets (the runner keeps them for its own server too).
        handler_args: dict[str, Any] = {
            "access_log": None,
            "logger": _quiet_logger(),
            "keepalive_timeout": IDLE_TIMEOUT_S,
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_FIELD_BYTES,
            "max_headers": MAX_HEADERS,
        }
        if self._access_log_level is not None:
            handler_args["access_log"] = enabling_logger()
            handler_args["access_log_class"] = access_logger(
                self.name, self._access_log_level, token=self._token
            )
        runner = web.AppRunner(
            self.app(host),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE_S,
            **handler_args,
        )
        await runner.setup()
        try:
            sock = self._bind(host, port)
            self.site = CappedSite(
                runner,
                sock,
                max_connections=self._max_connections,
                handler_args=handler_args,
                ssl_context=self._tls,
            )
            await self.site.start()
            self.port = sock.getsockname()[1]
            log.info(
                "http_listening",
                server=self.name,
                host=host,
                port=self.port,
                tls=bool(self._tls),
                token_required=bool(self._token),
            )
            self.started.set()
            await asyncio.Future()  # until cancelled
        finally:
            self.started.clear()
            await runner.cleanup()
            for closer in self._closers:
                with contextlib.suppress(Exception):
                    await closer()

    def _bind(self, host: str, port: int) -> socket.socket:
        try:
            return listen_socket(host, port)
        except OSError as exc:
            raise BindError(f"cannot listen on {self.addr}: {exc.strerror or exc}") from exc


class BindError(OSError):
    """The server's address cannot be listened on (in use, not this host's, not allowed)."""
