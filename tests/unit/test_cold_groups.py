"""Device groups sized by fleet size (fleetdb.cold.groups)."""

from __future__ import annotations

import zlib

import numpy as np

from fleetdb.cold.blocks import encode_all, split_groups
from fleetdb.cold.codec import Block, decode
from fleetdb.cold.groups import LEGACY_GROUPS, MAX_GROUPS, group_of, groups_for


def test_groups_by_readings_per_day() -> None:
    per_day = 24 * 60  # a device reading once a minute
    assert groups_for(0) == 1
    assert groups_for(60 * per_day) == 1  # 3,600 readings an hour: one block
    assert groups_for(1_000 * per_day) == 8  # 60,000 an hour: 7,500 per block
    assert groups_for(10_000 * per_day) == LEGACY_GROUPS  # the layout of before, unchanged
    assert groups_for(20_000 * per_day) == 128
    assert groups_for(10**12) == MAX_GROUPS


def test_group_of_is_crc32_modulo_the_count() -> None:
    # The legacy layout (64 groups, no row in fleet_cold_groups) must stay what it was.
    for dev in ("METER-00001", "VEHICLE-04242", "J1"):
        assert group_of(dev, LEGACY_GROUPS) == zlib.crc32(dev.encode()) % 64
        assert group_of(dev, 1) == 0


def test_split_groups_keeps_every_reading_in_its_group() -> None:
    devices = [f"VEHICLE-{i:05d}" for i in range(40)]
    counts = np.arange(1, 41, dtype=np.int64)
    n = int(counts.sum())
    whole = Block(
        devices,
        counts,
        np.arange(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.arange(n, dtype=np.int64) * 7,
        [np.arange(n, dtype=np.float32)],
    )
    for groups in (1, 4, 64):
        parts = split_groups(whole, groups)
        encoded = encode_all(parts, groups)
        assert sum(r for _, r, _ in encoded) == n
        for grp, readings, body in encoded:
            b = decode(body)
            assert len(b) == readings
            assert {group_of(d, groups) for d in b.devices} == {grp}
            assert b.devices == sorted(b.devices)
