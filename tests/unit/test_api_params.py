"""The /v1 parameter models (fleetctl.api.params): what a route takes, and the one-line 400 for
everything else: unknown names, the seeds' aliases, out-of-range numbers, windows and ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from multidict import MultiDict

from fleetctl.api.params import (
    ApiLimits,
    AssignmentsQuery,
    FleetQuery,
    PerformanceQuery,
    RejectsQuery,
    VehiclePath,
    parse,
)
from fleetctl.errors import InvalidRequestError

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LIMITS = ApiLimits()


def _refused(model: type, query: dict[str, str] | list[tuple[str, str]]) -> str:
    def check() -> None:
        parsed = parse(model, MultiDict(query))
        if hasattr(parsed, "window"):
            parsed.window(LIMITS, NOW)

    with pytest.raises(InvalidRequestError) as caught:
        check()
    message = str(caught.value)
    assert "\n" not in message
    return message


class TestRefused:
    """Each of these is a 400 whose one line names the parameter."""

    @pytest.mark.parametrize(
        ("query", "named"),
        [
            ({"hours": "1e9"}, "hours"),
            ({"hours": "inf"}, "hours"),
            ({"hours": "-inf"}, "hours"),
            ({"hours": "nan"}, "hours"),
            ({"hours": "-1"}, "hours"),
            ({"hours": "0"}, "hours"),
            ({"hours": "twelve"}, "hours"),
            ({"minAcKwh": "1e400"}, "minAcKwh"),
            ({"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z"}, "start"),
            ({"start": "2026-11-20"}, "start"),
            ({"start": "2026-11-20T08:00:00"}, "start"),
            ({"start": "1763625600"}, "start"),
            ({"meterId": "M\x00"}, "meterId"),
            ({"meterId": "M 1"}, "meterId"),
            ({"startDate": "2026-11-20T08:00:00Z", "start": "2026-11-20T08:00:00Z"}, "startDate"),
            (
                {"hours": "1", "start": "2026-11-20T08:00:00Z", "end": "2026-11-20T09:00:00Z"},
                "hours",
            ),
        ],
    )
    def test_bad_window_or_id(self, query: dict[str, str], named: str) -> None:
        assert named in _refused(PerformanceQuery, query)

    def test_unknown_names_are_named(self) -> None:
        message = _refused(PerformanceQuery, {"hours": "1", "from": "x", "vehicle": "V1"})
        assert message.startswith("unknown query parameters from, vehicle")

    def test_a_name_given_twice(self) -> None:
        assert "given more than once" in _refused(FleetQuery, [("limit", "1"), ("limit", "2")])

    def test_a_window_over_the_maximum(self) -> None:
        message = _refused(
            PerformanceQuery, {"start": "2026-01-01T00:00:00Z", "end": "2026-02-02T00:00:00Z"}
        )
        assert "maximum of 31 days" in message
        assert "hours" not in _refused(PerformanceQuery, {"hours": "745"}).split(":")[0]

    @pytest.mark.parametrize(
        ("model", "query"),
        [
            (FleetQuery, {"limit": "0"}),
            (FleetQuery, {"limit": "10001"}),
            (FleetQuery, {"chargers": "yes"}),
            (FleetQuery, {"sort": "worst"}),
            (FleetQuery, {"cursor": "x" * 3000}),
            (AssignmentsQuery, {"vehicleId": "V\x01"}),
            (AssignmentsQuery, {"open": "1"}),
            (RejectsQuery, {"limit": "1001"}),
            (RejectsQuery, {"since": "2026-13-01T00:00:00Z"}),
            (VehiclePath, {"vehicleId": "V" * 65}),
        ],
    )
    def test_other_routes(self, model: type, query: dict[str, str]) -> None:
        assert next(iter(query)) in _refused(model, query)


class TestAccepted:
    """What the routes take, and what it means."""

    def test_the_seeds_aliases_are_start_and_end(self) -> None:
        q = parse(
            PerformanceQuery,
            MultiDict(startDate="2026-11-19T00:00:00Z", endDate="2026-11-20T00:00:00+02:00"),
        )
        window = q.window(LIMITS, NOW)
        assert window.start == datetime(2026, 11, 19, tzinfo=UTC)
        assert window.end == datetime(2026, 11, 19, 22, tzinfo=UTC)

    def test_defaults_are_the_last_24_hours(self) -> None:
        window = parse(PerformanceQuery, MultiDict()).window(LIMITS, NOW)
        assert (window.start, window.end) == (NOW - timedelta(hours=24), NOW)

    def test_hours_from_start(self) -> None:
        q = parse(PerformanceQuery, MultiDict(start="2026-11-19T00:00:00Z", hours="2"))
        assert q.window(LIMITS, NOW).end == datetime(2026, 11, 19, 2, tzinfo=UTC)

    def test_the_maximum_is_a_setting(self) -> None:
        q = parse(PerformanceQuery, MultiDict(hours="1000"))
        assert q.window(ApiLimits(max_window_days=60), NOW).seconds == 1000 * 3600

    def test_empty_values_are_absent(self) -> None:
        q = parse(FleetQuery, MultiDict(hours="", limit="", sort="loss"))
        assert (q.hours, q.limit, q.sort) == (None, None, "loss")

    def test_meter_and_paging(self) -> None:
        assert parse(PerformanceQuery, MultiDict(meterId="METER-001")).meterId == "METER-001"
        q = parse(FleetQuery, MultiDict(limit="50", cursor="abc.def", chargers="true"))
        assert (q.limit, q.cursor, q.chargers) == (50, "abc.def", True)
