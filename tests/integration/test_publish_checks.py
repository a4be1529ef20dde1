"""The test publisher names a loss on its side of the broker (issue 22): messages nobody was
subscribed to, and PUBACKs that never come, raise PublishError with the count; the broker's
log, read by fleet_harness.broker_log, shows the same from the broker's side."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet_harness import MosquittoServer
from fleet_harness.broker_log import tally
from fleet_harness.publish import Publisher, PublishError, meter_message

pytestmark = pytest.mark.integration


def _msgs(n: int) -> list[tuple[str, bytes]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        meter_message("METER-00001", start + timedelta(minutes=i), 1.0, 230.0) for i in range(n)
    ]


def test_messages_published_before_anyone_subscribed_are_named() -> None:
    with MosquittoServer(extra_conf="log_type all") as broker:
        pub = Publisher(broker.url(), "early")
        try:
            assert pub.protocol == "5"
            with pytest.raises(PublishError, match="5 of 5 messages acked with 'no matching"):
                pub.publish(_msgs(5))
            sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="late")
            subscribed = threading.Event()
            sub.on_subscribe = lambda *_a: subscribed.set()
            sub.connect("127.0.0.1", broker.port)
            sub.loop_start()
            try:
                sub.subscribe("meters/+/telemetry", qos=1)
                assert subscribed.wait(10)  # the SUBACK: from now on the broker routes to it
                assert pub.publish(_msgs(3)) == 3
            finally:
                sub.disconnect()
                sub.loop_stop()
        finally:
            pub.close()
        assert (pub.stats.acked, pub.stats.unrouted) == (3, 5)
        counted = tally(broker.log_path.read_text())
    assert counted.before_first_subscribe == 5
    assert counted.clients["early"].publish_in == 8
    assert counted.clients["early"].unrouted == 5
    assert counted.clients["late"].publish_out == 3


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """Accepts one client, answers CONNECT with an MQTT 5 CONNACK, then never acks anything."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)  # CONNECT
            conn.sendall(bytes([0x20, 0x03, 0x00, 0x00, 0x00]))  # CONNACK, v5, no properties
            conn.settimeout(0.2)
            while not stop.is_set():
                try:
                    if not conn.recv(65536):
                        return
                except TimeoutError:
                    continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    server.close()
    thread.join(5)


def test_messages_never_acked_are_counted_not_ignored(silent_broker: int) -> None:
    pub = Publisher(f"mqtt://127.0.0.1:{silent_broker}", "waiting", window=100, ack_timeout_s=1)
    try:
        with pytest.raises(PublishError, match=r"10 of 10 messages not acknowledged"):
            pub.publish(_msgs(10))
        with pytest.raises(PublishError, match=r"window of 100 full"):
            pub.publish(_msgs(200))
    finally:
        pub.close()
