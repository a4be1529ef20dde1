"""The server's one middleware: who may ask (security.access_check), the route, the one
error mapping (errors.error_response) and the headers every answer carries
(security.add_headers). One coroutine per request: each middleware is one more, and at 2,000
clients they showed (~25 % of the request rate with three layers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from fleetsvc.web.errors import error_response
from fleetsvc.web.security import add_headers


def guard(
    server: str,
    statuses: Mapping[type[Exception], int],
    access: Callable[[web.Request], None] | None,
) -> Middleware:
    """The middleware of a server named `server`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if access is not None:
                access(request)
            response = await handler(request)
        except Exception as exc:  # every failure goes through the one mapping
            response = error_response(request, exc, server, statuses)
        add_headers(request, response)
        return response

    return middleware
