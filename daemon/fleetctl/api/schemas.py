"""The JSON each /v1 route answers, as pydantic models: they are never instantiated on the hot
path (the reports build plain dicts), only turned into the OpenAPI document's schemas
(fleetctl.api.openapi), against which schemathesis checks every live answer in `make test`.

Objects admit fields beyond those listed (additions are how the API grows); the listed ones are
required and typed. Keys are camelCase, as the reports write them.
"""

# ruff: noqa: N815 (field names are the API's camelCase keys)

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["optimal", "degraded", "critical", "meter_error", "insufficient_data"]
Stamp = str  # RFC 3339 in UTC with a Z


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(_Out):
    """Every answer but 2xx: one line saying what is wrong."""

    error: str


class WindowOut(_Out):
    """The half-open window [start, end) the report covers."""

    start: Stamp = Field(json_schema_extra={"format": "date-time"})
    end: Stamp = Field(json_schema_extra={"format": "date-time"})


class MeterSpan(_Out):
    """A meter the vehicle was assigned to inside the window."""

    meterId: str
    start: Stamp = Field(alias="from")
    to: Stamp
    shared: bool


class MinMaxAvg(_Out):
    """Battery temperature over the window (null without readings)."""

    avg: float | None
    min: float | None
    max: float | None


class FirstLast(_Out):
    """State of charge at the first and last reading of the window."""

    first: float | None
    last: float | None


class Counts(_Out):
    """Per side: the vehicle's readings and its meter's."""

    vehicle: int
    meter: int


class Coverage(_Out):
    """Readings received as a percentage of those expected (null when none were expected)."""

    vehicle: float | None
    meter: float | None


class ChargerFit(_Out):
    """How well the charger model fits the hours used."""

    hours: int
    chargingHours: int
    rmseWh: float | None


Reason = Literal[
    "few_charging_hours",
    "few_hours",
    "collinear",
    "interval_too_wide",
    "efficiency_above_1",
    "negative_standby",
]
Range = tuple[float, float]


class ChargerInterval(_Out):
    """95 % intervals [low, high] of the two fitted figures."""

    conversionEfficiency: Range
    standbyW: Range


class ChargerCore(_Out):
    """A charger's fitted conversion efficiency and standby draw (bounded: 0 < η ≤ 1, standby
    ≥ 0), their 95 % intervals, and a status only when the interval is sure of it."""

    status: Status
    reason: Reason | None = Field(
        description="why insufficient_data or meter_error; null with a band"
    )
    conversionEfficiency: float | None = Field(ge=0, le=1)
    standbyW: float | None = Field(ge=0)
    boundActive: Literal["standby", "efficiency", "both"] | None = Field(
        description="the parameter the bounded fit pinned at its bound"
    )
    ci95: ChargerInterval | None = Field(
        description="null without one: no fit, fewer than 3 hours, or data no charger makes"
    )
    fit: ChargerFit


class RowCharger(ChargerCore):
    """The diagnosis of the meter a fleet row used last (`chargers=true`)."""

    meterId: str


class VehicleRow(_Out):
    """One vehicle's billed AC, stored DC and verdict over the window."""

    vehicleId: str
    meters: list[MeterSpan]
    totalAcKwh: float
    totalDcKwh: float
    lossKwh: float
    efficiency: float | None
    efficiencyPercent: float | None
    status: Status
    message: str
    meterShared: bool
    sharedWith: list[str]
    vehicleDcKwh: float
    assignedSeconds: float
    batteryTemp: MinMaxAvg
    soc: FirstLast
    readings: Counts
    expectedReadings: Counts
    coveragePercent: Coverage


class FleetRow(VehicleRow):
    """A fleet report row; `charger` only with `chargers=true`."""

    charger: RowCharger | None = None


class Billed(_Out):
    """The plain billed ratio over the charger's hours."""

    acKwh: float
    dcKwh: float
    efficiency: float | None


class UnitCharger(ChargerCore):
    """The charger diagnosis of one metering unit the vehicle used."""

    meterId: str
    start: Stamp = Field(alias="from")
    to: Stamp
    message: str
    billed: Billed


class Hour(_Out):
    """One UTC hour the window touches (null figures: no data)."""

    hour: Stamp
    acKwh: float | None
    dcKwh: float | None
    efficiency: float | None
    readings: Counts


class Fresh(_Out):
    """How old the newest stored reading is."""

    newestReadingAt: Stamp | None
    dataAgeSeconds: float | None


