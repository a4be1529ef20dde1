"""round_to(x, n) must be round(x, n) bit for bit, ties and signs included."""

from __future__ import annotations

import math
import random
import struct

import pytest

from fleetctl.rounding import round_to


def _float32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _cases(rng: random.Random, digits: int) -> list[float]:
    out = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, -2.5, 1e-300, 1e15, -1e15, 2.0**40, math.inf]
    for _ in range(20_000):
        out.append(rng.uniform(-1e3, 1e3))
        out.append(rng.uniform(0, 2))  # ratios
        out.append(_float32(rng.uniform(-40, 120)))  # sensor values
        out.append(rng.randint(0, 1500) * 100 / 1440)  # coverage
        # Decimal ties k + 1/2 at this precision, and the doubles right around them.
        tie = (rng.randint(-(10**6), 10**6) + 0.5) / 10**digits
        out += [tie, math.nextafter(tie, math.inf), math.nextafter(tie, -math.inf)]
        out.append(rng.randint(-(10**6), 10**6) / 10**digits)
        out.append(-rng.random() / 10**digits / 3)  # rounds to -0.0
    return out


@pytest.mark.parametrize("digits", [2, 3, 4, 6])
def test_equals_builtin_round(digits: int) -> None:
    rng = random.Random(digits)
    for x in _cases(rng, digits):
        got, want = round_to(x, digits), round(x, digits)
        assert struct.pack("d", got) == struct.pack("d", want), (x, digits, got, want)


def test_nan_stays_nan() -> None:
    assert math.isnan(round_to(math.nan, 2))
