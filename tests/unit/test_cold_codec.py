"""The cold-tier block codec: exact round trips of any values, and corrupt bytes refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetdb.cold.codec import Block, CorruptBlockError, decode, encode


def _block(ts: list[int], recv: list[int], kwh: list[int], floats: list[list[float]]) -> Block:
    n = len(ts)
    devices = [f"D{i}" for i in range(n)]
    return Block(
        devices,
        np.ones(n, dtype=np.int64),
        np.asarray(ts, dtype=np.int64),
        np.asarray(recv, dtype=np.int64),
        np.asarray(kwh, dtype=np.int64),
        [np.asarray(f, dtype=np.float32) for f in floats],
    )


def _same(a: Block, b: Block) -> None:
    assert a.devices == b.devices
    for x, y in (
        (a.counts, b.counts),
        (a.ts_us, b.ts_us),
        (a.recv_s, b.recv_s),
        (a.kwh_u, b.kwh_u),
    ):
        assert np.array_equal(x, y)
    for x, y in zip(a.floats, b.floats, strict=True):
        assert np.array_equal(x.view(np.uint32), y.view(np.uint32))  # the float32 bits


def test_round_trip_of_awkward_values() -> None:
    b = _block(
        [0, 60_000_000, 5, 3_599_999_999],
        [1, 1, -2, 0],
        [10**12 - 1, 0, 7, 7],
        [[230.1, -0.0, 3.4e38, 0.1], [1.0, float("nan"), 1e-40, float("-inf")]],
    )
    _same(decode(encode(b)), b)
    _same(decode(encode(Block())), Block())


def test_values_at_their_decimal_scale_compress() -> None:
    n = 5000
    rng = np.random.default_rng(1)
    b = _block(
        list(range(0, n * 60_000_000, 60_000_000)),
        [1] * n,
        rng.integers(900, 1100, n).tolist(),
        [(np.round(rng.normal(230, 1, n), 1)).tolist()],
    )
    b.devices, b.counts = ["METER-00001"], np.asarray([n], dtype=np.int64)
    data = encode(b)
    _same(decode(data), b)
    assert len(data) / n < 3  # ~8 bits of kWh noise, ~5 of voltage, no timestamp entropy


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3_599_999_999),
            st.integers(-(2**31), 2**31),
            st.integers(0, 10**12),
            st.floats(width=32),
        ),
        max_size=40,
    )
)
def test_any_values_round_trip(rows: list[tuple[int, int, int, float]]) -> None:
    b = _block(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [[r[3] for r in rows]]
    )
    _same(decode(encode(b)), b)


def test_corrupt_bytes_are_refused() -> None:
    data = encode(_block([0, 1], [0, 0], [5, 6], [[1.5, 2.5]]))
    for bad in (b"", b"XYZ" + data[3:], data[:-3], data[:12] + b"\x00" * 20, data + b"\x00"):
        with pytest.raises(CorruptBlockError):
            decode(bad)