class Performance(VehicleRow, Fresh):
    """GET /v1/analytics/performance/{vehicleId}."""

    window: WindowOut
    meterId: str | None = Field(None, description="the meter asked for with ?meterId=")
    chargers: list[UnitCharger]
    hourly: list[Hour]


class Totals(_Out):
    """The fleet's totals; a shared meter is counted once."""

    vehicles: int
    meters: int
    totalAcKwh: float
    totalDcKwh: float
    lossKwh: float
    efficiency: float | None
    efficiencyPercent: float | None


class StatusCounts(_Out):
    """How many vehicles have each status."""

    optimal: int
    degraded: int
    critical: int
    meter_error: int
    insufficient_data: int


class FleetHead(Fresh):
    """What every form of the fleet report carries."""

    window: WindowOut
    generatedAt: Stamp
    totals: Totals
    statusCounts: StatusCounts


class Paged(_Out):
    """A listing's page: `nextCursor` is the `cursor` of the next page, null on the last."""

    nextCursor: str | None


class Fleet(FleetHead, Paged):
    """GET /v1/analytics/fleet."""

    vehicles: list[FleetRow]


class FleetSummary(FleetHead):
    """GET /v1/analytics/fleet/summary: the counts and the worst vehicles, not every row."""

    worst: list[VehicleRow]


class Anomalies(Fresh):
    """GET /v1/analytics/anomalies."""

    window: WindowOut
    threshold: float
    minAcKwh: float
    count: int
    vehicles: list[VehicleRow]
    meterErrors: list[VehicleRow]


class Charger(ChargerCore):
    """One charger (meter) of GET /v1/analytics/chargers."""

    meterId: str
    vehicles: list[str]
    message: str
    billed: Billed


class ChargerStatusCounts(_Out):
    """Chargers per status."""

    optimal: int
    degraded: int
    critical: int
    meter_error: int
    insufficient_data: int


class IntervalMethod(_Out):
    """How the intervals are made, and how narrow one must be to decide across a band edge."""

    level: float
    method: str
    maxWidthForStatus: float


class Chargers(_Out):
    """GET /v1/analytics/chargers."""

    window: WindowOut
    model: str
    interval: IntervalMethod
    count: int
    statusCounts: ChargerStatusCounts
    chargers: list[Charger]


class AssignmentFit(_Out):
    """AC beyond the meter's standby against the vehicle's DC, by least squares."""

    conversionEfficiency: float | None
    standbyW: float | None
    relativeError: float | None
    plausible: bool
    withOtherVehicles: bool


class AssignmentSide(_Out):
    """How one meter's hourly AC lines up with the vehicle's hourly DC."""

    meterId: str | None
    hours: int
    chargingHours: int
    chargingHoursWithoutAc: int
    acHoursWithoutDc: int
    fit: AssignmentFit


class BestMeter(AssignmentSide):
    """The meter whose AC fits the vehicle's DC best, and its signature overlap."""

    jaccard: float


class AssignmentVerdict(_Out):
    """One vehicle of GET /v1/assignments/check."""

    vehicleId: str
    status: Literal["suspect", "unassigned", "ok", "insufficient_data"]
    message: str
    meterId: str | None
    suggestedMeterId: str | None
    chargingHours: int
    assigned: AssignmentSide
    best: BestMeter | None


class AssignmentStatusCounts(_Out):
    """Vehicles per verdict."""

    suspect: int
    unassigned: int
    ok: int
    insufficient_data: int


class AssignmentCheck(_Out):
    """GET /v1/assignments/check."""

    window: WindowOut
    model: str
    count: int
    statusCounts: AssignmentStatusCounts
    vehicles: list[AssignmentVerdict]


class DeviceState(_Out):
    """A device's newest reading."""

    timestamp: Stamp
    updatedAt: Stamp
    lastSeenSeconds: float
    offline: bool


class MeterState(DeviceState):
    """A meter's newest reading."""

    meterId: str
    kwhConsumedAc: float
    voltage: float


class VehicleState(DeviceState):
    """A vehicle's newest reading."""

    vehicleId: str
    soc: float
    kwhDeliveredDc: float
    batteryTemp: float


class CurrentHead(_Out):
    """When the ages were taken and when a device counts as offline."""

    asOf: Stamp
    offlineAfterSeconds: int
    count: int = Field(description="devices of the kind (all pages)")
    offline: int = Field(description="of which offline (all pages)")


class CurrentDevices(CurrentHead):
    """GET /v1/current/{kind}/{deviceId}: one device (`devices` holds it)."""

    kind: Literal["meters", "vehicles"]
    devices: list[MeterState | VehicleState]


class CurrentKind(CurrentDevices, Paged):
    """GET /v1/current/{kind}: a page of the kind's devices, by id."""


class KindPart(_Out):
    """One kind's devices in /v1/current/all."""

    count: int
    offline: int
    devices: list[MeterState | VehicleState]


class CurrentAll(CurrentHead, Paged):
    """GET /v1/current/all: meters, then vehicles, by id."""

    kind: Literal["all"]
    meters: KindPart
    vehicles: KindPart


class Assignment(_Out):
    """A vehicle's assignment to a meter over [validFrom, validTo)."""

    vehicleId: str
    meterId: str
    validFrom: Stamp
    validTo: Stamp | None


class Assignments(Paged):
    """GET /v1/assignments."""

    count: int = Field(description="assignments that match (all pages)")
    assignments: list[Assignment]


class AssignmentIn(BaseModel):
    """One assignment to import."""

    model_config = ConfigDict(extra="forbid")

    vehicleId: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    meterId: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    validFrom: str = Field(json_schema_extra={"format": "date-time"})
    validTo: str | None = Field(None, json_schema_extra={"format": "date-time"})


class NeverSeen(_Out):
    """Ids of an assignment that never reported (no reading stored): a typo, or a device not
    installed yet."""

    vehicles: list[str]
    meters: list[str]


class Imported(_Out):
    """POST /v1/assignments: what was written, in one transaction."""

    imported: int = Field(description="assignments written")
    unchanged: int = Field(description="assignments already stored as they are (no-ops)")
    vehicles: int = Field(description="vehicles of the assignments written")
    neverSeen: NeverSeen


class RejectExample(_Out):
    """One reject of a group, as it was stored: the last one."""

    id: int
    receivedAt: Stamp
    deviceId: str | None = Field(
        description="the device the topic names (None: not a device topic)"
    )
    topic: str
    reason: str = Field(description="the whole reason, with the values that broke the rule")


class RejectCount(_Out):
    """Rejects of one kind, field and rule (the rule without values, ids or offsets)."""

    kind: Literal["meters", "vehicles", "other"]
    field: str
    rule: str
    count: int
    firstSeen: Stamp
    lastSeen: Stamp
    newest: Stamp = Field(description="as lastSeen (its name before firstSeen and lastSeen)")
    example: RejectExample


class Reject(_Out):
    """One rejected message and its payload."""

    id: int
    receivedAt: Stamp
    topic: str
    reason: str
    payload: str
    payloadEncoding: Literal["utf-8", "base64"]
    stored: dict[str, float] | None = Field(
        None,
        description="a conflict: the stored values of the reading's key, by payload field "
        "(the payload is the reading received, which was not stored); null for a message "
        "that failed validation",
    )


class Rejects(Paged):
    """GET /v1/rejects."""

    since: Stamp
    field: str | None
    total: int
    counts: list[RejectCount]
    newest: list[Reject]


class Alert(_Out):
    """An alert, open or resolved."""

    id: int
    kind: str
    subject: str
    state: Literal["open", "resolved"]
    openedAt: Stamp
    resolvedAt: Stamp | None
    lastValue: float | None
    lastSeenAt: Stamp
    details: dict[str, object]


class Alerts(Paged):
    """GET /v1/alerts."""

    open: int
    openByKind: dict[str, int]
    alerts: list[Alert]


class Day(_Out):
    """One UTC day of the fleet's energy (its whole hours inside the window)."""

    day: str = Field(json_schema_extra={"format": "date"})
    start: Stamp = Field(json_schema_extra={"format": "date-time"})
    end: Stamp = Field(json_schema_extra={"format": "date-time"})
    acKwh: float
    dcKwh: float
    efficiency: float | None
    efficiencyPercent: float | None
    meterReadings: int
    vehicleReadings: int


class FleetDaily(Fresh):
    """GET /v1/analytics/fleet/daily: Σ DC / Σ AC of the whole fleet per UTC day."""

    window: WindowOut
    days: list[Day]


class VehicleFound(_Out):
    """A vehicle whose id starts with the prefix."""

    vehicleId: str
    lastSeenAt: Stamp | None = Field(description="its newest reading; null: never reported")


class Vehicles(Paged):
    """GET /v1/vehicles."""

    prefix: str
    vehicles: list[VehicleFound]
