"""What each /v1 operation takes and answers: its query and path parameters (pydantic models,
fleetctl.api.params), its answer (fleetctl.api.schemas) and the error statuses it can give.
The route table (fleetctl.api.handlers) pairs each with its handler; the server reads the
parameters through it before the handler runs, and the OpenAPI document (fleetctl.api.openapi)
is generated from the same objects."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from fleetctl.api.params import NoQuery, parse
from fleetsvc.web import Call, Param, Route, Text

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
    query: type[BaseModel] = NoQuery
    path_params: type[BaseModel] | None = None
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
        names = () if self.path_params is None else tuple(self.path_params.model_fields)
        # The path's names are declared to fleetsvc for its own check; the model does the rest.
        path_params = tuple(Param(n, Text(max_length=200), where="path") for n in names)
        query_model, path_model = self.query, self.path_params

        async def endpoint(call: Call) -> web.StreamResponse:
            request = call.request
            query = parse(query_model, request.query)
            path = None if path_model is None else parse(path_model, _path(request.match_info))
            return await handler(request, query, path)

        statuses = (200, *self.errors) if self.response is not None else (200,)
        return Route(
            self.method,
            self.path,
            endpoint,
            path_params,
            public=self.public,
            summary=self.summary,
            responses=statuses,
        )


def _path(match: Mapping[str, str]) -> dict[str, str]:
    return dict(match)
