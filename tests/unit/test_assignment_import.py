"""Assignment imports are checked line by line before anything is written: each bad line gets
one message naming it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetctl.admin.assignment_import import AssignmentImportError, parse_csv, parse_json

HEADER = "vehicle_id,meter_id,valid_from,valid_to\n"


def test_a_good_file_with_and_without_valid_to() -> None:
    periods = parse_csv(
        HEADER
        + "VEHICLE-00001,METER-00001,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z\n"
        + "VEHICLE-00001,METER-00002,2026-11-02T00:00:00Z,\n"
        + "\n"
        + " VEHICLE-00002 , METER-00002 , 2026-11-01T00:00:00+01:00\n"
    )
    assert [(p.where, p.vehicle_id, p.meter_id, p.valid_to is None) for p in periods] == [
        ("line 2", "VEHICLE-00001", "METER-00001", False),
        ("line 3", "VEHICLE-00001", "METER-00002", True),
        ("line 5", "VEHICLE-00002", "METER-00002", True),
    ]
    assert periods[2].valid_from == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert len(parse_csv("vehicle_id,meter_id,valid_from\nV1,M1,2026-11-01T00:00:00Z\n")) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("vehicle,meter,from\n", "line 1: the header must be"),
        (HEADER + "V 1,M1,2026-11-01T00:00:00Z\n", "line 2: vehicle_id must match"),
        (HEADER + "V1,,2026-11-01T00:00:00Z\n", "line 2: meter_id must match"),
        (HEADER + "V1,M1,\n", "line 2: valid_from is required"),
        (HEADER + "V1,M1,yesterday\n", "line 2: "),
        (HEADER + "V1,M1,2026-11-01T00:00:00\n", "line 2: "),
        (HEADER + "V1,M1,2026-11-02T00:00:00Z,2026-11-01T00:00:00Z\n", "line 2: valid_to must be"),
        (HEADER + "V1,M1\n", "line 2: expected 4 columns, got 2"),
        (
            HEADER + "V1,M1,2026-11-01T00:00:00Z\nV1,M2,2026-11-05T00:00:00Z\n",
            "line 3: V1 from 2026-11-05T00:00:00Z overlaps line 2 (open-ended",
        ),
        (
            HEADER + "V1,M1,2026-11-01T00:00:00Z,2026-11-03T00:00:00Z\n"
            "V1,M2,2026-11-02T00:00:00Z,2026-11-04T00:00:00Z\n",
            "line 3: V1 from",
        ),
    ],
)
def test_a_bad_line_is_named(body: str, message: str) -> None:
    with pytest.raises(AssignmentImportError, match=message.replace("(", r"\(")):
        parse_csv(body)


def test_json_items_are_named() -> None:
    assert (
        len(parse_json([{"vehicleId": "V1", "meterId": "M1", "validFrom": "2026-11-01T00:00:00Z"}]))
        == 1
    )
    for body, message in (
        ({"vehicleId": "V1"}, "must be a JSON list"),
        (["V1"], "item 1: must be an object"),
        ([{"vehicleId": "V1", "meterId": "M1"}], "item 1: valid_from is required"),
    ):
        with pytest.raises(AssignmentImportError, match=message):
            parse_json(body)
