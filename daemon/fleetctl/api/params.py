"""The parameters of every /v1 route, declared once as pydantic models: the handlers read them
through `parse()`, and the OpenAPI document (fleetctl.api.openapi) describes them from the same
models, so the two cannot drift.

The rules every route follows:
* a query parameter the route does not declare is a 400 naming it (the seeds' clients sent
  `startDate`, `meterId`, `limit`, which used to be ignored with a 200);
* `startDate`/`endDate` are accepted as aliases of `start`/`end` (one of each pair at most);
* every number is finite and inside its declared range, every timestamp is RFC 3339 with an
  offset in the years 2000-2199, every id matches the ingest rule `[A-Za-z0-9_.:-]{1,64}`
  (so NUL and control characters never reach PostgreSQL);
* a window longer than the server's maximum (FLEET_API_MAX_WINDOW_DAYS, 31 days) is a 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, TypeVar

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

from fleetctl.analytics.charger_fit import MAX_INTERVAL
from fleetctl.analytics.pages import MAX_PAGE_ROWS
from fleetctl.analytics.window import Window
from fleetctl.errors import InvalidRequestError

DEFAULT_MAX_WINDOW_DAYS = 31
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MIN_YEAR, MAX_YEAR = 2000, 2200
MAX_SHOWN_CHARS = 40
# The largest `hours` the schema admits whatever the server's maximum window is; the window
# check itself (ApiLimits) decides the answer.
MAX_HOURS = 87_600  # ten years

Q = TypeVar("Q", bound=BaseModel)
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]


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


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    Field(json_schema_extra={"format": "date-time"}),
]
Flag = Annotated[bool, BeforeValidator(_flag)]


class Query(BaseModel):
    """Base of every route's query: unknown names, repeated names and bad values are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Names a route takes besides its fields' (none by default); set by subclasses.
    paged: ClassVar[bool] = False

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


class TimeWindowQuery(Query):
    """A window: `hours` ending now (default 24), or `start`/`end`."""

    hours: float | None = Field(
        None, gt=0, le=MAX_HOURS, description="the window's length in hours (default 24)"
    )
    start: Instant | None = Field(
        None,
        validation_alias=AliasChoices("start", "startDate"),
        description="the window's start, RFC 3339 (`startDate` is accepted as an alias)",
    )
    end: Instant | None = Field(
        None,
        validation_alias=AliasChoices("end", "endDate"),
        description="the window's end (exclusive), RFC 3339; default now "
        "(`endDate` is accepted as an alias)",
    )

    def window(self, limits: ApiLimits, now: datetime | None = None) -> Window:
        """The window asked for, checked against the server's maximum."""
        if self.hours is not None and self.start is not None and self.end is not None:
            raise InvalidRequestError("give hours or start/end, not all three")
        stop = self.end or (now or datetime.now(UTC))
        if self.start is None:
            begin = stop - timedelta(hours=24.0 if self.hours is None else self.hours)
        else:
            begin = self.start
            if self.end is None and self.hours is not None:
                stop = begin + timedelta(hours=self.hours)
        if not begin < stop:
            raise InvalidRequestError(
                f"the window's end {stop.isoformat()} is not after its start {begin.isoformat()}"
            )
        if stop - begin > limits.max_window:
            raise InvalidRequestError(
                f"the window is longer than the maximum of {limits.max_window_days:g} days "
                "(FLEET_API_MAX_WINDOW_DAYS): ask for a shorter one"
            )
        return Window(begin, stop)


class WindowQuery(TimeWindowQuery):
    """A report window and the AC energy below which a vehicle is not judged."""

    minAcKwh: float = Field(  # noqa: N815 (the API's camelCase name)
        0.1,
        ge=0,
        le=1_000_000,
        description="below this AC energy a vehicle is insufficient_data",
    )


class PageQuery(Query):
    """`limit` rows a page and the `cursor` of the previous page's `nextCursor`."""

    paged: ClassVar[bool] = True
    limit: int | None = Field(
        None, ge=1, le=MAX_PAGE_ROWS, description="rows per page (default: everything)"
    )
    cursor: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="the `nextCursor` of the previous page, as it was given; "
        "the other parameters must be those of the first page",
    )


class PerformanceQuery(WindowQuery):
    """GET /v1/analytics/performance/{vehicleId}."""

    meterId: DeviceId | None = Field(  # noqa: N815
        None,
        description="only the time the vehicle was assigned to this meter in the window "
        "(its figures against that meter)",
    )


class FleetQuery(WindowQuery, PageQuery):
    """GET /v1/analytics/fleet."""

    sort: Literal["efficiency", "loss", "ac", "vehicle"] = Field(
        "efficiency", description="worst efficiency, largest loss, largest AC, or by vehicle id"
    )
    chargers: Flag = Field(False, description="add each row's charger diagnosis")


