"""The route table: each route is one `Route(method, path, handler, query=..., path_params=...)`
whose query and path parameters (`/v1/current/{kind}/{device_id}`) are declared in one place,
as pydantic models (fleetsvc.web.params), so the server reads and checks them before the
handler runs and a document of the API can be generated from, or checked against, the table."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from fleetsvc.web.params import PathParams, Query, parse

_PATH_NAMES = re.compile(r"\{(\w+)")


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: the raw request and its checked parameters (instances
    of the route's models; None for a route that declares none)."""

    request: web.Request
    query: Any = None
    path: Any = None


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """GET (with HEAD) or POST on `path`; `public` routes need no token. Without a `query`
    model the query string is not read at all."""

    method: Literal["GET", "POST"]
    path: str
    handler: Handler
    query: type[Query] | None = None
    path_params: type[PathParams] | None = None
    public: bool = False
    summary: str = ""
    responses: tuple[int, ...] = field(default=(200,))

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"route path must start with '/': {self.path!r}")
        in_path = set(_PATH_NAMES.findall(self.path))
        declared = set() if self.path_params is None else set(self.path_params.model_fields)
        if in_path != declared:
            raise ValueError(
                f"{self.method} {self.path}: path parameters {sorted(in_path)} are declared "
                f"as {sorted(declared)}"
            )

    def endpoint(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler: parameters read and checked, then the route's handler."""
        handler, query_model, path_model = self.handler, self.query, self.path_params

        async def endpoint(request: web.Request) -> web.StreamResponse:
            query = None if query_model is None else parse(query_model, request.query)
            path = None if path_model is None else parse(path_model, request.match_info)
            return await handler(Call(request, query, path))

        return endpoint


def add_routes(app: web.Application, routes: tuple[Route, ...]) -> set[web.AbstractResource]:
    """Register `routes` on `app`; returns the resources of the public ones."""
    public: set[web.AbstractResource] = set()
    for route in routes:
        endpoint = route.endpoint()
        added = app.router.add_route(route.method, route.path, endpoint)
        if route.method == "GET":  # HEAD answers like GET without the body
            app.router.add_route("HEAD", route.path, endpoint)
        if route.public and added.resource is not None:
            public.add(added.resource)
    return public
