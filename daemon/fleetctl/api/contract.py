"""What each /v1 operation takes and answers: its query and path parameters (pydantic models,
fleetctl.api.params), its answer (fleetctl.api.schemas) and the error statuses it can give.
The route table (fleetctl.api.handlers) pairs each with its handler; the server
(fleetsvc.web) reads the parameters through the models before the handler runs, and the
OpenAPI document (fleetctl.api.openapi) is generated from the same objects."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from fleetctl.api.params import NoQuery
from fleetsvc.web import Call, PathParams, Query, Route

_PATTERN = re.compile(r"\{(\w+):[^}]*\}")
# What a handler gets: the request, its query and its path parameters, checked.
Handler = Callable[[web.Request, Any, Any], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    """One method on one path: what it takes and answers (for the document and the checks)."""

    method: Literal["GET", "POST"]
    path: str
    summary: str
    response: type[BaseModel] | None  # None: not JSON (the docs page)
    query: type[Query] = NoQuery
    path_params: type[PathParams] | None = None
    body: Any = None  # a type pydantic can describe (the request body's), or None
    errors: tuple[int, ...] = (400,)
    public: bool = False
    content_type: str = "application/json"
    description: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def template(self) -> str:
        """The path as OpenAPI writes it: `{kind:meters|vehicles}` (the router's pattern, so
        another word is a 404 like any unknown path) becomes `{kind}`."""
        return _PATTERN.sub(r"{\1}", self.path)

    def route(self, handler: Handler) -> Route:
        """The server's route: parameters parsed by the models (a 400 naming what is wrong),
        then `handler`."""

        async def endpoint(call: Call) -> web.StreamResponse:
            return await handler(call.request, call.query, call.path)

        statuses = (200, *self.errors) if self.response is not None else (200,)
        return Route(
            self.method,
            self.path,
            endpoint,
            query=self.query,
            path_params=self.path_params,
            public=self.public,
            summary=self.summary,
            responses=statuses,
        )
