"""`fleetctl serve`'s /healthz verdict (fleetctl.api.server.HealthCache): the first callers
wait for the first check, later ones get the last verdict while at most one check runs, and the
database is asked at most once per HEALTH_CACHE_S whatever the number of callers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fleetctl.api import server
from fleetctl.api.server import HealthCache


class FakeApi:
    """AnalyticsApi's ping: counts calls; each waits for `gate` when one is set."""

    def __init__(self) -> None:
        self.pings = 0
        self.gate: asyncio.Event | None = None
        self.down = False
        self.broken = False

    async def ping(self) -> None:
        self.pings += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise OSError("connection refused")
        if self.broken:
            raise RuntimeError("an error no one foresaw")


def cache(api: FakeApi) -> HealthCache:
    return HealthCache(api)  # type: ignore[arg-type]


def decoded(answer: tuple[int, bytes]) -> tuple[int, Any]:
    return answer[0], json.loads(answer[1])


async def test_first_callers_wait_for_one_check() -> None:
    api = FakeApi()
    api.gate = asyncio.Event()
    health = cache(api)
    callers = [asyncio.create_task(health.answer()) for _ in range(50)]
    await asyncio.sleep(0.01)
    assert not any(c.done() for c in callers)
    api.gate.set()
    answers = await asyncio.gather(*callers)
    assert set(answers) == {(200, b'{"status":"ok"}\n')}
    assert api.pings == 1


async def test_stale_verdict_answered_while_the_next_check_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "HEALTH_CACHE_S", 0.05)
    api = FakeApi()
    health = cache(api)
    assert decoded(await health.answer()) == (200, {"status": "ok"})
    for _ in range(20):  # within the second: no new check
        await health.answer()
    assert api.pings == 1
    await asyncio.sleep(0.06)
    api.gate, api.down = asyncio.Event(), True
    # Past it: one check starts, and callers meanwhile get the last verdict at once.
    answers = [await health.answer() for _ in range(20)]
    assert {decoded(a)[0] for a in answers} == {200}
    await asyncio.sleep(0.01)  # the check reaches the (blocked) ping
    assert api.pings == 2
    api.gate.set()
    await asyncio.sleep(0.01)
    status, body = decoded(await health.answer())
    assert (status, body) == (503, {"status": "unhealthy", "reasons": ["database unreachable"]})
    assert api.pings == 2


async def test_an_unforeseen_error_of_the_check_is_a_503_not_the_last_ok_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "HEALTH_CACHE_S", 0.01)
    api = FakeApi()
    health = cache(api)
    assert decoded(await health.answer())[0] == 200
    api.broken = True
    await asyncio.sleep(0.02)
    await health.answer()  # starts the check in the background, answers the last verdict
    await asyncio.sleep(0.01)
    status, body = decoded(await health.answer())
    assert (status, body) == (503, {"status": "unhealthy", "reasons": ["health check failed"]})
