"""Pure analytics rules: metering units, status thresholds, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fleetctl.analytics.status import classify
from fleetctl.analytics.units import Span, build_units
from fleetctl.analytics.window import InvalidWindowError, Window

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
H = timedelta(hours=1)


def test_units_share_only_when_periods_overlap() -> None:
    spans = [
        Span("V1", "M1", T0, T0 + 2 * H),
        Span("V2", "M1", T0 + H, T0 + 3 * H),  # overlaps V1: one shared unit
        Span("V3", "M2", T0, T0 + H),
        Span("V4", "M2", T0 + H, T0 + 2 * H),  # only touches V3: not shared
        Span("V5", "M3", T0, T0 + 3 * H),
    ]
    units = build_units(spans)
    assert [(u.meter, u.vehicles, u.shared) for u in units] == [
        ("M1", ["V1", "V2"], True),
        ("M2", ["V3"], False),
        ("M2", ["V4"], False),
        ("M3", ["V5"], False),
    ]
    assert (units[0].start, units[0].end) == (T0, T0 + 3 * H)


@pytest.mark.parametrize(
    ("ac", "dc", "status"),
    [
        ("100", "85", "optimal"),
        ("100", "84.999", "degraded"),
        ("100", "75", "degraded"),
        ("100", "74.999", "critical"),
        ("100", "100", "optimal"),
        ("100", "100.001", "meter_error"),
        ("0.09", "0.05", "insufficient_data"),
        ("0", "0", "insufficient_data"),
    ],
)
def test_status_thresholds(ac: str, dc: str, status: str) -> None:
    assert classify(Decimal(ac), Decimal(dc))[0] == status


def test_no_assignment_is_insufficient_data() -> None:
    status, message, ratio = classify(Decimal(50), Decimal(45), assigned=False)
    assert (status, ratio) == ("insufficient_data", None)
    assert "no meter" in message


def test_windows() -> None:
    now = T0 + 10 * H
    assert Window.parse(now=now) == Window(now - 24 * H, now)
    assert Window.parse(hours=3, now=now) == Window(now - 3 * H, now)
    w = Window.parse(start="2026-11-20T08:00:00Z", end="2026-11-20T09:30:00+01:00")
    assert w == Window(T0, T0 + 0.5 * H)
    assert Window.parse(start="2026-11-20T08:00:00Z", hours=2) == Window(T0, T0 + 2 * H)
    with pytest.raises(InvalidWindowError, match="needs a UTC offset"):
        Window.parse(start="2026-11-20T08:00:00")
    with pytest.raises(InvalidWindowError, match="not after start"):
        Window.parse(start="2026-11-20T08:00:00Z", end="2026-11-20T08:00:00Z")
    with pytest.raises(InvalidWindowError, match="not both"):
        Window.parse(hours=1, start="2026-11-20T08:00:00Z", end="2026-11-20T09:00:00Z")
