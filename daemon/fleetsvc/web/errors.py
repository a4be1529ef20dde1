"""One mapping from errors to HTTP answers (used by the server's one middleware): every
failure a route can have becomes `{"error": "<one line>"}` with its status, and anything
unforeseen a 500 that names nothing (the traceback goes to the log, never to the caller)."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from aiohttp import web

from fleetsvc.web.responses import json_response

log = structlog.get_logger("fleet.http")

MAX_ERROR_CHARS = 300


class HttpError(Exception):
    """An answer other than 2xx that a route or middleware chose; `message` is shown as is."""

    status = 500

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequestError(HttpError):
    """400: a parameter, header or body the server will not take."""

    status = 400


class UnauthorizedError(HttpError):
    """401: no or a wrong bearer token."""

    status = 401


class ForbiddenError(HttpError):
    """403: understood, and refused by configuration."""

    status = 403


class NotFoundError(HttpError):
    """404: no such thing (an unknown device, say)."""

    status = 404


def one_line(exc: BaseException) -> str:
    """The first line of an exception's text, bounded (its class name when it has none)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else exc.__class__.__name__
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def _status_of(exc: Exception, statuses: Mapping[type[Exception], int]) -> int | None:
    # The most specific registered class wins (the exception's own MRO order).
    for cls in type(exc).__mro__:
        if cls in statuses:
            return statuses[cls]
    return None


def error_response(
    request: web.Request, exc: Exception, server: str, statuses: Mapping[type[Exception], int]
) -> web.Response:
    """The answer to an exception a request raised. `statuses` adds the application's own
    exception classes (e.g. an unknown device -> 404); their text must be fit to show."""
    if isinstance(exc, HttpError):
        return json_response(exc.status, {"error": exc.message}, headers=exc.headers)
    if isinstance(exc, web.HTTPException):  # the router's 404 and 405, static files' 403
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        if exc.status == 404:
            body = {"error": "not found", "path": request.path}
        elif exc.status == 405:
            body = {"error": f"method {request.method} not allowed"}
        else:
            body = {"error": exc.reason.lower()}
        return json_response(exc.status, body, headers=headers)
    status = _status_of(exc, statuses)
    if status is None:
        log.exception("http_handler_failed", server=server, path=request.path)
        return json_response(500, {"error": "internal error (logged by the server)"})
    return json_response(status, {"error": one_line(exc)})
