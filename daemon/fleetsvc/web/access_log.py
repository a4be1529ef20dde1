"""The access log: one structlog event per answered request (`http_access`), written by
aiohttp's protocol after the answer went out, so it has the bytes sent and the whole duration.

It never holds a secret: no header at all (so never `Authorization`), the path as sent (its
percent-encoding kept, so no control characters), and of the query string only the parameter
names that look like names, never a value (a token passed as `?token=...` shows as `token`).
The server's own token, should a client put it in the path or as a name, is masked."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

log = structlog.get_logger("fleet.http.access")

MAX_PATH_CHARS = 200
MAX_QUERY_NAMES = 20
MASK = "***"
# A query name worth showing: short and word-like. Anything else (a bare value, a token pasted
# where a name goes) is shown as "?" so the line can never carry it.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")


def query_names(request: web.BaseRequest) -> list[str]:
    """The query's parameter names, in order, once each; values never."""
    names = dict.fromkeys(name if _NAME.fullmatch(name) else "?" for name in request.rel_url.query)
    return list(names)[:MAX_QUERY_NAMES]


def access_logger(
    server: str, level: int, *, token: str | None = None
) -> type[AbstractAccessLogger]:
    """aiohttp's `access_log_class` for the server named `server`, logging at `level`
    (logging.INFO for `fleetctl serve`, DEBUG for fleetd's ops endpoint); `token`, the
    server's, is masked wherever a client put it."""
    secrets = tuple(dict.fromkeys((token, quote(token, safe="")))) if token else ()

    def clean(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text

    class AccessLog(AbstractAccessLogger):
        """One line per request (aiohttp gives it the request, the answer and the time)."""

        @property
        def enabled(self) -> bool:
            """False when the log level hides the lines (aiohttp then skips the call)."""
            return bool(log.is_enabled_for(level))

        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            """Log one answered request."""
            path = clean(request.rel_url.raw_path)
            log.log(
                level,
                "http_access",
                server=server,
                method=request.method,
                path=path if len(path) <= MAX_PATH_CHARS else path[:MAX_PATH_CHARS] + "…",
                query=[clean(name) for name in query_names(request)],
                status=response.status,
                bytes=response.body_length,
                duration_ms=round(time * 1000, 2),
                remote=request.remote,
            )

    return AccessLog


def enabling_logger() -> logging.Logger:
    """The stdlib logger aiohttp wants before it uses an access_log_class at all (ours writes
    through structlog, not through it). Not a global: a fresh one per server."""
    logger = logging.Logger("fleet.http.access")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger
