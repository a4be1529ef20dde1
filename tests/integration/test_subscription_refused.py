"""An upgrade must not stop ingest (issue 26): a broker whose ACL grants fleetd only the device
topics (an ACL written before gateways/+/telemetry existed) refuses the gateway filter, in a
SUBACK (Mosquitto's dynamic security, NATS permissions, aedes) or by closing the connection
(RabbitMQ 3.10's topic permissions, aedes when its authorizer errs). fleetd keeps ingesting
the device topics, warns once per connection naming the filter, the reason and the fix, and
shows it in fleet_mqtt_subscription_refused and /healthz."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import structlog
from prometheus_client import generate_latest

from fleet_harness import AedesServer, MosquittoServer
from fleet_harness.mosquitto import find_dynsec_plugin
from fleet_harness.nats import NatsCluster, nats_unavailable
from fleet_harness.publish import Publisher, meter_message, readings
from fleet_harness.rabbitmq import RabbitMqServer, find_rabbitmq
from fleet_harness.rows import COUNT_SQL
from fleetd.mqtt import subscriber as subscriber_module
from fleetd.ops.http import health_response
from fleetd.service import Daemon
from fleetd.settings import Settings
from tests.conftest import running, total_readings, wait_for_count

pytestmark = pytest.mark.integration

GATEWAY = "gateways/+/telemetry"
DEVICES = ("meters/+/telemetry", "vehicles/+/telemetry")
PASSWORDS = {"fleetd": "pw-fleetd", "device": "pw-device", "admin": "pw-admin"}
# config/mosquitto.acl as it was before gateways: fleetd may read the device topics only.
PRE_UPGRADE_ACL = """pattern write meters/%u/telemetry
pattern write vehicles/%u/telemetry
user fleetd
topic read meters/+/telemetry
topic read vehicles/+/telemetry
user device
topic write meters/+/telemetry
topic write vehicles/+/telemetry
topic write gateways/+/telemetry
"""
# The same grants as dynamic security roles, which Mosquitto checks at SUBSCRIBE.
DYNSEC = {
    "fleetd": [("subscribePattern", f) for f in DEVICES],
    "device": [("publishClientSend", "#")],
    "admin": [
        ("publishClientSend", "$CONTROL/dynamic-security/#"),
        ("publishClientReceive", "$CONTROL/dynamic-security/#"),
        ("subscribePattern", "$CONTROL/dynamic-security/#"),
    ],
}
needs_dynsec = pytest.mark.skipif(
    find_dynsec_plugin() is None, reason="Mosquitto's dynamic security plugin is not installed"
)


def _own(settings: Settings, url: str, **changes: Any) -> Settings:
    return Settings.model_validate(settings.model_dump() | {"mqtt_url": url, **changes})


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def _gauge(daemon: Daemon) -> dict[str, float]:
    """fleet_mqtt_subscription_refused by filter, as /metrics shows it."""
    out = {}
    for line in generate_latest(daemon.metrics.registry).decode().splitlines():
        if line.startswith("fleet_mqtt_subscription_refused{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('filter="')[1].split('"')[0]] = float(value)
    return out


def _gateway_message(ts: datetime) -> tuple[str, bytes]:
    _, body = meter_message("METER-00900", ts, 0.5, 230.0)
    return "gateways/GW-0001/telemetry", json.dumps([json.loads(body)]).encode()


async def _publish(url: str, msgs: list[tuple[str, bytes]]) -> None:
    # A gateway message may have no subscriber (the filter refused): the broker drops it.
    pub = Publisher(url, "device", require_subscriber=False)
    try:
        await asyncio.to_thread(pub.publish, msgs)
    finally:
        pub.close()


async def _ingests_devices_without_gateways(
    daemon: Daemon, db: asyncpg.Connection, publish_url: str
) -> int:
    """Device readings published now are stored; the gateway's is not (nothing subscribed)."""
    msgs = readings(3, 3, 4, datetime.now(UTC) - timedelta(hours=1), timedelta(minutes=1))
    await _publish(publish_url, [*msgs, _gateway_message(datetime.now(UTC))])
    assert await wait_for_count(db, COUNT_SQL, len(msgs), timeout_s=30) == len(msgs)
    await asyncio.sleep(0.5)  # room for the gateway's reading, were it delivered
    assert await total_readings(db) == len(msgs)
    assert daemon.mqtt.connected
    return len(msgs)


