"""HTTP for fleetd's ops endpoint and `fleetctl serve`, on aiohttp: a route table with
declared parameters, one error mapping, the token and Host checks, static files served by the
library, and the limits a hostile client meets (see server.py and listener.py)."""

from fleetsvc.web.errors import (
    BadRequestError,
    ForbiddenError,
    HttpError,
    NotFoundError,
    UnauthorizedError,
)
from fleetsvc.web.params import Choice, Flag, Instant, Integer, Number, Param, Text
from fleetsvc.web.responses import json_response
from fleetsvc.web.routes import Call, Handler, Route
from fleetsvc.web.server import HttpServer, parse_addr

__all__ = [
    "BadRequestError",
    "Call",
    "Choice",
    "Flag",
    "ForbiddenError",
    "Handler",
    "HttpError",
    "HttpServer",
    "Instant",
    "Integer",
    "NotFoundError",
    "Number",
    "Param",
    "Route",
    "Text",
    "UnauthorizedError",
    "json_response",
    "parse_addr",
]
