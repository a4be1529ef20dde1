"""The closed-day cache of /v1/analytics/fleet/daily: fresh entries answer, stale ones and the
oldest past the bound do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetctl.analytics import daily
from fleetctl.analytics.daily import DayCache

DAY = datetime(2026, 12, 1, tzinfo=UTC)


def _key(i: int) -> tuple[daily.Kind, datetime, datetime]:
    return ("meter", DAY + timedelta(days=i), DAY + timedelta(days=i + 1))


def test_a_fresh_entry_answers_a_stale_one_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(daily.time, "monotonic", lambda: now[0])
    cache = DayCache(ttl_s=600)
    cache.put(_key(0), daily._Day(5_000_000, 3))
    hit = cache.get(_key(0))
    assert hit is not None
    assert (hit.kwh_u, hit.readings) == (5_000_000, 3)
    assert cache.get(_key(1)) is None
    now[0] += 601
    assert cache.get(_key(0)) is None


def test_the_oldest_entries_go_past_the_bound() -> None:
    cache = DayCache(max_entries=3)
    for i in range(5):
        cache.put(_key(i), daily._Day(i, i))
    assert [cache.get(_key(i)) is not None for i in range(5)] == [False, False, True, True, True]


def test_an_entry_is_a_copy() -> None:
    cache = DayCache()
    day = daily._Day(1, 1)
    cache.put(_key(0), day)
    day.kwh_u += 10  # the caller adds late readings to its own object afterwards
    hit = cache.get(_key(0))
    assert hit is not None
    assert hit.kwh_u == 1
