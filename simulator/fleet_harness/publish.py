"""A simple, correct QoS 1 publisher for tests and the first demo (paho, one connection).

Not the fast path: the simulator has its own pipelined publisher for load.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode


def rfc3339(ts: datetime) -> str:
    """UTC RFC 3339 with millisecond precision and a Z suffix."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def meter_message(meter_id: str, ts: datetime, kwh: float, voltage: float) -> tuple[str, bytes]:
    """(topic, payload) of one meter reading."""
    body = {"meterId": meter_id, "kwhConsumedAc": kwh, "voltage": voltage, "timestamp": rfc3339(ts)}
    return f"meters/{meter_id}/telemetry", json.dumps(body).encode()


def vehicle_message(
    vehicle_id: str, ts: datetime, soc: float, kwh: float, temp: float
) -> tuple[str, bytes]:
    """(topic, payload) of one vehicle reading."""
    body = {
        "vehicleId": vehicle_id,
        "soc": soc,
        "kwhDeliveredDc": kwh,
        "batteryTemp": temp,
        "timestamp": rfc3339(ts),
    }
    return f"vehicles/{vehicle_id}/telemetry", json.dumps(body).encode()


def readings(
    meters: int, vehicles: int, per_device: int, start: datetime, interval: timedelta
) -> list[tuple[str, bytes]]:
    """Deterministic readings, interleaved by time: kwh and soc derive from the indices."""
    out: list[tuple[str, bytes]] = []
    for n in range(per_device):
        ts = start + n * interval
        for i in range(1, meters + 1):
            out.append(
                meter_message(f"METER-{i:05d}", ts, round(0.5 + (i % 7) * 0.1 + n * 1e-3, 6), 230.0)
            )
        for i in range(1, vehicles + 1):
            soc = min(100.0, 20 + n * 0.5)
            out.append(
                vehicle_message(f"VEHICLE-{i:05d}", ts, soc, round(0.45 + (i % 7) * 0.09, 6), 25.0)
            )
    return out


class PublishError(RuntimeError):
    """The broker did not take every message: says how many and why, so a test that finds
    readings missing knows whether the publisher or the broker side lost them."""


# MQTT 5 PUBACK reason 0x10: the broker accepted the message and had nobody to give it to
# (no subscription matched, not even an offline durable one): the message is gone.
NO_MATCHING_SUBSCRIBERS = 0x10


@dataclass
class PublishStats:
    """What the broker answered, counted on paho's network thread."""

    published: int = 0  # QoS 1 messages handed to paho
    acked: int = 0  # PUBACKs with a success reason (a subscriber, online or queued, exists)
    unrouted: int = 0  # PUBACK 0x10: no matching subscribers (MQTT 5 only)
    refused: int = 0  # PUBACK with an error reason (>= 0x80)
    disconnects: int = 0  # connections lost before close(); paho resends unacked messages


