"""The query bench's windows and how its figures are printed against their targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetsim.bench.printing import query_lines
from fleetsim.bench.query_bench import across_midnight


def test_the_midnight_window_is_24_h_with_mid_hour_edges_and_a_midnight_in_the_middle() -> None:
    end = datetime(2026, 12, 3, 11, 42, 30, tzinfo=UTC)
    w = across_midnight(end)
    assert w.end - w.start == timedelta(hours=24)
    assert w.end <= end
    assert w.start.minute == w.end.minute == 13
    midnight = w.start + timedelta(hours=11, minutes=46, seconds=30)
    assert midnight == datetime(2026, 12, 2, tzinfo=UTC)


def test_timings_with_a_target_are_printed_as_a_ratio_of_it() -> None:
    timing = {"p50Ms": 150.0, "p99Ms": 200.0, "runs": 10.0}
    q = {
        "days": 1,
        "readings": 28_800_000,
        "timings": {
            "fleet report, 24 h ending now": {**timing, "targetMs": 300.0},
            "anomalies, 24 h ending now": timing,
        },
        "layout": {
            "hours": 6,
            "windows": {
                "5 h, mid-hour edges": {
                    "copy": {"p50Ms": 100.0},
                    "ingest": {"p50Ms": 110.0},
                    "ratio": 1.1,
                }
            },
        },
    }
    lines = query_lines(q)
    assert lines[1].endswith("150.0 / 200.0 ms  (0.50x of 300 ms)")
    assert lines[2].endswith("150.0 / 200.0 ms")
    assert lines[4].endswith("110.0 / 100.0 ms = 1.10x")
