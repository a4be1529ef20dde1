"""Report rows: the fleet report's whole-window path gives exactly what the general path gives,
and a row's JSON has its keys in the documented order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fleetctl.analytics.energy import VehicleStats
from fleetctl.analytics.fleet import (
    _own_dc,
    _single_span_figures,
    single_span_figures,
    whole_window_figures,
)
from fleetctl.analytics.rows import RowContext, build_row, expected_readings
from fleetctl.analytics.unit_energy import UnitEnergy, figures_of_units, general_figures
from fleetctl.analytics.units import Span, Unit
from fleetctl.analytics.window import Window

W = Window(
    datetime(2026, 11, 20, 8, 10, 30, tzinfo=UTC), datetime(2026, 11, 21, 8, 10, 30, tzinfo=UTC)
)
KEYS = [
    "vehicleId",
    "meters",
    "totalAcKwh",
    "totalDcKwh",
    "lossKwh",
    "efficiency",
    "efficiencyPercent",
    "status",
    "message",
    "meterShared",
    "sharedWith",
    "vehicleDcKwh",
    "assignedSeconds",
    "batteryTemp",
    "soc",
    "readings",
    "expectedReadings",
    "coveragePercent",
]


@pytest.mark.parametrize(
    ("ac", "dc", "own"),
    [
        ("120.123456", "104.5", VehicleStats(104_500_000, 36000.5, 1440, 18.5, 41.25, 22.0, 91.5)),
        ("120", "97", VehicleStats(97_000_000, 100.0, 4, 20.0, 30.0, 12.345, 50.0)),
        ("0.05", "0", None),
        ("0.1", "0.085", VehicleStats(85_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
        ("0.099999", "0.05", VehicleStats(50_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
        ("10", "11", VehicleStats(11_000_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
        ("7.000001", "5.25", VehicleStats(5_250_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
    ],
)
def test_whole_window_row_equals_general_row(ac: str, dc: str, own: VehicleStats | None) -> None:
    ctx = RowContext.of(W, min_ac_kwh=0.1, interval_s=60)
    unit = Unit("M1", W.start, W.end, [Span("V1", "M1", W.start, W.end)]).seal()
    energy = UnitEnergy(Decimal(ac), Decimal(dc), 1000)
    general = build_row(figures_of_units("V1", [unit], [energy], own, interval_s=60), ctx)
    ac_u = int(Decimal(ac).scaleb(6))
    fast = build_row(whole_window_figures("V1", "M1", (ac_u, 1000), own, window=W, ctx=ctx), ctx)
    assert fast == general
    assert list(fast) == KEYS


@pytest.mark.parametrize(
    ("ac", "dc", "own"),
    [
        ("80.123456", "70.5", VehicleStats(70_500_000, 36000.5, 1000, 18.5, 41.25, 22.0, 91.5)),
        ("0.05", "0", None),
        ("10", "11", VehicleStats(11_000_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
    ],
)
def test_one_span_row_equals_general_row(ac: str, dc: str, own: VehicleStats | None) -> None:
    """A vehicle assigned inside the window (a span shorter than it, its meter not shared)."""
    ctx = RowContext.of(W, min_ac_kwh=0.1, interval_s=60)
    start = datetime(2026, 11, 20, 11, 42, 30, tzinfo=UTC)
    unit = Unit("M1", start, W.end, [Span("V1", "M1", start, W.end)]).seal()
    energy = UnitEnergy(Decimal(ac), Decimal(dc), 1000)
    fast = build_row(figures_of_units("V1", [unit], [energy], own, interval_s=60), ctx)
    general = build_row(general_figures("V1", [unit], [energy], own, interval_s=60), ctx)
    assert fast == general
    assert list(fast) == KEYS


@pytest.mark.parametrize(
    ("ac", "dc", "own"),
    [
        ("80.123456", "70.5", VehicleStats(70_500_000, 36000.5, 1000, 18.5, 41.25, 22.0, 91.5)),
        ("0.05", "0", None),
        ("10", "11", VehicleStats(11_000_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
        ("0.1", "0.085", VehicleStats(85_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
    ],
)
def test_single_span_row_equals_general_row(ac: str, dc: str, own: VehicleStats | None) -> None:
    """A 1:1 span on common bounds (FleetSpans.single): the fleet-wide path's row is the
    general path's, when the vehicle's DC over the window is the span's."""
    ctx = RowContext.of(W, min_ac_kwh=0.1, interval_s=60)
    start = datetime(2026, 11, 20, 11, 42, 30, tzinfo=UTC)
    span = Window(start, W.end)
    unit = Unit("M1", start, W.end, [Span("V1", "M1", start, W.end)]).seal()
    energy = UnitEnergy(Decimal(ac), Decimal(dc), 1000)
    general = build_row(general_figures("V1", [unit], [energy], own, interval_s=60), ctx)
    ac_u = int(Decimal(ac).scaleb(6))
    expected = expected_readings(span.seconds, 60)
    fast = single_span_figures("V1", "M1", (ac_u, 1000), own, span=span, expected_meter=expected)
    assert build_row(fast, ctx) == general
    assert list(build_row(fast, ctx)) == KEYS


def test_single_spans_whose_vehicles_read_outside_them_take_the_general_path() -> None:
    """A vehicle's DC over the window is its span's only when the span holds its first and
    last readings of the window; without those timestamps (compacted days) it is not known."""
    start = datetime(2026, 11, 20, 11, 42, 30, tzinfo=UTC)
    inside, before = start + timedelta(seconds=30), start - timedelta(seconds=30)
    stats = VehicleStats(1_000_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)
    own = {
        "IN": stats._replace(first_ts=inside, last_ts=W.end - timedelta(microseconds=1)),
        "EARLY": stats._replace(first_ts=before, last_ts=inside),
        "LATE": stats._replace(first_ts=inside, last_ts=W.end),
        "COLD": stats,
    }
    pairs = {v: f"M-{v}" for v in [*own, "NONE"]}
    single = _single_span_figures({(start, W.end): pairs}, {("meter", start, W.end): {}}, 60)
    done, late = _own_dc(single, own)
    assert {f.vehicle_id: f.dc_u for f in done} == {"IN": 1_000_000, "NONE": 0}
    assert [f.own for f in done] == [own["IN"], None]
    assert late == [Span(v, f"M-{v}", start, W.end) for v in ("EARLY", "LATE", "COLD")]


def test_a_vehicle_without_assignment_is_insufficient_data_with_its_own_readings() -> None:
    ctx = RowContext.of(W, min_ac_kwh=0.1, interval_s=60)
    own = VehicleStats(2_000_000, 50.0, 2, 24.994, 25.006, 40.0, 41.0)
    row = build_row(figures_of_units("V9", [], [], own, interval_s=60), ctx)
    assert row["status"] == "insufficient_data"
    assert row["message"] == "Vehicle has no meter assigned in the window"
    assert (row["totalAcKwh"], row["vehicleDcKwh"], row["efficiency"]) == (0.0, 2.0, None)
    assert row["batteryTemp"] == {"avg": 25.0, "min": 24.99, "max": 25.01}
    assert row["coveragePercent"] == {"vehicle": 0.14, "meter": None}
