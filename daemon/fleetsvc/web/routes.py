"""The route table: each route is one `Route(method, path, handler, params)` whose path
parameters (`/v1/current/{kind}/{device_id}`) and query parameters are declared in one place,
so the server reads and checks them before the handler runs and a document of the API can be
generated from, or checked against, the table."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from fleetsvc.web.params import Param, read_params

_PATH_NAMES = re.compile(r"\{(\w+)")


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: the checked parameters and the raw request."""

    request: web.Request
    args: Mapping[str, Any]


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """GET (with HEAD) or POST on `path`; `public` routes need no token."""

    method: Literal["GET", "POST"]
    path: str
    handler: Handler
    params: tuple[Param, ...] = ()
    public: bool = False
    summary: str = ""
    responses: tuple[int, ...] = field(default=(200,))

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"route path must start with '/': {self.path!r}")
        in_path = set(_PATH_NAMES.findall(self.path))
        declared = {p.name for p in self.params if p.where == "path"}
        if in_path != declared:
            raise ValueError(
                f"{self.method} {self.path}: path parameters {sorted(in_path)} are declared "
                f"as {sorted(declared)}"
            )

    def endpoint(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler: parameters read and checked, then the route's handler."""

        async def endpoint(request: web.Request) -> web.StreamResponse:
            args = read_params(self.params, request.match_info, request.query) if params else {}
            return await self.handler(Call(request, args))

        params = self.params

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
