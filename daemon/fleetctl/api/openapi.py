"""The OpenAPI 3.1 document of /v1, generated from the operations (fleetctl.api.contract): their
parameter models give the parameters, their answer models the response schemas (pydantic's
JSON Schema, which OpenAPI 3.1 takes as it is). Served at /v1/openapi.json without a token."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import AliasChoices, BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from fleetctl.api.contract import Operation
from fleetctl.api.params import ApiLimits, Query
from fleetctl.api.schemas import Error

REF = "#/components/schemas/{model}"
Refs = Mapping[tuple[Any, Any], dict[str, Any]]  # (model, mode) -> its {"$ref": ...}
REASONS = {
    200: "OK",
    400: "a parameter, cursor or body the server will not take (the message names it)",
    401: "no or a wrong bearer token",
    403: "refused by the server's configuration",
    404: "no such device",
}


def document(
    operations: Iterable[Operation], *, version: str, limits: ApiLimits | None = None
) -> dict[str, Any]:
    """The document of `operations`."""
    ops = list(operations)
    models = {op.response for op in ops if op.response is not None} | {Error}
    refs, top = models_json_schema(
        [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF,
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.template, {})[op.method.lower()] = _operation(
            op, refs, schemas, limits or ApiLimits()
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleet-telemetry API",
            "version": version,
            "description": (
                "Read-only analytics of fleet-telemetry (docs/api.md): reports, current "
                "state, alerts, dead letters and vehicle-meter assignments. Every /v1 route "
                "but this document and its page needs `Authorization: Bearer <token>` when "
                "the server has one."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(
    op: Operation,
    refs: Refs,
    schemas: dict[str, Any],
    limits: ApiLimits,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "parameters": [*_path_parameters(op), *_query_parameters(op.query, limits)],
        "responses": _responses(op, refs),
    }
    if op.description:
        out["description"] = op.description
    if op.public:
        out["security"] = []
    if op.body is not None:
        body = TypeAdapter(op.body).json_schema(ref_template=REF)
        schemas.update(body.pop("$defs", {}))
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return out


def _operation_id(op: Operation) -> str:
    words = [w.strip("{}") for w in op.template.split("/")[2:] if w]
    return op.method.lower() + "".join(w[:1].upper() + w[1:] for w in words)


def _responses(op: Operation, refs: Refs) -> dict[str, Any]:
    error = {"application/json": {"schema": refs[(Error, "serialization")]}}
    if op.response is None:
        ok: dict[str, Any] = {op.content_type: {"schema": {"type": "string"}}}
    else:
        ok = {"application/json": {"schema": refs[(op.response, "serialization")]}}
    out: dict[str, Any] = {"200": {"description": REASONS[200], "content": ok}}
    statuses = set(op.errors if op.response is not None else ())
    if not op.public:
        statuses.add(401)
    for status in sorted(statuses):
        out[str(status)] = {"description": REASONS[status], "content": error}
    return out


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    if op.path_params is None:
        return []
    props = op.path_params.model_json_schema()["properties"]
    return [
        {"name": name, "in": "path", "required": True, "schema": _plain(props[name])}
        for name in op.path_params.model_fields
    ]


def _query_parameters(model: type[BaseModel], limits: ApiLimits) -> list[dict[str, Any]]:
    props = model.model_json_schema()["properties"]
    out = []
    for name, info in model.model_fields.items():
        schema = _plain(props[name])
        if name == "hours":  # the server's maximum window, in the document too
            schema["maximum"] = min(
                schema.get("maximum", float("inf")), limits.max_window_days * 24
            )
        alias = info.validation_alias
        names = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [name]
        for i, shown in enumerate(names):
            text = info.description or ""
            if i:
                text = f"alias of `{names[0]}` (the seeds' name): give one of them"
            param: dict[str, Any] = {"name": shown, "in": "query", "schema": schema}
            if text:
                param["description"] = text
            if info.is_required():
                param["required"] = True
            out.append(param)
    if issubclass(model, Query):
        assert {p["name"] for p in out} == set(model.names()), model
    return out


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without the null branch of an optional field (absent is how a
    query says "none") and without pydantic's title."""
    schema = copy.deepcopy(schema)
    schema.pop("title", None)
    schema.pop("description", None)  # the parameter carries it
    if schema.get("default", 0) is None:
        schema.pop("default")
    branches = schema.pop("anyOf", None)
    if branches is not None:
        kept = [b for b in branches if b.get("type") != "null"]
        if len(kept) == 1:
            schema = {**kept[0], **schema}
        else:
            schema["anyOf"] = kept
    return schema
