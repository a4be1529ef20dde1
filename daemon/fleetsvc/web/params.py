"""Route parameters declared once, as pydantic models: a route's query is a `Query` subclass,
its path parameters a `PathParams` one. The server reads them through `parse()` before the
handler runs, and an OpenAPI document can describe them from the same models (fleetctl's
does), so the two cannot drift.

The rules every route follows: a query parameter the route does not declare is refused, and so
is one given twice; empty values count as absent; aliases (`AliasChoices`) are accepted, one of
each set at most; every number is finite and inside its declared range; a refusal is one line
naming every bad parameter and what it must be (a 400 through BadRequestError), never a 500."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import annotated_types
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic.fields import FieldInfo

from fleetsvc.web.errors import BadRequestError

MIN_YEAR, MAX_YEAR = 2000, 2200
MAX_SHOWN_CHARS = 40
# C0 controls, DEL and C1 controls: never part of an id, and NUL is refused by PostgreSQL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

M = TypeVar("M", bound=BaseModel)


def _instant(value: object) -> object:
    """RFC 3339 with an offset and a 'T', in the years MIN_YEAR..MAX_YEAR (pydantic alone would
    take a bare date or epoch seconds, and years down to 1, whose arithmetic overflows)."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-11-20T08:00:00Z")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(f"must be a time in the years {MIN_YEAR} to {MAX_YEAR}")
    return parsed.astimezone(UTC)


def _flag(value: object) -> object:
    """Only the words `true` and `false` (pydantic alone would also take yes, on, 1, ...)."""
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value


def printable(value: object) -> object:
    """A BeforeValidator: a string with control characters is refused as such (before a
    pattern would refuse it less clearly)."""
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    Field(json_schema_extra={"format": "date-time"}),
]
Flag = Annotated[bool, BeforeValidator(_flag)]
# A printable string (ids, names) of 1 to 200 characters.
Text = Annotated[
    str,
    BeforeValidator(printable),
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$"),
]


class Query(BaseModel):
    """Base of every route's query: unknown names, repeated names and bad values are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def names(cls) -> dict[str, str]:
        """Every accepted query name -> the field it sets (aliases included)."""
        out: dict[str, str] = {}
        for field_name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                out.update({str(c): field_name for c in alias.choices})
            else:
                out[info.alias or field_name] = field_name
        return out


class PathParams(BaseModel):
    """Base of a route's path parameters: one field per `{name}` of its path."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _values(query: Mapping[str, str], name: str) -> list[str]:
    # aiohttp's MultiDict keeps a repeated name once per value; a plain dict cannot repeat.
    many = getattr(query, "getall", None)
    return list(many(name, [])) if many is not None else [query[name]]


def parse(model: type[M], query: Mapping[str, str]) -> M:
    """`query` (a request's query or path parameters) as `model`, or BadRequestError with one
    line naming every bad parameter. Empty values count as absent."""
    known = model.names() if issubclass(model, Query) else {n: n for n in model.model_fields}
    unknown = sorted(name for name in query if name not in known)
    if unknown:
        raise BadRequestError(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
            f" (this route takes {', '.join(sorted(known)) or 'none'})"
        )
    data: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in dict.fromkeys(query):
        values = _values(query, name)
        if len(values) > 1:
            raise BadRequestError(f"{name} is given more than once")
        if values[0] == "":
            continue
        field = known[name]
        if field in seen:
            raise BadRequestError(f"give {seen[field]} or {name}, not both")
        seen[field] = name
        data[name] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequestError(_one_line(exc, model, data)) from None


def _one_line(exc: ValidationError, model: type[BaseModel], data: Mapping[str, str]) -> str:
    """'<name> <what it must be>, got <value>' for each bad parameter, on one line."""
    fields = {name: model.model_fields.get(field) for name, field in _fields_by_name(model)}
    parts = []
    for err in exc.errors(include_url=False):
        name = str(err["loc"][0]) if err["loc"] else "parameters"
        text = data.get(name)
        shown = "" if text is None else f", got {_shown(text)}"
        parts.append(f"{name} {_reason(err, fields.get(name))}{shown}")
    return "; ".join(parts)


def _fields_by_name(model: type[BaseModel]) -> list[tuple[str, str]]:
    if issubclass(model, Query):
        return list(model.names().items())
    return [(n, n) for n in model.model_fields]


def _reason(err: Any, info: FieldInfo | None) -> str:
    """What the parameter must be, from the error and the field's declared constraints."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return (
            f"must be one of {ctx.get('expected', '').replace(' or ', ', ').replace(chr(39), '')}"
        )
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern', '').strip('^$')}"
    if kind in ("string_too_long", "string_too_short"):
        return f"must be 1 to {_bounds(info)[2] or ''} characters"
    if kind.startswith("bool"):
        return "must be true or false"
    low, low_open, high, high_open = _bounds(info)
    if low is None or high is None:
        return str(err["msg"]).lower()
    span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    whole = info is not None and _is_int(info)
    return f"must be a {'whole number' if whole else 'number'} in {span}"


def _bounds(info: FieldInfo | None) -> tuple[Any, bool, Any, bool]:
    low: Any = None
    high: Any = None
    low_open = high_open = False
    for m in [] if info is None else info.metadata:
        if isinstance(m, annotated_types.Gt):
            low, low_open = m.gt, True
        elif isinstance(m, annotated_types.Ge):
            low = m.ge
        elif isinstance(m, annotated_types.Lt):
            high, high_open = m.lt, True
        elif isinstance(m, annotated_types.Le):
            high = m.le
        elif isinstance(m, annotated_types.MaxLen):
            high = m.max_length
    return low, low_open, high, high_open


def _is_int(info: FieldInfo) -> bool:
    return "int" in str(info.annotation)


def _shown(text: str) -> str:
    short = text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "…"
    return repr(short)
