"""HTTP/1.1 on asyncio.start_server: GET and HEAD, one request per connection, `Connection:
close`. It serves health checks, a Prometheus scraper and read-only JSON, so a framework would be
more code to trust than this. Routes are path prefixes; the longest match wins."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import structlog

log = structlog.get_logger("fleet.http")

Response = tuple[int, str, bytes]
"""(status, content type, body)."""
Handler = Callable[[str, dict[str, str]], Awaitable[Response]]
"""handler(path, query) -> Response."""
PostHandler = Callable[[str, dict[str, str], bytes], Awaitable[Response]]
"""handler(path, query, body) -> Response."""

MAX_REQUEST_BYTES = 8192  # request line + headers
MAX_BODY_BYTES = 16 << 20  # a POSTed body (100,000 assignments fit)
READ_TIMEOUT_S = 5.0  # a client that sends nothing must not hold a connection open
BIND_RETRY_S = 5.0
DISABLED = ("", "off", "none", "disabled")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
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
        raise ValueError(f"address must be host:port or 'off', got {addr!r}")
    return host.strip("[]"), int(port)


def _header(lines: list[str], name: str) -> str | None:
    """The value of header `name` (lower case), or None."""
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def json_response(status: int, body: object) -> Response:
    """A JSON answer (one line, newline-terminated)."""
    data = json.dumps(body, default=str, separators=(",", ":")).encode() + b"\n"
    return status, "application/json", data


class HttpServer:
    """`run()` serves until cancelled; `port` holds the bound port (useful with port 0) once
    `started` is set.

    With a `token`, every route but the `public` ones needs `Authorization: Bearer <token>`
    (compared in constant time; 401 with WWW-Authenticate otherwise). With `tls`, the listener
    speaks HTTPS only."""

    def __init__(
        self,
        addr: str,
        *,
        name: str = "http",
        token: str | None = None,
        public: tuple[str, ...] = (),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.addr = addr
        self.name = name
        self._token = token.encode() if token else None
        self._public = public
        self._tls = tls
        self.port: int | None = None
        self.started = asyncio.Event()
        self.routes: dict[str, Handler] = {}
        self.post_routes: dict[str, PostHandler] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def add_route(self, prefix: str, handler: Handler) -> None:
        """Serve every GET path starting with `prefix` with `handler(path, query)`."""
        if not prefix.startswith("/"):
            raise ValueError(f"route prefix must start with '/': {prefix!r}")
        self.routes[prefix] = handler

    def add_post_route(self, prefix: str, handler: PostHandler) -> None:
        """Serve every POST path starting with `prefix` with `handler(path, query, body)`."""
        if not prefix.startswith("/"):
            raise ValueError(f"route prefix must start with '/': {prefix!r}")
        self.post_routes[prefix] = handler

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` when the server stops (e.g. to close a route's connection pool)."""
        self._closers.append(closer)

    async def run(self) -> None:
        """Serve until cancelled. A port already in use is logged and retried, so the process
        it belongs to keeps doing its main job."""
        bind = parse_addr(self.addr)
        if bind is None:
            return
        host, port = bind
        while True:
            try:
                server = await asyncio.start_server(
                    self._handle, host, port, reuse_address=True, ssl=self._tls
                )
                break
            except OSError as exc:
                log.error("http_bind_failed", server=self.name, addr=self.addr, error=str(exc))  # noqa: TRY400
                await asyncio.sleep(BIND_RETRY_S)
        self.port = server.sockets[0].getsockname()[1]
        log.info(
            "http_listening", server=self.name, host=host, port=self.port, tls=bool(self._tls),
            token_required=bool(self._token),
        )  # fmt: skip
        self.started.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.started.clear()
            for closer in self._closers:
                with contextlib.suppress(Exception):
                    await closer()

    def _authorized(self, path: str, header_lines: list[str]) -> bool:
        if self._token is None or path in self._public:
            return True
        # "/" is public as itself only: as a prefix it would make the token pointless.
        if any(p != "/" and path.startswith(p) for p in self._public):
            return True
        value = _header(header_lines, "authorization")
        if value is None:
            return False
        scheme, _, credentials = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("latin-1"), self._token
        )

    async def dispatch(self, path: str, query: dict[str, str]) -> Response:
        """Route one GET to the longest matching prefix; a failing handler answers 500."""
        for prefix in sorted(self.routes, key=len, reverse=True):
            if path.startswith(prefix):
                try:
                    return await self.routes[prefix](path, query)
                except Exception as exc:
                    log.exception("http_handler_failed", server=self.name, path=path)
                    return json_response(500, {"error": f"{exc.__class__.__name__}: {exc}"})
        return json_response(404, {"error": "not found", "path": path})

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body, head_only = await self._respond(reader)
            reason = _REASONS.get(status, "Unknown")
            challenge = (
                'WWW-Authenticate: Bearer realm="fleet-telemetry"\r\n' if status == 401 else ""
            )
            headers = (
                f"HTTP/1.1 {status} {reason}\r\n"
                f"{challenge}"
                f"Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(headers.encode("latin-1") + (b"" if head_only else body))
            await writer.drain()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return (*json_response(431, {"error": "request too large"}), False)
        except asyncio.IncompleteReadError:
            return (*json_response(400, {"error": "incomplete request"}), False)
        except TimeoutError:
            return (*json_response(408, {"error": "timeout"}), False)
        if len(raw) > MAX_REQUEST_BYTES:
            return (*json_response(431, {"error": "request too large"}), False)
        request_line, *header_lines = raw.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return (*json_response(400, {"error": "malformed request line"}), False)
        method, target, _ = parts
        if method not in ("GET", "HEAD", "POST"):
            return (*json_response(405, {"error": f"method {method} not allowed"}), False)
        url = urlsplit(target)
        path = unquote(url.path)
        if not self._authorized(path, header_lines):
            error = "missing or wrong bearer token (Authorization: Bearer <FLEET_API_TOKEN>)"
            return (*json_response(401, {"error": error}), method == "HEAD")
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if method == "POST":
            return (*await self._post(reader, path, query, header_lines), False)
        status, ctype, body = await self.dispatch(path, query)
        return status, ctype, body, method == "HEAD"

    async def _post(
        self,
        reader: asyncio.StreamReader,
        path: str,
        query: dict[str, str],
        header_lines: list[str],
    ) -> Response:
        prefix = next((p for p in sorted(self.post_routes, key=len, reverse=True)
                       if path.startswith(p)), None)  # fmt: skip
        if prefix is None:
            return json_response(405, {"error": f"POST not allowed on {path}"})
        length = _header(header_lines, "content-length")
        if length is None or not length.isdigit():
            return json_response(411, {"error": "POST needs a Content-Length"})
        if int(length) > MAX_BODY_BYTES:
            return json_response(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
        try:
            body = await asyncio.wait_for(reader.readexactly(int(length)), READ_TIMEOUT_S * 6)
        except (asyncio.IncompleteReadError, TimeoutError):
            return json_response(400, {"error": "incomplete body"})
        try:
            return await self.post_routes[prefix](path, query, body)
        except Exception as exc:
            log.exception("http_handler_failed", server=self.name, path=path)
            return json_response(500, {"error": f"{exc.__class__.__name__}: {exc}"})
