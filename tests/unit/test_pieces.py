"""How fleet reports split a window into rollup buckets and raw readings."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from fleetctl.analytics.pieces import open_ended, split
from fleetdb.rollups import ceil_to, floor_to

T = datetime(2026, 11, 30, 19, 42, 30, tzinfo=UTC)


def shape(start: datetime, end: datetime) -> list[tuple[str, str, str]]:
    return [
        (p.level.name if p.level else "raw", f"{p.start:%d %H:%M:%S}", f"{p.end:%d %H:%M:%S}")
        for p in split(start, end)
    ]


def test_24h_mid_hour_uses_every_level() -> None:
    assert shape(T, T + timedelta(days=1)) == [
        ("raw", "30 19:42:30", "30 19:50:00"),
        ("10min", "30 19:50:00", "30 20:00:00"),
        ("4h", "30 20:00:00", "01 16:00:00"),
        ("hourly", "01 16:00:00", "01 19:00:00"),
        ("10min", "01 19:00:00", "01 19:40:00"),
        ("raw", "01 19:40:00", "01 19:42:30"),
    ]


def test_window_ending_now_reads_the_current_block_whole() -> None:
    end = T + timedelta(days=1)
    assert open_ended(end) == datetime(2026, 12, 1, 20, tzinfo=UTC)
    assert shape(T, open_ended(end))[-1] == ("4h", "30 20:00:00", "01 20:00:00")


def test_short_windows_fall_to_finer_levels() -> None:
    assert shape(T, T + timedelta(minutes=5)) == [("raw", "30 19:42:30", "30 19:47:30")]
    assert shape(T, T + timedelta(minutes=30)) == [
        ("raw", "30 19:42:30", "30 19:50:00"),
        ("10min", "30 19:50:00", "30 20:10:00"),
        ("raw", "30 20:10:00", "30 20:12:30"),
    ]
    aligned = datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert shape(aligned, aligned + timedelta(hours=3)) == [
        ("hourly", "30 08:00:00", "30 11:00:00")
    ]


def test_pieces_tile_the_window_on_their_own_bucket_boundaries() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        start = T + timedelta(seconds=rng.randrange(-200_000, 200_000))
        end = start + timedelta(seconds=rng.randrange(1, 400_000))
        pieces = split(start, end)
        assert pieces[0].start == start
        assert pieces[-1].end == end
        for a, b in itertools.pairwise(pieces):
            assert a.end == b.start  # contiguous: nothing counted twice, nothing left out
            assert a.level != b.level
        for p in pieces:
            assert p.start < p.end
            if p.level is not None:
                assert floor_to(p.start, p.level.width) == p.start
                assert ceil_to(p.end, p.level.width) == p.end
            elif len(pieces) > 1:  # an edge: less than one 10-minute bucket
                assert p.end - p.start < timedelta(minutes=10)
            else:  # no whole 10-minute bucket inside the window
                assert p.end - p.start < timedelta(minutes=20)
        assert sum(1 for p in pieces if p.level is None) <= 2


def test_each_level_stops_at_its_watermark_and_finer_levels_cover_the_rest() -> None:
    # Watermarks as fleetd's fold leaves them at 01 19:43 (fleetdb.fold): buckets before them
    # are complete, later ones are read one level finer, down to raw readings.
    folded = {
        "10min": datetime(2026, 12, 1, 19, 40, tzinfo=UTC),
        "hourly": datetime(2026, 12, 1, 19, tzinfo=UTC),
        "4h": datetime(2026, 12, 1, 16, tzinfo=UTC),
    }
    end = T + timedelta(days=1)
    got = [
        (p.level.name if p.level else "raw", f"{p.start:%d %H:%M}", f"{p.end:%d %H:%M}")
        for p in split(T, open_ended(end), folded=folded)
    ]
    assert got == [
        ("raw", "30 19:42", "30 19:50"),
        ("10min", "30 19:50", "30 20:00"),
        ("4h", "30 20:00", "01 16:00"),
        ("hourly", "01 16:00", "01 19:00"),
        ("10min", "01 19:00", "01 19:40"),
        ("raw", "01 19:40", "01 20:00"),
    ]
    # Far behind (a fold that has not run for days): every piece after it is raw.
    behind = {name: datetime(2026, 11, 30, tzinfo=UTC) for name in folded}
    assert [p.level for p in split(T, end, folded=behind)] == [None]
