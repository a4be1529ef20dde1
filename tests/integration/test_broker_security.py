"""Broker security with the repo's ACL (config/mosquitto.acl) and password auth: devices write
only their own topic, read nothing; wrong passwords are refused; fleetd authenticates, stores
what devices send, and never logs a password."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import paho.mqtt.client as paho
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from fleet_harness import MosquittoServer
from fleet_harness.publish import Publisher, meter_message
from fleetd.settings import load_settings
from tests.conftest import running, wait_for_count

pytestmark = pytest.mark.integration

USERS = {"fleetd": "pw1-fleetd-secret", "METER-00001": "pw2", "METER-00002": "pw3"}
GATEWAY = "GATEWAY-0001"
# The block config/mosquitto.acl shows for each gateway, granted by name.
GATEWAY_ACL = f"user {GATEWAY}\ntopic write gateways/{GATEWAY}/telemetry\n"


@pytest.fixture
def secure_broker() -> Iterator[MosquittoServer]:
    with MosquittoServer(users=USERS) as server:
        yield server


class Client:
    """A paho MQTT 5 client that records CONNACK, SUBACK and received messages."""

    def __init__(self, broker: MosquittoServer, user: str, password: str | None = None) -> None:
        self.connack: ReasonCode | None = None
        self.suback: list[ReasonCode] = []
        self.received: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sec-{user}", protocol=paho.MQTTv5
        )
        known = USERS | {GATEWAY: "pw4"}
        self.client.username_pw_set(user, known.get(user) if password is None else password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.received.append(
            (msg.topic, bytes(msg.payload))
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self._connected.wait(10), "no CONNACK"

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connack = rc
        self._connected.set()

    def _on_subscribe(
        self, _c: object, _u: object, _mid: int, rcs: list[ReasonCode], _p: object
    ) -> None:
        self.suback = rcs
        self._subscribed.set()

    def subscribe(self, topic: str) -> list[ReasonCode]:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10), "no SUBACK"
        return self.suback

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _reading(device: str, topic_device: str | None = None) -> tuple[str, bytes]:
    _, payload = meter_message(device, datetime.now(UTC) - timedelta(seconds=5), 1.0, 230.0)
    return f"meters/{topic_device or device}/telemetry", payload


async def test_device_writes_only_its_own_topic(secure_broker: MosquittoServer) -> None:
    sub = Client(secure_broker, "fleetd")
    try:
        assert [rc.value for rc in sub.subscribe("meters/+/telemetry")] == [1]  # granted QoS 1
        dev = Client(secure_broker, "METER-00001")
        spoof_topic, spoof = _reading("METER-00002")
        own_topic, own = _reading("METER-00001")
        dev.publish(spoof_topic, spoof)  # as METER-00001, into METER-00002's topic
        dev.publish(own_topic, own)
        dev.close()
        for _ in range(50):
            if sub.received:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # room for a wrongly delivered message to show up
        assert sub.received == [(own_topic, own)]
    finally:
        sub.close()


async def test_wrong_password_is_refused(secure_broker: MosquittoServer) -> None:
    bad = Client(secure_broker, "METER-00001", password="wrong")
    bad.close()
    assert bad.connack is not None
    assert bad.connack.is_failure
    assert bad.connack.value in (134, 135)  # Bad user name or password / Not authorized
    unknown = Client(secure_broker, "METER-99999", password="x")
    unknown.close()
    assert unknown.connack is not None
    assert unknown.connack.is_failure
    good = Client(secure_broker, "METER-00002")
    good.close()
    assert good.connack is not None
    assert not good.connack.is_failure


async def test_device_cannot_read_telemetry(secure_broker: MosquittoServer) -> None:
    spy = Client(secure_broker, "METER-00001")
    try:
        codes: list[int] = []
        for topic in (
            "meters/+/telemetry",
            "meters/METER-00002/telemetry",
            "#",
            "$share/g/meters/+/telemetry",
        ):
            codes += [rc.value for rc in spy.subscribe(topic)]
        victim = Client(secure_broker, "METER-00002")
        topic, payload = _reading("METER-00002")
        victim.publish(topic, payload)
        victim.close()
        await asyncio.sleep(0.5)
        # Mosquitto may grant the SUBACK (2.0 checks read access per message) or refuse it
        # (0x80/0x87); either way nothing of another device's telemetry is delivered.
        assert all(c in (0, 1, 0x80, 0x87) for c in codes), codes
        assert spy.received == []
    finally:
        spy.close()


async def test_fleetd_authenticates_and_never_logs_password(
    secure_broker: MosquittoServer, database_url: str, db: asyncpg.Connection
) -> None:
    settings = load_settings(
        None,
        mqtt_url=secure_broker.url("fleetd"),
        database_url=database_url,
        client_id="fleetd-secure",
        flush_interval_ms=200,
    )
    assert USERS["fleetd"] in settings.mqtt_url
    with structlog.testing.capture_logs() as logs:
        async with running(settings):
            pub = Publisher(secure_broker.url("METER-00001"), client_id="METER-00001")
            await asyncio.to_thread(pub.publish, [_reading("METER-00001")])
            pub.close()
            n = await wait_for_count(db, "SELECT count(*) FROM meter_readings", 1, 20)
    assert n == 1
    assert await db.fetchval("SELECT meter_id FROM meter_current") == "METER-00001"
    assert any(e.get("event") == "broker_connected" for e in logs), logs
    assert USERS["fleetd"] not in repr(logs)
    assert "fleetd:***@" in repr(logs)


async def test_only_a_gateway_granted_by_name_publishes_on_its_own_gateway_topic() -> None:
    users = USERS | {GATEWAY: "pw4"}
    with MosquittoServer(users=users, acl_extra=GATEWAY_ACL) as broker:
        sub = Client(broker, "fleetd")
        try:
            assert [rc.value for rc in sub.subscribe("gateways/+/telemetry")] == [1]
            assert [rc.value for rc in sub.subscribe("meters/+/telemetry")] == [1]
            _, reading = _reading("METER-00002")
            device = Client(broker, "METER-00001")
            # A device's login is no gateway: not as itself, not as the granted gateway.
            device.publish("gateways/METER-00001/telemetry", reading)
            device.publish(f"gateways/{GATEWAY}/telemetry", reading)
            device.close()
            gateway = Client(broker, GATEWAY)
            gateway.publish("gateways/GATEWAY-0002/telemetry", reading)  # another gateway's
            gateway.publish("meters/METER-00002/telemetry", reading)  # a device's
            gateway.publish(f"gateways/{GATEWAY}/telemetry", reading)
            gateway.close()
            for _ in range(50):
                if sub.received:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # room for a wrongly delivered message to show up
            assert sub.received == [(f"gateways/{GATEWAY}/telemetry", reading)]
        finally:
            sub.close()