class FleetSummaryQuery(WindowQuery):
    """GET /v1/analytics/fleet/summary."""

    worst: int = Field(10, ge=0, le=100, description="how many of the worst vehicles to list")


class AnomaliesQuery(WindowQuery):
    """GET /v1/analytics/anomalies."""

    threshold: float = Field(
        0.85, gt=0, le=1.5, description="efficiency ratio below which a vehicle is listed"
    )


class ChargersQuery(WindowQuery):
    """GET /v1/analytics/chargers."""

    maxInterval: float = Field(  # noqa: N815
        MAX_INTERVAL,
        ge=0,
        le=1,
        description="a 95 % interval of the efficiency at most this wide earns a status "
        "from the fitted value even when it crosses a band's edge",
    )


class AssignmentCheckQuery(TimeWindowQuery):
    """GET /v1/assignments/check."""

    all: Flag = Field(
        False, description="list every vehicle, not only the suspect and unassigned ones"
    )


class FleetDailyQuery(WindowQuery):
    """GET /v1/analytics/fleet/daily."""


class VehiclesQuery(PageQuery):
    """GET /v1/vehicles: a type-ahead's search."""

    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{0,64}$")] = Field(
        "", description="the start of the id, any case (default: every vehicle)"
    )
    limit: int | None = Field(None, ge=1, le=1000, description="vehicles per page (default 20)")


class CurrentQuery(PageQuery):
    """GET /v1/current/{kind} and /v1/current/all."""


class NoQuery(Query):
    """A route without query parameters (any given is a 400)."""


class AssignmentsQuery(PageQuery):
    """GET /v1/assignments."""

    vehicleId: DeviceId | None = Field(None, description="one vehicle's history")  # noqa: N815
    open: Flag = Field(False, description="only assignments still open")


class ImportQuery(Query):
    """POST /v1/assignments."""

    strict: Flag = Field(
        False,
        description="refuse the import (400) if an id never reported; without it they are "
        "imported and named in neverSeen",
    )


class RejectsQuery(PageQuery):
    """GET /v1/rejects."""

    since: Instant | None = Field(None, description="received at or after (default 24 h ago)")
    field: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.]{1,64}$")] | None = Field(
        None, description="only rejects of this payload field"
    )
    limit: int | None = Field(
        None, ge=0, le=1000, description="newest payloads per page (default 20)"
    )


class AlertsQuery(PageQuery):
    """GET /v1/alerts."""


class DevicePath(BaseModel):
    """A device id in the path."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class VehiclePath(DevicePath):
    """/v1/analytics/performance/{vehicleId}."""

    vehicleId: DeviceId = Field(examples=["VEHICLE-00001"])  # noqa: N815


class CurrentKindPath(DevicePath):
    """/v1/current/{kind}."""

    kind: Literal["meters", "vehicles"]


class CurrentDevicePath(CurrentKindPath):
    """/v1/current/{kind}/{deviceId}."""

    deviceId: DeviceId = Field(examples=["VEHICLE-00001", "METER-00001"])  # noqa: N815


class ApiLimits(BaseModel):
    """What the server allows whatever the parameters' ranges (from its settings)."""

    model_config = ConfigDict(frozen=True)

    max_window_days: float = Field(default=DEFAULT_MAX_WINDOW_DAYS, gt=0)

    @property
    def max_window(self) -> timedelta:
        """The longest window a report may cover."""
        return timedelta(days=self.max_window_days)


def _values(query: Mapping[str, str], name: str) -> list[str]:
    # aiohttp's MultiDict keeps a repeated name once per value; a plain dict cannot repeat.
    many = getattr(query, "getall", None)
    return list(many(name, [])) if many is not None else [query[name]]


def parse(model: type[Q], query: Mapping[str, str]) -> Q:
    """`query` (a request's query or path parameters) as `model`, or InvalidRequestError with
    one line naming every bad parameter. Empty values count as absent."""
    known = model.names() if issubclass(model, Query) else {n: n for n in model.model_fields}
    unknown = sorted(name for name in query if name not in known)
    if unknown:
        raise InvalidRequestError(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
            f" (this route takes {', '.join(sorted(known)) or 'none'})"
        )
    data: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in dict.fromkeys(query):
        values = _values(query, name)
        if len(values) > 1:
            raise InvalidRequestError(f"{name} is given more than once")
        if values[0] == "":
            continue
        field = known[name]
        if field in seen:
            raise InvalidRequestError(f"give {seen[field]} or {name}, not both")
        seen[field] = name
        data[name] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(_one_line(exc, model, data)) from None


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
    span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is None or high is None:
        return str(err["msg"]).lower()
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


def query_names(model: type[BaseModel]) -> Sequence[str]:
    """The query names a model accepts (for the OpenAPI document and error messages)."""
    return list(model.names()) if issubclass(model, Query) else list(model.model_fields)
