"""/healthz tells a silent broker from the moment a PINGREQ goes unanswered, before fleetd gives
the connection up (a mute broker process stands in for a dead link here; test_netns_broker.py
cuts a real one); two clients sharing a client id on MQTT 3.1.1 are named as such."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog

from fleet_harness import MosquittoServer
from fleetd.mqtt import liveness
from fleetd.mqtt import subscriber as subscriber_module
from fleetd.mqtt.subscriber import MqttSubscriber
from fleetd.ops.health import check
from fleetd.settings import Settings
from tests.conftest import running
from tests.fake_broker import ScriptedNode

pytestmark = pytest.mark.integration


async def test_healthz_says_broker_silent_before_the_connection_is_given_up(
    settings: Settings,
) -> None:
    keepalive_s = 5
    async with ScriptedNode(lambda _level, _n: "mute").serving() as node:
        own = Settings.model_validate(
            settings.model_dump() | {"mqtt_url": node.url, "mqtt_keepalive_s": keepalive_s}
        )
        async with running(own) as daemon:
            heard = time.monotonic()  # ready = SUBACK received: the broker's last packet
            assert check(daemon).ok
            deadline = heard + keepalive_s / 2 + liveness.pingresp_wait_s(keepalive_s) + 0.5
            while check(daemon).ok:
                assert time.monotonic() < deadline, "still healthy past the PINGRESP deadline"
                await asyncio.sleep(0.05)
            health = check(daemon)
            assert daemon.mqtt.connected  # not given up yet, but no longer healthy
            (reason,) = health.reasons
            assert reason.startswith("broker silent for ")
            silence = health.details["broker_silence_s"]
            assert isinstance(silence, float)
            assert silence >= keepalive_s / 2
            assert "s3cret" not in str(health.details["broker_url"])
            while daemon.mqtt.connected:
                assert time.monotonic() < heard + 1.5 * keepalive_s + 0.5
                await asyncio.sleep(0.05)
            reasons = check(daemon).reasons
            assert any(r.startswith("broker disconnected") for r in reasons), reasons


async def test_two_clients_with_one_client_id_on_311_are_named_a_clash(
    broker: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MQTT 3.1.1 has no reason code: Mosquitto just closes the older connection each time.
    monkeypatch.setattr(subscriber_module, "_backoff_s", lambda attempt, first_s: 0.05)
    twins = [
        MqttSubscriber(
            url=broker.url(),
            client_id="fleetd-twin",
            on_message=lambda *_: None,
            protocol="3.1.1",
        )
        for _ in range(2)
    ]
    with structlog.testing.capture_logs() as logs:
        tasks = [asyncio.create_task(t.run()) for t in twins]
        try:
            deadline = time.monotonic() + 20
            while not any(e["event"] == "client_id_clash_suspected" for e in logs):
                assert time.monotonic() < deadline, "no clash reported"
                await asyncio.sleep(0.05)
        finally:
            for twin in twins:
                await twin.disconnect()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    clash = next(e for e in logs if e["event"] == "client_id_clash_suspected")
    assert clash["client_id"] == "fleetd-twin"
    assert "FLEET_CLIENT_ID" in clash["hint"]
