"""The fleet report's fast row builder gives exactly what the general one gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fleetctl.energy import Battery
from fleetctl.queries import _own_json, _row, _SimpleRows, _UnitEnergy
from fleetctl.units import Span, Unit
from fleetctl.window import Window

W = Window(
    datetime(2026, 11, 20, 8, 10, 30, tzinfo=UTC), datetime(2026, 11, 21, 8, 10, 30, tzinfo=UTC)
)


@pytest.mark.parametrize(
    ("ac", "dc", "bat"),
    [
        ("120.123456", "104.5", Battery(Decimal("104.5"), 36000.5, 1440, 18.5, 41.25, 22.0, 91.5)),
        ("120", "97", Battery(Decimal("97"), 100.0, 4, 20.0, 30.0, None, 50.0)),
        ("0.05", "0", None),
        ("10", "11", Battery(Decimal("11"), 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
    ],
)
def test_simple_row_equals_general_row(ac: str, dc: str, bat: Battery | None) -> None:
    unit = Unit("M1", W.start, W.end, [Span("V1", "M1", W.start, W.end)]).seal()
    energy = _UnitEnergy(Decimal(ac), Decimal(dc), 1000)
    general = _row("V1", [unit], [energy], _own_json(bat), W, min_ac_kwh=0.1, interval_s=60)
    fast = _SimpleRows(W, min_ac_kwh=0.1, interval_s=60).row("V1", "M1", energy, bat)
    assert fast == general
    assert list(fast) == list(general)  # same key order in the JSON
    assert W.seconds == timedelta(days=1).total_seconds()