class Publisher:
    """Blocking QoS 1 publisher: publish() returns once the broker acked every message, and
    raises PublishError naming the count when it did not (no ack within `ack_timeout_s`, a
    refusal, or, with MQTT 5, a message no subscription matched).

    MQTT 5 is offered first because only its PUBACK says "no matching subscribers" (a reading
    published before any fleetd subscribed is acked and dropped: MQTT 3.1.1 cannot tell);
    a broker that only speaks 3.1.1 (aedes) gets a 3.1.1 connection instead.
    `require_subscriber=False` accepts unrouted messages (a test of the broker alone)."""

    def __init__(
        self,
        url: str,
        client_id: str = "",
        *,
        window: int = 1000,
        ack_timeout_s: float = 60.0,
        require_subscriber: bool = True,
    ) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 1883
        self._user = (
            (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        )
        self._client_id = client_id
        self._ack_timeout_s = ack_timeout_s
        self._require_subscriber = require_subscriber
        self._window_size = window
        self._window = threading.BoundedSemaphore(window)
        self._lock = threading.Lock()
        self._closing = False
        self.stats = PublishStats()
        self.protocol = "5"
        client = self._connect(MQTTProtocolVersion.MQTTv5)
        if client is None:
            self.protocol = "3.1.1"
            client = self._connect(MQTTProtocolVersion.MQTTv311)
        if client is None:
            raise TimeoutError(f"publisher could not connect to {self._host}:{self._port}")
        self._client: paho.Client = client

    def _connect(self, protocol: MQTTProtocolVersion) -> paho.Client | None:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=protocol
        )
        if self._user is not None:
            client.username_pw_set(*self._user)
        # paho scans its in-flight list on each PUBACK: keep its own limit off and bound the
        # outstanding messages here instead (a semaphore released in on_publish).
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_publish = self._on_publish
        answered = threading.Event()
        accepted = threading.Event()

        def on_connect(_c: object, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
            if not reason.is_failure:
                accepted.set()
            answered.set()

        def on_disconnect(_c: object, _u: object, _f: object, _r: object, _p: object) -> None:
            answered.set()  # a 3.1.1-only broker may hang up on an MQTT 5 CONNECT
            if accepted.is_set() and not self._closing:
                self.stats.disconnects += 1

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        try:
            client.connect(self._host, self._port)
        except (OSError, ValueError):
            # paho may fail to parse a 3.1.1 CONNACK as MQTT 5
            return None
        client.loop_start()
        answered.wait(10)
        if accepted.is_set():
            return client
        client.loop_stop()
        with contextlib.suppress(Exception):
            client.disconnect()
        return None

    def _on_publish(
        self, _c: object, _u: object, _mid: int, reason: ReasonCode, _p: object
    ) -> None:
        # paho calls this once per message (it pops the mid from its own in-flight map).
        with self._lock:
            code = reason.value
            if code == NO_MATCHING_SUBSCRIBERS:
                self.stats.unrouted += 1
            elif code >= 0x80:
                self.stats.refused += 1
            else:
                self.stats.acked += 1
        self._window.release()

    def publish(self, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> int:
        """Publish all messages and wait for their acks; returns the count. Raises
        PublishError when a message was not acked in time, refused, or (MQTT 5) had no
        subscriber, naming how many."""
        infos: list[paho.MQTTMessageInfo] = []
        before = (self.stats.unrouted, self.stats.refused)
        for topic, payload in messages:
            if qos and not self._window.acquire(timeout=self._ack_timeout_s):
                raise PublishError(self._shortfall(infos, f"window of {self._window_size} full"))
            # Not under self._lock: paho holds its own lock while it calls _on_publish.
            info = self._client.publish(topic, payload, qos=qos)
            if qos:
                self.stats.published += 1
            # NO_CONN: paho keeps the message and sends it when it has reconnected.
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                raise PublishError(
                    f"paho refused to publish to {topic}: {paho.error_string(info.rc)}"
                )
            infos.append(info)
        deadline = time.monotonic() + self._ack_timeout_s
        for info in infos:
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.005)
        if not all(info.is_published() for info in infos):
            raise PublishError(self._shortfall(infos, f"{self._ack_timeout_s:.0f} s passed"))
        unrouted = self.stats.unrouted - before[0]
        refused = self.stats.refused - before[1]
        if refused:
            raise PublishError(f"{refused} of {len(infos)} messages refused by the broker")
        if unrouted and self._require_subscriber:
            raise PublishError(
                f"{unrouted} of {len(infos)} messages acked with 'no matching subscribers' "
                "(PUBACK 0x10): nobody was subscribed, the broker dropped them"
            )
        return len(infos)

    def _shortfall(self, infos: list[paho.MQTTMessageInfo], why: str) -> str:
        missing = sum(1 for info in infos if not info.is_published())
        return (
            f"{missing} of {len(infos)} messages not acknowledged by the broker ({why}; "
            f"publisher disconnected {self.stats.disconnects} times)"
        )

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
