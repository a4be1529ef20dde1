"""fleetd.waiting: a lasting condition is logged when it begins, then at most once a minute;
a refusal is retried from 10 s, doubling, to 2 minutes."""

from __future__ import annotations

from fleetd.waiting import (
    REFUSED_BACKOFF_FIRST_S,
    REFUSED_BACKOFF_MAX_S,
    Reminder,
    refused_backoff_s,
)


def test_a_lasting_condition_is_logged_at_once_then_once_a_minute() -> None:
    reminder = Reminder(every_s=60.0)
    said = [t for t in range(0, 300, 2) if reminder.due(now=1000.0 + t)]
    assert said == [0, 60, 120, 180, 240]
    assert reminder.lasted_s(now=1299.0) == 299.0


def test_a_new_condition_after_recovery_is_logged_at_once() -> None:
    reminder = Reminder(every_s=60.0)
    assert reminder.due(now=0.0)
    assert not reminder.due(now=10.0)
    reminder.clear()
    assert reminder.lasted_s(now=11.0) == 0.0
    assert reminder.due(now=12.0)


def test_refusals_back_off_to_minutes() -> None:
    delays = [refused_backoff_s(attempt) for attempt in range(1, 12)]
    assert REFUSED_BACKOFF_FIRST_S * 0.8 <= delays[0] <= REFUSED_BACKOFF_FIRST_S
    assert all(d <= REFUSED_BACKOFF_MAX_S for d in delays)
    assert min(delays[5:]) >= REFUSED_BACKOFF_MAX_S * 0.8  # minutes from the 6th try on
