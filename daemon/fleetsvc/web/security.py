"""What every answer carries and who gets one: a bearer token on every route that is not
public, a Host allow-list when the server has no token (so a DNS-rebinding page cannot read
a loopback API from an operator's browser), and headers that stop a browser from sniffing
types, framing the page or running anything but our own scripts."""

from __future__ import annotations

import hmac
import ipaddress
import mimetypes
from collections.abc import Callable, Collection

from aiohttp import hdrs, web

from fleetsvc.web.errors import BadRequestError, UnauthorizedError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fleet-telemetry"'}
# Our pages load only their own scripts, styles and API; nothing may frame them.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without port or brackets, lower case."""
    if header.startswith("["):
        return header[1 : header.find("]")].lower()
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


def access_check(
    allowed: Collection[str] | None,
    token: str | None,
    public: Collection[web.AbstractResource],
) -> Callable[[web.Request], None] | None:
    """Who gets an answer: with `allowed`, the Host must be one of those names or a loopback
    address (aiohttp's parser already refuses an HTTP/1.1 request without Host); with a
    `token`, every route but the public ones needs `Authorization: Bearer <token>` (compared
    in constant time), unknown paths too, so they reveal nothing. The check raises an
    HttpError; None when there is nothing to check."""
    if allowed is None and token is None:
        return None
    expected = token.encode() if token else None

    def check(request: web.Request) -> None:
        if allowed is not None:
            value = request.headers.get(hdrs.HOST, "").strip()
            if not value:
                raise BadRequestError("a Host header is required")
            name = host_name(value)
            if name not in allowed and not is_loopback(name):
                raise BadRequestError(
                    f"Host {name[:60]!r} is not served here: without a token this server "
                    "answers only loopback names"
                )
        if expected is not None and request.match_info.route.resource not in public:
            scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
            given = credentials.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
                raise UnauthorizedError(
                    "missing or wrong bearer token (Authorization: Bearer <FLEET_API_TOKEN>)",
                    headers=CHALLENGE,
                )

    return check


def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The browser-facing headers, no caching unless a route said, and for a file its type
    named from its path with UTF-8 on text (so the static handler does not guess it from the
    system's mime.types, which may still say application/javascript: RFC 9239 says
    text/javascript)."""
    response.headers.update(HEADERS)
    response.headers.setdefault(hdrs.CACHE_CONTROL, "no-store")
    if isinstance(response, web.FileResponse) and hdrs.CONTENT_TYPE not in response.headers:
        kind = mimetypes.guess_type(request.path)[0]
        if kind is not None:  # else the file's own name decides, in aiohttp
            response.content_type = _JAVASCRIPT.get(kind, kind)
            if kind.startswith("text/") or kind in _JAVASCRIPT:
                response.charset = "utf-8"


_JAVASCRIPT = {"application/javascript": "text/javascript"}
