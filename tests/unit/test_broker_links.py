"""The subscriber against scripted broker nodes on loopback: a list of nodes rotated through
with one growing backoff, protocol negotiation that a node in trouble cannot spoil, a client-id
clash named, and a silent link noticed within 1.5 x keepalive (but not while we paused reading
and the peer's TCP stack still acknowledges)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from fleet_harness import free_port
from fleetd.mqtt import liveness
from fleetd.mqtt import subscriber as subscriber_module
from fleetd.mqtt.subscriber import MqttSubscriber, split_urls
from tests.fake_broker import Answer, ScriptedNode


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Reconnect after 10 ms whatever the attempt; the attempts are recorded."""
    seen: list[int] = []

    def quick(attempt: int, first_s: float) -> float:
        seen.append(attempt)
        return 0.01

    monkeypatch.setattr(subscriber_module, "_backoff_s", quick)
    return seen


@contextlib.asynccontextmanager
async def _running(sub: MqttSubscriber) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sub.run())
    try:
        yield task
    finally:
        await sub.disconnect()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _always(answer: Answer) -> Callable[[int, int], Answer]:
    return lambda _level, _n: answer


async def test_a_refusal_from_every_node_waits_for_the_operator_slowly(
    backoffs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    slow: list[int] = []

    def recorded(rounds: int) -> float:
        slow.append(rounds)
        return 0.01

    monkeypatch.setattr(subscriber_module, "refused_backoff_s", recorded)
    fixed = False
    async with (
        ScriptedNode(lambda _l, _n: "accept" if fixed else "deny").serving() as a,
        ScriptedNode(lambda _l, _n: "accept" if fixed else "deny").serving() as b,
    ):
        sub = MqttSubscriber(url=[a.url, b.url], client_id="c", on_message=lambda *_: None)
        with structlog.testing.capture_logs() as logs:
            async with _running(sub):
                await _until(lambda: len(slow) >= 3)
                assert sub.refusal is not None
                assert "check the user and password in FLEET_MQTT_URL" in sub.refusal
                assert "s3cret" not in (sub.last_error or "")
                fixed = True  # the operator fixed the password file: picked up by itself
                await _until(sub.subscribed.is_set)
                assert sub.refusal is None
    # Node a alone refusing was not yet the operator's: the slow backoff began once b refused too.
    assert backoffs[:1] == [1]
    assert slow[:3] == [1, 1, 2]
    refused = _events(logs, "broker_refused")
    assert refused[0]["every_node"] is False
    assert refused[1]["every_node"] is True
    assert len(refused) == 2  # each node's first; then at most one a minute


async def test_one_refusing_node_is_passed_over(backoffs: list[int]) -> None:
    async with (
        ScriptedNode(_always("deny")).serving() as hiccup,
        ScriptedNode(_always("accept")).serving() as healthy,
    ):
        sub = MqttSubscriber(
            url=[hiccup.url, healthy.url], client_id="c", on_message=lambda *_: None
        )
        async with _running(sub):
            await _until(sub.subscribed.is_set)
            assert sub.refusal is None
            assert sub.last_error is None


def test_split_urls_takes_a_list_or_commas() -> None:
    assert split_urls("mqtt://a:1, mqtt://b:2,") == ("mqtt://a:1", "mqtt://b:2")
    assert split_urls(["mqtt://a:1"]) == ("mqtt://a:1",)


async def test_nodes_are_rotated_through_with_one_growing_backoff(backoffs: list[int]) -> None:
    dead = [f"mqtt://fleet:s3cret@127.0.0.1:{free_port()}" for _ in range(2)]
    async with ScriptedNode(_always("accept")).serving() as live:
        sub = MqttSubscriber(url=[*dead, live.url], client_id="c", on_message=lambda *_: None)
        with structlog.testing.capture_logs() as logs:
            async with _running(sub):
                await _until(sub.subscribed.is_set)
    assert live.connects == [5]
    assert backoffs[:2] == [1, 2]  # not reset when moving to the next node
    unavailable = _events(logs, "broker_unavailable")
    assert [e["url"] for e in unavailable[:2]] == [u.replace("s3cret", "***") for u in dead]
    assert "s3cret" not in repr(logs)


async def test_a_node_hanging_up_mid_election_does_not_downgrade_the_protocol(
    backoffs: list[int],
) -> None:
    async with (
        ScriptedNode(_always("hangup")).serving() as electing,
        ScriptedNode(_always("accept")).serving() as survivor,
    ):
        sub = MqttSubscriber(
            url=[electing.url, survivor.url], client_id="c", on_message=lambda *_: None
        )
        with structlog.testing.capture_logs() as logs:
            async with _running(sub):
                await _until(sub.subscribed.is_set)
                assert sub.protocol == "5"
    assert electing.connects == [5, 4]  # MQTT 5 hung up, 3.1.1 probed on the same node: too
    assert survivor.connects == [5]
    assert not _events(logs, "mqtt_protocol_fallback")


async def test_a_hang_up_then_311_accepted_falls_back_only_when_it_happens_twice(
    backoffs: list[int],
) -> None:
    # RabbitMQ < 3.13 hangs up on MQTT 5 and accepts 3.1.1; so may a node that finished its
    # election in between. One such answer puts one connection on 3.1.1, the second sticks.
    def v3_only(level: int, _n: int) -> Answer:
        return "hangup" if level == 5 else "close"

    async with ScriptedNode(v3_only).serving() as node:
        sub = MqttSubscriber(url=node.url, client_id="c", on_message=lambda *_: None)
        with structlog.testing.capture_logs() as logs:
            async with _running(sub):
                await _until(lambda: len(node.connects) >= 6)
    assert node.connects[:6] == [5, 4, 5, 4, 4, 4]
    fallbacks = _events(logs, "mqtt_protocol_fallback")
    assert fallbacks[0]["for_connections"] == 1
    assert "for_connections" not in fallbacks[1]


async def test_a_definitive_refusal_falls_back_at_once(backoffs: list[int]) -> None:
    def v3_only(level: int, _n: int) -> Answer:
        return "refuse" if level == 5 else "accept"

    async with ScriptedNode(v3_only).serving() as node:
        sub = MqttSubscriber(url=node.url, client_id="c", on_message=lambda *_: None)
        async with _running(sub):
            await _until(sub.subscribed.is_set)
            assert sub.protocol == "3.1.1"
    assert node.connects == [5, 4]


async def test_connections_closed_right_after_connack_are_named_a_client_id_clash(
    backoffs: list[int],
) -> None:
    async with ScriptedNode(_always("close")).serving() as node:
        sub = MqttSubscriber(url=node.url, client_id="fleetd-twin", on_message=lambda *_: None)
        with structlog.testing.capture_logs() as logs:
            async with _running(sub):
                await _until(lambda: len(node.connects) >= liveness.CLASH_STREAK + 1)
    clash = _events(logs, "client_id_clash_suspected")
    assert clash
    assert clash[0]["client_id"] == "fleetd-twin"
    assert clash[0]["short_connections"] == liveness.CLASH_STREAK
    assert "FLEET_CLIENT_ID" in clash[0]["hint"]
    assert clash[0]["log_level"] == "error"


def test_clash_watch_needs_a_streak_of_short_hang_ups() -> None:
    watch = liveness.ClashWatch()
    assert not watch.ended(0.1, hung_up_by_broker=True)
    assert not watch.ended(0.1, hung_up_by_broker=True)
    assert not watch.ended(60.0, hung_up_by_broker=True)  # a long one breaks the streak
    assert not watch.ended(0.1, hung_up_by_broker=False)  # so does one we ended
    assert [watch.ended(0.2, hung_up_by_broker=True) for _ in range(3)] == [False, False, True]


async def test_a_mute_broker_is_silent_past_the_pingresp_deadline_and_dropped_in_time() -> None:
    keepalive_s = 2
    async with ScriptedNode(_always("mute")).serving() as node:
        sub = MqttSubscriber(
            url=node.url, client_id="c", on_message=lambda *_: None, keepalive_s=keepalive_s
        )
        with structlog.testing.capture_logs() as logs:
            async with _running(sub):
                await _until(sub.subscribed.is_set)
                heard = time.monotonic()  # the SUBACK was the last packet
                assert sub.silent_s() is None
                await _until(lambda: sub.silent_s() is not None, 3)
                silent_at = time.monotonic() - heard
                await _until(lambda: not sub.connected, 3)
                dropped_at = time.monotonic() - heard
    # The first PINGREQ leaves at keepalive/2, its deadline is pingresp_wait_s later.
    assert silent_at <= keepalive_s / 2 + liveness.pingresp_wait_s(keepalive_s) + 0.3
    assert dropped_at <= 1.5 * keepalive_s + 0.3
    (silent,) = _events(logs, "broker_silent")
    assert silent["keepalive_s"] == keepalive_s
    assert silent["paused"] is False
    assert "s3cret" not in silent["url"]


async def test_while_paused_a_live_tcp_link_is_not_dropped() -> None:
    # The broker's PINGRESPs would wait unread behind its messages; the kernel's ACKs of our
    # PINGREQs show the link is alive. (A mute broker process with a live kernel stands in.)
    keepalive_s = 2
    async with ScriptedNode(_always("mute")).serving() as node:
        sub = MqttSubscriber(
            url=node.url, client_id="c", on_message=lambda *_: None, keepalive_s=keepalive_s
        )
        async with _running(sub):
            await _until(sub.subscribed.is_set)
            sub.pause()
            for _ in range(int(2 * 1.5 * keepalive_s / 0.1)):
                await asyncio.sleep(0.1)
                assert sub.connected
                assert sub.silent_s() is None
                assert sub.silence_s() < keepalive_s
            assert node.pings >= 4
            sub.resume()  # now the process's own silence counts again
            await _until(lambda: not sub.connected, 1.5 * keepalive_s + 0.5)
