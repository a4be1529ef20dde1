"""The listening socket and its guard: a backlog sized for thousands of clients arriving at
once, small receive buffers, a cap on open connections past which a newcomer gets a `503` and
is closed before anything of it is read, and a cap on the bytes of each request head.

Why small receive buffers: asyncio reads up to 256 KiB per recv, and a connection whose header
never ends keeps its last read alive until the server has answered it 400. 2,000 such
connections held 420-990 MiB in plain aiohttp with the kernel's default buffers; with ours 3,000
held 390 MiB at 16 KiB and 166 MiB at 4 KiB, at the same request rate
(`python -m fleetsim.bench.http_probe --connections 3000 fleetsvc`). The API's bodies are
small; an 8 KiB window still moves a 16 MiB assignments import in about a second on a LAN.

Why a cap on the whole head: aiohttp bounds each header line (8,190 bytes) and their number
(64), not their total, and keeps each header of an unfinished head twice (bytes and str). 3,000
connections sending 60 headers of 8,000 bytes and never the end of the head took
`fleetctl serve` to 1,712 MB; with the cap (and a refused connection let go at once, below),
319 MB (`python -m fleetsim.bench.http_stage`, its last line). aiohttp 3.14 has no setting for
the total, so `_HeadCap` counts it as the parser is fed."""

from __future__ import annotations

import asyncio
import socket
import ssl
import weakref
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    HttpProcessingError,
    LineTooLong,
)
from aiohttp.http_parser import HttpParser
from aiohttp.streams import StreamReader

from fleetsvc.web.security import HEADERS

BACKLOG = 4096  # the kernel caps it at net.core.somaxconn (4096 on current kernels)
RECEIVE_BUFFER_BYTES = 4 * 1024  # the kernel doubles it for its own bookkeeping
MAX_HEAD_BYTES = 32 * 1024  # request line and headers; nginx's default allows 4 x 8 KiB
_BUSY = b'{"error":"too many connections"}\n'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY)
)


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket for `host`:`port`."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: it bounds what one recv can bring in.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _Busy(asyncio.Protocol):
    """A connection over the cap: answered 503 at once and closed, nothing read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(BUSY_RESPONSE)
        transport.close()


class HeadTooLarge(BadHttpMessage):
    """A request head (request line and headers) past `limit` bytes: answered 431."""

    code = 431

    def __init__(self, limit: int) -> None:
        super().__init__(f"request head over {limit} bytes")
        self.limit = limit


_NOTHING: tuple[tuple[()], bool, bytes] = ((), False, b"")  # what the parser gives for no message


class _HeadCap:
    """aiohttp's request parser, fed through a count of the bytes of the head in progress:
    past `limit` it raises HeadTooLarge (which aiohttp answers through `handle_error`). After
    that or any other error of the parser it swallows whatever the client sends, so nothing
    more of it is parsed or held while the answer is written and the connection closed.

    Counted: bytes fed while no request body is being received, from the end of the last
    head. A read that completes a head is not counted, nor what it holds after the head, so
    a head may pass the limit by up to one read (a few KiB with our receive buffers); the
    parser holds a refused head's headers until the 431 is written and the connection closed."""

    __slots__ = ("_body", "_count", "_limit", "_parser", "_refused", "message_consumed")

    def __init__(self, parser: Any, limit: int) -> None:
        self._parser = parser
        self.message_consumed = parser.message_consumed  # once a request: not via __getattr__
        self._limit = limit
        self._count = 0
        self._body: StreamReader | None = None  # of the last request whose head was parsed
        self._refused = False

    def feed_data(self, data: bytes) -> tuple[Any, bool, bytes]:
        """The parser's feed_data, counted."""
        if self._refused:
            return _NOTHING
        body = self._body
        in_head = body is None or body.is_eof()
        try:
            found: tuple[Any, bool, bytes] = self._parser.feed_data(data)
        except HttpProcessingError:
            # aiohttp answers the first error and closes; fed on, the parser would queue one
            # more error, holding its read, for every read until the answer is written
            self._refused = True
            raise
        messages = found[0]
        if messages:
            self._count = 0
            self._body = messages[-1][1]
        elif in_head:
            self._count += len(data)
            if self._count > self._limit:
                self._refused = True
                raise HeadTooLarge(self._limit)
        return found

    def __getattr__(self, name: str) -> Any:
        # the parser's other methods (pause_reading, feed_eof, ...), unchanged
        return getattr(self._parser, name)


