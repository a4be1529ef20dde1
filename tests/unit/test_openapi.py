"""The OpenAPI document of /v1 (fleetctl.api.openapi) against the route table it is generated
from: every route is documented and every documented operation is a route, with the parameters
the route's models accept."""

from __future__ import annotations

import re
from typing import Any

from fleetctl.api.handlers import AnalyticsApi
from fleetctl.api.params import ApiLimits, Query

API = AnalyticsApi("postgresql://nobody@127.0.0.1:1/none", limits=ApiLimits(max_window_days=7))


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_operation_is_a_route() -> None:
    routes = {(r.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path)) for r in API.routes()}
    assert all(path.startswith("/v1/") for _, path in routes)
    assert _operations(API.openapi_document) == routes
    assert len(routes) == len(API.table())


def test_parameters_are_those_the_models_accept() -> None:
    doc = API.openapi_document
    for op, _ in API.table():
        params = doc["paths"][op.template][op.method.lower()]["parameters"]
        query = {p["name"] for p in params if p["in"] == "query"}
        path = {p["name"] for p in params if p["in"] == "path"}
        assert issubclass(op.query, Query)
        assert query == set(op.query.names()), op.path
        expected = set() if op.path_params is None else set(op.path_params.model_fields)
        assert path == expected, op.path
        assert all(p["required"] for p in params if p["in"] == "path")


def test_aliases_limits_security_and_schemas() -> None:
    doc = API.openapi_document
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    fleet = doc["paths"]["/v1/analytics/fleet"]["get"]
    by_name = {p["name"]: p for p in fleet["parameters"]}
    assert {"start", "startDate", "end", "endDate", "limit", "cursor"} <= by_name.keys()
    assert by_name["hours"]["schema"]["maximum"] == 7 * 24  # the server's maximum window
    assert fleet["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Fleet"
    }
    assert {"400", "401"} <= fleet["responses"].keys()
    assert "nextCursor" in doc["components"]["schemas"]["Fleet"]["required"]
    for public in ("/v1/openapi.json", "/v1/docs"):
        assert doc["paths"][public]["get"]["security"] == []
    body = doc["paths"]["/v1/assignments"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["type"] == "array"
