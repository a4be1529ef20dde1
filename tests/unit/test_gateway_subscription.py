"""The gateway filter is optional (issue 26 upgrade): a broker refusing gateways/+/telemetry,
in a SUBACK or by closing the connection, leaves the device filters ingested; a refused device
filter stays a refusal. Over the fake socket of test_subscriber."""

from __future__ import annotations

import asyncio
import struct

import pytest
import structlog

from fleetd.mqtt import subscriber as subscriber_module
from fleetd.mqtt.subscriber import GATEWAY_CLOSES_TO_DROP, _Connection
from fleetsvc.mqtt import packets
from tests.unit.test_subscriber import CONNACK_OK, FakeTransport, Wire, publish

CONNACK_V5 = b"\x20\x03\x00\x00\x00"
GATEWAY = "gateways/+/telemetry"


def suback(packet_id: int, *codes: int, v5: bool = False, reason: bytes = b"") -> bytes:
    props = b""
    if v5:
        prop = b"\x1f" + struct.pack("!H", len(reason)) + reason if reason else b""
        props = packets.encode_varint(len(prop)) + prop
    body = struct.pack("!H", packet_id) + props + bytes(codes)
    return bytes([0x90]) + packets.encode_varint(len(body)) + body


def gateway_subscribe(*, v5: bool = False) -> bytes:
    return packets.subscribe_packet(2, (GATEWAY,), v5=v5)


async def test_the_gateway_filter_is_asked_for_once_the_device_filters_are_granted() -> None:
    wire = Wire()
    await wire.feed(CONNACK_OK)
    assert gateway_subscribe() not in wire.transport.written
    await wire.feed(suback(1, 1, 1))
    assert wire.sub.subscribed.is_set()
    assert wire.transport.written.endswith(gateway_subscribe())
    await wire.feed(suback(2, 1))
    assert wire.sub.refused_filters == {}
    assert not wire.conn.gateway_pending


async def test_a_refused_gateway_filter_warns_once_and_the_device_topics_flow() -> None:
    wire = Wire()
    with structlog.testing.capture_logs() as logs:
        await wire.feed(CONNACK_OK, suback(1, 1, 1), suback(2, 0x80))
        await wire.feed(publish(b"meters/M1/telemetry", b"{}", 1, 7))
        wire.sub._subscribe_gateway(wire.conn)  # asked again on this connection (_retry_gateway)
        await wire.feed(suback(2, 0x80))
    assert not wire.conn.failed
    assert not wire.transport.closed
    assert wire.sub.connected
    assert wire.sub.refusal is None
    assert wire.delivered == [("meters/M1/telemetry", b"{}", 7, 1)]
    assert wire.sub.refused_filters == {GATEWAY: "refused (0x80)"}
    (warning,) = [e for e in logs if e["event"] == "subscription_refused"]
    assert warning["log_level"] == "warning"
    assert warning["filter"] == GATEWAY
    assert warning["reason"] == "refused (0x80)"
    assert "gateways/+/telemetry" in warning["fix"]
    assert "FLEET_MQTT_GATEWAYS=off" in warning["fix"]
    assert warning["ingesting"] == ["meters/+/telemetry", "vehicles/+/telemetry"]


async def test_an_mqtt5_refusal_carries_the_brokers_reason_and_a_later_grant_clears_it() -> None:
    wire = Wire(v5=True)
    await wire.feed(CONNACK_V5, suback(1, 1, 1, v5=True))
    await wire.feed(suback(2, 0x87, v5=True, reason=b"ACL denies gateways"))
    assert wire.sub.refused_filters == {GATEWAY: "not authorised (0x87): ACL denies gateways"}
    wire.sub._subscribe_gateway(wire.conn)  # asked again after the ACL was fixed
    with structlog.testing.capture_logs() as logs:
        await wire.feed(suback(2, 1, v5=True))
    assert wire.sub.refused_filters == {}
    assert [e["event"] for e in logs] == ["subscription_granted"]


async def test_a_refused_device_filter_stays_a_refusal() -> None:
    wire = Wire()
    with structlog.testing.capture_logs() as logs:
        await wire.feed(CONNACK_OK, suback(1, 0x80, 1))
    assert wire.conn.failed
    assert wire.conn.refused is not None
    assert "meters/+/telemetry" in wire.conn.refused.fix
    assert not wire.sub.subscribed.is_set()
    assert gateway_subscribe() not in wire.transport.written
    assert [e["log_level"] for e in logs if e["event"] == "subscription_refused"] == ["error"]


async def test_gateways_off_asks_for_the_device_filters_only() -> None:
    wire = Wire(gateways=False)
    await wire.feed(CONNACK_OK, suback(1, 1, 1))
    assert wire.sub.topic_filters == ("meters/+/telemetry", "vehicles/+/telemetry")
    assert wire.sub.subscribed.is_set()
    assert gateway_subscribe() not in wire.transport.written


CONNACK_SESSION = b"\x20\x02\x01\x00"  # session present


def gateway_unsubscribe(*, v5: bool = False) -> bytes:
    return packets.unsubscribe_packet(3, (GATEWAY,), v5=v5)