class _Handler(web.RequestHandler):
    """aiohttp's protocol with a cap on the bytes of each request head (MAX_HEAD_BYTES), whose
    own refusals (a request it cannot parse) answer one JSON line naming the problem instead
    of a text that echoes the client's bytes back."""

    def __init__(
        self,
        *args: Any,
        max_head_bytes: int = MAX_HEAD_BYTES,
        pending: weakref.WeakSet[_Handler] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # duck-typed: the protocol only calls the parser's methods
        self._parser = cast("HttpParser[Any]", _HeadCap(self._parser, max_head_bytes))
        self._pending = pending

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """aiohttp's, and this connection now counts in the server's connections instead of
        the site's pending ones (CappedSite)."""
        if self._pending is not None:
            self._pending.discard(self)
            self._pending = None
        super().connection_made(transport)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request aiohttp refused before any route saw it; closes after."""
        del message  # aiohttp's text quotes the client's bytes
        if isinstance(exc, HttpProcessingError):
            # Its traceback holds aiohttp's data_received frame, whose locals hold this
            # exception: a cycle that kept each refused connection (its parser, its last read)
            # until a full collection, which fleetsvc.heap spaces far apart.
            exc.__traceback__ = None
        if request.writer.output_size > 0:  # as aiohttp: an answer is already on its way
            raise ConnectionError("response already started; cannot send the error")
        if isinstance(exc, HeadTooLarge):  # aiohttp passes every parser error as a 400
            status = HeadTooLarge.code
            error = f"request head too large ({exc.limit:,} bytes at most)"
        elif status != 400:
            error = "internal error" if status >= 500 else "request refused"
        elif isinstance(exc, LineTooLong):
            error = "request line or header too long (8,190 bytes at most)"
        elif isinstance(exc, BadHttpMethod):
            error = "not an HTTP request"
        else:
            error = "malformed HTTP request"
        body = b'{"error":"%s"}\n' % error.encode()
        response = web.Response(
            status=status, body=body, content_type="application/json", headers=HEADERS
        )
        response.force_close()
        return response


class CappedSite(web.BaseSite):
    """An aiohttp site on our socket that keeps at most `max_connections` open (the way Home
    Assistant's own site subclasses BaseSite to choose how it listens)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        max_connections: int,
        handler_args: dict[str, Any],
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._sock = sock
        self._max_connections = max_connections
        self._handler_args = handler_args
        self.refused = 0

    @property
    def name(self) -> str:
        """The URL served."""
        host, port = self._sock.getsockname()[:2]
        return f"{'https' if self._ssl_context else 'http'}://{host}:{port}"

    async def start(self) -> None:
        """Listen; each connection gets aiohttp's protocol, or the 503 when at the cap."""
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        # A burst of accepts creates its protocols in one pass of the loop, before any of them
        # is connection_made and counted in server.connections: without the protocols made
        # but not yet connected, a burst of 3,000 opened ~2,800 against a cap of 2,500. The
        # pending ones are forgotten at the next pass, ahead of their connection_made (both
        # are scheduled then, the clear first): a TLS connection is connection_made only after
        # its handshake, and never if that fails, so keeping it counted until then would let
        # failed handshakes (a scanner, plain HTTP on the HTTPS port) lock every client out.
        pending: weakref.WeakSet[_Handler] = weakref.WeakSet()

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) + len(pending) >= self._max_connections:
                self.refused += 1
                return _Busy()
            handler = _Handler(server, loop=loop, pending=pending, **self._handler_args)
            if not pending:
                loop.call_soon(pending.clear)
            pending.add(handler)
            return handler

        self._server = await loop.create_server(
            protocol, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
        )