def _assert_refused_shown(daemon: Daemon, reason: str) -> None:
    assert daemon.mqtt.refused_filters.keys() == {GATEWAY}
    assert reason in daemon.mqtt.refused_filters[GATEWAY]
    assert _gauge(daemon) == {DEVICES[0]: 0.0, DEVICES[1]: 0.0, GATEWAY: 1.0}
    status, body = health_response(daemon, ready=True)
    assert status == 200, body  # degraded, not unhealthy: the device topics are ingested
    assert body["subscriptions_refused"] == {GATEWAY: daemon.mqtt.refused_filters[GATEWAY]}


async def test_mosquitto_acl_file_of_before_gateways_grants_the_suback_and_ingest_goes_on(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """Mosquitto 2.0.11's acl_file does not check SUBSCRIBE (it filters each message): the
    pre-upgrade ACL grants all three filters and the gateway's messages are just not delivered."""
    with (
        MosquittoServer(users=PASSWORDS, acl=PRE_UPGRADE_ACL) as broker,
        structlog.testing.capture_logs() as logs,
    ):
        async with running(_own(settings, broker.url("fleetd"))) as daemon:
            await _ingests_devices_without_gateways(daemon, db, broker.url("device"))
            assert daemon.mqtt.refused_filters == {}
            assert set(_gauge(daemon).values()) == {0.0}
    assert not _events(logs, "subscription_refused")


@needs_dynsec
@pytest.mark.parametrize(
    ("protocol", "reason"), [("5", "not authorised (0x87)"), ("3.1.1", "0x80")]
)
async def test_mosquitto_refusing_the_gateway_filter_at_subscribe_leaves_device_ingest(
    settings: Settings, db: asyncpg.Connection, protocol: str, reason: str
) -> None:
    with (
        MosquittoServer(users=PASSWORDS, dynsec=DYNSEC) as broker,
        structlog.testing.capture_logs() as logs,
    ):
        own = _own(settings, broker.url("fleetd"), mqtt_protocol=protocol)
        async with running(own) as daemon:
            await _ingests_devices_without_gateways(daemon, db, broker.url("device"))
            _assert_refused_shown(daemon, reason)
    (warning,) = _events(logs, "subscription_refused")
    assert warning["log_level"] == "warning"
    assert warning["filter"] == GATEWAY
    assert reason in warning["reason"]
    assert "FLEET_MQTT_GATEWAYS=off" in warning["fix"]
    assert "read access to gateways/+/telemetry" in warning["fix"]
    assert not _events(logs, "broker_refused")
    assert len(_events(logs, "broker_connected")) == 1  # no reconnect


@needs_dynsec
async def test_a_gateway_grant_added_while_fleetd_runs_is_picked_up(
    settings: Settings, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriber_module, "GATEWAY_RETRY_S", 0.5)
    with (
        MosquittoServer(users=PASSWORDS, dynsec=DYNSEC) as broker,
        structlog.testing.capture_logs() as logs,
    ):
        async with running(_own(settings, broker.url("fleetd"))) as daemon:
            stored = await _ingests_devices_without_gateways(daemon, db, broker.url("device"))
            # The operator's fix, on the broker alone: no fleetd restart.
            login = ["-h", "127.0.0.1", "-p", str(broker.port), "-u", "admin", "-P", "pw-admin"]
            grant = ["dynsec", "addRoleACL", "fleetd", "subscribePattern", GATEWAY, "allow"]
            await asyncio.to_thread(
                subprocess.run,
                ["mosquitto_ctrl", *login, *grant],
                check=True,
                capture_output=True,
                timeout=10,
            )
            for _ in range(100):
                if not daemon.mqtt.refused_filters:
                    break
                await asyncio.sleep(0.1)
            assert daemon.mqtt.refused_filters == {}
            assert _gauge(daemon)[GATEWAY] == 0.0
            await _publish(broker.url("device"), [_gateway_message(datetime.now(UTC))])
            assert await wait_for_count(db, COUNT_SQL, stored + 1, timeout_s=30) == stored + 1
    assert len(_events(logs, "subscription_refused")) == 1  # the retries refused quietly
    assert len(_events(logs, "subscription_granted")) == 1
    # Dynamic security disconnects the clients of a changed role (DISCONNECT 0x98): the grant
    # reaches fleetd by its reconnect here; a broker that does not kick answers the next retry.
    assert len(_events(logs, "broker_connected")) <= 2


@needs_dynsec
async def test_gateways_off_asks_for_no_gateway_filter(
    settings: Settings, db: asyncpg.Connection
) -> None:
    with (
        MosquittoServer(users=PASSWORDS, dynsec=DYNSEC) as broker,
        structlog.testing.capture_logs() as logs,
    ):
        own = _own(settings, broker.url("fleetd"), mqtt_gateways="off")
        async with running(own) as daemon:
            await _ingests_devices_without_gateways(daemon, db, broker.url("device"))
            assert daemon.mqtt.refused_filters == {}
            assert _gauge(daemon) == {DEVICES[0]: 0.0, DEVICES[1]: 0.0}
    assert not _events(logs, "subscription_refused")


@pytest.mark.parametrize("refuse_by", ["suback", "close"])
async def test_aedes_refusing_the_gateway_filter_leaves_device_ingest(
    settings: Settings,
    db: asyncpg.Connection,
    refuse_by: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(subscriber_module, "_backoff_s", lambda attempt, first_s: 0.05)
    with (
        AedesServer(refuse_subscribe="gateways/", refuse_by=refuse_by) as aedes,  # type: ignore[arg-type]
        structlog.testing.capture_logs() as logs,
    ):
        async with running(_own(settings, aedes.url())) as daemon:
            if refuse_by == "close":
                for _ in range(100):  # ready (device SUBACK) comes before the closes
                    if daemon.mqtt.refused_filters:
                        break
                    await asyncio.sleep(0.1)
            await _ingests_devices_without_gateways(daemon, db, aedes.url())
            _assert_refused_shown(
                daemon, "0x80" if refuse_by == "suback" else "closed the connection"
            )
    (warning,) = _events(logs, "subscription_refused")
    assert warning["filter"] == GATEWAY
    if refuse_by == "close":
        assert warning["action"] == "subscribing without it until fleetd restarts"
        assert len(_events(logs, "broker_closed_at_subscribe")) == 1
        assert len(_events(logs, "broker_connected")) == 3  # two closed, the third stays
    else:
        assert len(_events(logs, "broker_connected")) == 1


@pytest.mark.skipif(find_rabbitmq() is None, reason="rabbitmq-server is not installed")
async def test_rabbitmq_topic_permissions_close_at_the_gateway_filter_and_ingest_goes_on(
    settings: Settings, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ 3.10 answers a SUBSCRIBE its topic permissions refuse by closing the connection
    ("MQTT protocol error … access_refused"), not with a SUBACK."""
    monkeypatch.setattr(subscriber_module, "_backoff_s", lambda attempt, first_s: 0.05)
    users = {"fleetd": PASSWORDS["fleetd"], "device": PASSWORDS["device"]}
    with (
        RabbitMqServer(users=users, topic_read={"fleetd": r"^(meters|vehicles)\."}) as rabbit,
        structlog.testing.capture_logs() as logs,
    ):
        async with running(_own(settings, rabbit.url("fleetd"))) as daemon:
            for _ in range(300):
                if daemon.mqtt.refused_filters:
                    break
                await asyncio.sleep(0.1)
            await _ingests_devices_without_gateways(daemon, db, rabbit.url("device"))
            _assert_refused_shown(daemon, "closed the connection")
    (warning,) = _events(logs, "subscription_refused")
    assert warning["filter"] == GATEWAY


@pytest.mark.skipif(nats_unavailable() is not None, reason=str(nats_unavailable()))
async def test_nats_permissions_refuse_the_gateway_filter_in_a_suback(
    settings: Settings, db: asyncpg.Connection
) -> None:
    # NATS subjects: MQTT's / is . and + is *. A QoS 1 subscription also needs $MQTT.sub.>
    # (the JetStream consumer's delivery subject, checked against the same permissions).
    allowed = ["meters.*.telemetry", "vehicles.*.telemetry", "$MQTT.sub.>"]
    users = {"fleetd": PASSWORDS["fleetd"], "device": PASSWORDS["device"]}
    with (
        NatsCluster(users=users, subscribe={"fleetd": allowed}) as cluster,
        structlog.testing.capture_logs() as logs,
    ):
        async with running(_own(settings, ",".join(cluster.urls("fleetd")))) as daemon:
            await _ingests_devices_without_gateways(daemon, db, cluster.urls("device")[0])
            _assert_refused_shown(daemon, "0x80")
    (warning,) = _events(logs, "subscription_refused")
    assert warning["filter"] == GATEWAY
    assert len(_events(logs, "broker_connected")) == 1
