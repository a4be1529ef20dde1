"""A QoS 1 test publisher that proves the broker took every message: publish() raises unless
each one was PUBACKed, so a test that then counts stored readings can tell a broker's loss
(never acked) from ours (acked, yet not stored)."""

from __future__ import annotations

import threading
import time
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


class NotAckedError(AssertionError):
    """The broker did not PUBACK some messages in time."""


class AckedPublisher:
    """One MQTT 3.1.1 connection; at most `window` messages unacknowledged at once."""

    def __init__(self, url: str, client_id: str, *, window: int = 200) -> None:
        parts = urlsplit(url)
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311
        )
        if parts.username:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        self._client.max_inflight_messages_set(0)  # paho scans its list per ack: bound it here
        self._client.max_queued_messages_set(0)
        self._window = threading.BoundedSemaphore(window)
        self._client.on_publish = lambda *_a: self._window.release()
        connected = threading.Event()
        self._client.on_connect = lambda *_a: connected.set()
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._client.loop_start()
        if not connected.wait(10):
            self.close()
            raise TimeoutError(f"publisher could not connect to {parts.hostname}:{parts.port}")
        self.acked = 0

    def publish(self, messages: list[tuple[str, bytes]], timeout_s: float = 60) -> None:
        """Publish with QoS 1 and return once every message is PUBACKed; else NotAckedError."""
        infos = []
        for topic, payload in messages:
            if not self._window.acquire(timeout=timeout_s):
                raise NotAckedError(f"window stuck for {timeout_s:.0f} s")
            infos.append(self._client.publish(topic, payload, qos=1))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not all(i.is_published() for i in infos):
            time.sleep(0.01)  # (wait_for_publish raises while paho is reconnecting)
        missing = sum(not i.is_published() for i in infos)
        self.acked += len(infos) - missing
        if missing:
            raise NotAckedError(f"{missing} of {len(infos)} messages not PUBACKed")

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
