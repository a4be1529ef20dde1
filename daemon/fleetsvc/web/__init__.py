"""HTTP for fleetd's ops endpoint and `fleetctl serve`, on aiohttp: a route table with
parameters declared as pydantic models (params.py), one error mapping, the token and Host
checks, static files served by the library, an access log, and the limits a hostile client
meets (see server.py and listener.py)."""

from fleetsvc.web.errors import (
    BadRequestError,
    ForbiddenError,
    HttpError,
    NotFoundError,
    UnauthorizedError,
)
from fleetsvc.web.params import Flag, Instant, PathParams, Query, Text, parse
from fleetsvc.web.responses import json_body, json_response
from fleetsvc.web.routes import Call, Handler, Route
from fleetsvc.web.server import HttpServer, parse_addr

__all__ = [
    "BadRequestError",
    "Call",
    "Flag",
    "ForbiddenError",
    "Handler",
    "HttpError",
    "HttpServer",
    "Instant",
    "NotFoundError",
    "PathParams",
    "Query",
    "Route",
    "Text",
    "UnauthorizedError",
    "json_body",
    "json_response",
    "parse",
    "parse_addr",
]
