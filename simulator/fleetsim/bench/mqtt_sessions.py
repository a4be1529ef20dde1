"""Durable MQTT sessions for backlog-drain measurements.

A session created here (subscribed, then disconnected) makes the broker queue every matching
QoS 1 message for that client id; the subscriber under test then connects with the same id and
drains the backlog as fast as it can.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleetd.mqtt.subscriber import TOPIC_FILTERS


def create_session(
    mqtt_url: str, client_id: str, *, v5: bool, filters: tuple[str, ...] = TOPIC_FILTERS
) -> None:
    """Create (or keep) the durable session `client_id` subscribed to `filters` at QoS 1."""
    parts = urlsplit(mqtt_url)
    if v5:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    else:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 7 * 86400
        client.connect(
            parts.hostname or "127.0.0.1", parts.port or 1883, clean_start=False, properties=props
        )
    else:
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        client.subscribe([(f, 1) for f in filters])
        if not subscribed.wait(10):
            raise TimeoutError(f"could not subscribe {client_id}")
    finally:
        client.disconnect()
        client.loop_stop()


def drop_session(mqtt_url: str, client_id: str) -> None:
    """End the durable session `client_id` (a clean connect), so the broker stops queueing
    every later stage's messages for it."""
    parts = urlsplit(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        connected.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
