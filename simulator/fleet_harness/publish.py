"""A simple, correct QoS 1 publisher for tests and the first demo (paho, one connection).

Not the fast path: the simulator has its own pipelined publisher for load.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


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


class Publisher:
    """Blocking QoS 1 publisher: publish() returns once the broker acked every message."""

    def __init__(self, url: str, client_id: str = "", *, window: int = 1000) -> None:
        parts = urlsplit(url)
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if parts.username:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        # paho scans its in-flight list on each PUBACK: keep its own limit off and bound the
        # outstanding messages here instead (a semaphore released in on_publish).
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._window = threading.BoundedSemaphore(window)
        self._client.on_publish = lambda *_a: self._window.release()
        self._connected = threading.Event()
        self._client.on_connect = lambda *_a: self._connected.set()
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("publisher could not connect")

    def publish(self, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> int:
        """Publish all messages and wait for their acks; returns the count."""
        infos = []
        for topic, payload in messages:
            if qos:
                self._window.acquire()
            infos.append(self._client.publish(topic, payload, qos=qos))
        for info in infos:
            info.wait_for_publish(timeout=60)
        return len(infos)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
