"""The fleet report's fast row builder gives exactly what the general one gives."""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fleetctl.energy import VehicleStats
from fleetctl.queries import _own_json, _row, _SimpleRows, _UnitEnergy
from fleetctl.units import Span, Unit
from fleetctl.window import Window

W = Window(
    datetime(2026, 11, 20, 8, 10, 30, tzinfo=UTC), datetime(2026, 11, 21, 8, 10, 30, tzinfo=UTC)
)


@pytest.mark.parametrize(
    ("ac", "dc", "own"),
    [
        ("120.123456", "104.5", (104_500_000, 36000.5, 1440, 18.5, 41.25, 22.0, 91.5)),
        ("120", "97", (97_000_000, 100.0, 4, 20.0, 30.0, 12.345, 50.0)),
        ("0.05", "0", None),
        ("0.1", "0.085", (85_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
        ("0.099999", "0.05", (50_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
        ("10", "11", (11_000_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
        ("7.000001", "5.25", (5_250_000, 25.0, 1, 25.0, 25.0, 40.0, 40.0)),
    ],
)
def test_simple_row_equals_general_row(ac: str, dc: str, own: VehicleStats | None) -> None:
    unit = Unit("M1", W.start, W.end, [Span("V1", "M1", W.start, W.end)]).seal()
    energy = _UnitEnergy(Decimal(ac), Decimal(dc), 1000)
    general = _row("V1", [unit], [energy], _own_json(own), W, min_ac_kwh=0.1, interval_s=60)
    ac_u = int(Decimal(ac).scaleb(6))
    fast = _SimpleRows(W, min_ac_kwh=0.1, interval_s=60).row("V1", "M1", (ac_u, 1000), own)
    assert fast == general
    assert list(fast) == list(general)  # same key order in the JSON
    assert W.seconds == timedelta(days=1).total_seconds()


def test_float32_rounding_shortcut_equals_round() -> None:
    # _own_json rounds float32 sensor values with round(x * 100) / 100.
    rng = random.Random(7)
    values = [rng.uniform(-50, 150) for _ in range(200_000)]
    values += [k / 100 + 0.005 + d for k in range(-5000, 15001) for d in (-1e-6, 0.0, 1e-6)]
    for v in values:
        x = struct.unpack("f", struct.pack("f", v))[0]
        assert round(x * 100) / 100 == round(x, 2), x
