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

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from fleetctl.analytics.charger_fit import MAX_INTERVAL
from fleetctl.analytics.pages import MAX_PAGE_ROWS, Page, now_of
from fleetctl.analytics.window import Window
from fleetctl.errors import InvalidRequestError
from fleetsvc.web import params as web_params
from fleetsvc.web.errors import BadRequestError
from fleetsvc.web.params import Flag, Instant, PathParams, Query, printable

DEFAULT_MAX_WINDOW_DAYS = 31
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# The largest `hours` the schema admits whatever the server's maximum window is; the window
# check itself (ApiLimits) decides the answer.
MAX_HOURS = 87_600  # ten years

Q = TypeVar("Q", bound=BaseModel)
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
# In the path, control characters are named as such (a NUL is the likely probe there).
PathId = Annotated[str, BeforeValidator(printable), StringConstraints(pattern=DEVICE_ID_PATTERN)]

__all__ = ["Flag", "Instant", "Query"]  # re-exported: the shared kinds and base used below


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

    def page(self) -> Page:
        """The page asked for."""
        return Page(self.limit, self.cursor)

    def now(self) -> datetime:
        """The instant the first page was answered at (the cursor carries it: "the last 24 h"
        stays the same window from page to page), else now."""
        return now_of(self.cursor) or datetime.now(UTC)


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


class DevicePath(PathParams):
    """A device id in the path."""


class VehiclePath(DevicePath):
    """/v1/analytics/performance/{vehicleId}."""

    vehicleId: PathId = Field(examples=["VEHICLE-00001"])  # noqa: N815


class CurrentKindPath(DevicePath):
    """/v1/current/{kind}."""

    kind: Literal["meters", "vehicles"]


class CurrentDevicePath(CurrentKindPath):
    """/v1/current/{kind}/{deviceId}."""

    deviceId: PathId = Field(examples=["VEHICLE-00001", "METER-00001"])  # noqa: N815


class ApiLimits(BaseModel):
    """What the server allows whatever the parameters' ranges (from its settings)."""

    model_config = ConfigDict(frozen=True)

    max_window_days: float = Field(default=DEFAULT_MAX_WINDOW_DAYS, gt=0)

    @property
    def max_window(self) -> timedelta:
        """The longest window a report may cover."""
        return timedelta(days=self.max_window_days)


def parse(model: type[Q], query: Mapping[str, str]) -> Q:
    """fleetsvc.web's `parse`, its refusal as InvalidRequestError (an AnalyticsError: the one
    line the API answers 400 with and the CLI prints)."""
    try:
        return web_params.parse(model, query)
    except BadRequestError as exc:
        raise InvalidRequestError(exc.message) from None