async def test_gateways_off_unsubscribes_what_a_kept_session_subscribed_before() -> None:
    # A durable session keeps the gateway filter an earlier run with gateways on subscribed to:
    # off, fleetd drops it once the device filters are granted, on a resumed session only.
    wire = Wire(gateways=False)
    await wire.feed(CONNACK_SESSION)
    assert gateway_unsubscribe() not in wire.transport.written
    with structlog.testing.capture_logs() as logs:
        await wire.feed(suback(1, 1, 1), b"\xb0\x02\x00\x03")
    assert wire.transport.written.endswith(gateway_unsubscribe())
    assert gateway_subscribe() not in wire.transport.written
    (done,) = [e for e in logs if e["event"] == "gateway_filter_unsubscribed"]
    assert done["filter"] == GATEWAY
    assert not wire.transport.closed
    # A new session holds no subscription: nothing to drop.
    fresh = Wire(gateways=False)
    await fresh.feed(CONNACK_OK, suback(1, 1, 1))
    assert gateway_unsubscribe() not in fresh.transport.written
    # Gateways on never unsubscribe.
    on = Wire()
    await on.feed(CONNACK_SESSION, suback(1, 1, 1))
    assert gateway_unsubscribe() not in on.transport.written


async def test_an_unsubscribe_refused_in_mqtt5_warns_and_ingest_goes_on() -> None:
    wire = Wire(v5=True, gateways=False)
    with structlog.testing.capture_logs() as logs:
        await wire.feed(b"\x20\x03\x01\x00\x00", suback(1, 1, 1, v5=True))
        assert wire.transport.written.endswith(gateway_unsubscribe(v5=True))
        await wire.feed(
            b"\xb0\x04\x00\x03\x00\x87",
            packets.publish_packet("meters/M1/telemetry", b"{}", packet_id=7, v5=True),
        )
    (warning,) = [e for e in logs if e["event"] == "unsubscribe_refused"]
    assert warning["log_level"] == "warning"
    assert warning["reason"] == "not authorised (0x87)"
    assert "rejects" in warning["effect"]
    assert wire.delivered == [("meters/M1/telemetry", b"{}", 7, 1)]
    assert wire.sub.connected
    assert not wire.transport.closed


def _reconnect(wire: Wire, generation: int) -> None:
    wire.conn = _Connection(wire.sub, generation, v5=False)
    wire.transport = FakeTransport()
    wire.conn.connection_made(wire.transport)
    wire.sub._conn = wire.conn


async def test_a_broker_closing_at_the_gateway_subscribe_twice_gets_no_more_of_it() -> None:
    wire = Wire()
    with structlog.testing.capture_logs() as logs:
        for n in range(GATEWAY_CLOSES_TO_DROP):
            if n:
                _reconnect(wire, n + 1)
            await wire.feed(CONNACK_OK, suback(1, 1, 1))
            assert wire.conn.gateway_pending
            wire.conn.connection_lost(None)  # what RabbitMQ 3.10 answers a refused filter with
            wire.sub._gateway_after_loss(wire.conn)
        _reconnect(wire, 9)
        await wire.feed(CONNACK_OK, suback(1, 1, 1))
    assert gateway_subscribe() not in wire.transport.written
    assert wire.sub.subscribed.is_set()
    assert "closed the connection" in wire.sub.refused_filters[GATEWAY]
    events = [e["event"] for e in logs if e["event"] != "broker_disconnected"]
    assert events == ["broker_closed_at_subscribe", "subscription_refused"]
    refused = next(e for e in logs if e["event"] == "subscription_refused")
    assert "restart fleetd" in refused["fix"]


async def test_a_dead_link_or_a_broken_packet_is_no_refusal_of_the_gateway_filter() -> None:
    wire = Wire()
    await wire.feed(CONNACK_OK, suback(1, 1, 1))
    wire.conn.silent = True  # fleetd gave the link up (keepalive)
    wire.sub._gateway_after_loss(wire.conn)
    _reconnect(wire, 2)
    await wire.feed(CONNACK_OK, suback(1, 1, 1), b"\x32\x07\x00\x40a/b\x00\x08")
    assert wire.conn.protocol_error
    wire.sub._gateway_after_loss(wire.conn)
    _reconnect(wire, 3)
    await wire.feed(CONNACK_OK, suback(1, 1, 1), suback(2, 1))
    wire.sub._gateway_after_loss(wire.conn)  # lost after the gateway SUBACK: not its doing
    assert wire.sub._gateway_closes == 0
    assert wire.sub.refused_filters == {}


async def test_a_live_connection_asks_again_for_a_refused_gateway_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(subscriber_module, "GATEWAY_RETRY_S", 0.01)
    wire = Wire()
    await wire.feed(CONNACK_OK, suback(1, 1, 1), suback(2, 0x80))
    asked = wire.transport.written.count(gateway_subscribe())
    retry = asyncio.create_task(wire.sub._retry_gateway(wire.conn))
    await asyncio.sleep(0.05)
    assert wire.transport.written.count(gateway_subscribe()) == asked + 1  # one awaits its SUBACK
    await wire.feed(suback(2, 1))
    assert wire.sub.refused_filters == {}
    await asyncio.sleep(0.05)
    assert wire.transport.written.count(gateway_subscribe()) == asked + 1  # granted: no more
    retry.cancel()


async def test_a_session_taken_over_is_no_refusal_of_the_gateway_filter() -> None:
    wire = Wire(v5=True)
    for _ in range(GATEWAY_CLOSES_TO_DROP):
        await wire.feed(CONNACK_V5, suback(1, 1, 1, v5=True), b"\xe0\x01\x8e")
        assert wire.conn.taken_over
        wire.sub._gateway_after_loss(wire.conn)
        wire.conn = _Connection(wire.sub, 2, v5=True)
        wire.transport = FakeTransport()
        wire.conn.connection_made(wire.transport)
        wire.sub._conn = wire.conn
    assert wire.sub._gateway_closes == 0
    assert wire.sub.refused_filters == {}
