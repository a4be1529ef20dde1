"""A thin asyncio adapter over paho-mqtt for an ack-after-commit subscriber.

Why not aiomqtt: aiomqtt 2.x acks on arrival (before the database has the message) and drops
messages when its queue is full; paho-mqtt >= 2.0 has public `manual_ack` / `ack(mid, qos)`.
Why not paho's own thread: the event loop drives paho's socket directly (the on_socket_* hooks),
so every callback runs on the loop thread and reading can be paused when our buffer is full,
which makes the broker queue for us (backpressure) instead of our memory growing.

Each (re)connection has a generation number. A message can only be acked on the connection it
arrived on: after a reconnect the broker resends every unacked message and may reuse packet ids,
so an ack for an old generation could ack the wrong message; it is skipped instead and the
redelivered copy (a no-op in the database) is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleetd.settings import mask_url

log = structlog.get_logger("fleetd.mqtt")

TOPIC_FILTERS = ("meters/+/telemetry", "vehicles/+/telemetry")
# Packets read per readable event before yielding to the loop: amortises the loop's per-event
# cost over many messages without starving the flush task.
READ_BURST = 512

OnMessage = Callable[[str, bytes, int, int, int], None]
"""on_message(topic, payload, mid, qos, generation), called on the loop thread."""


class BrokerUnavailableError(Exception):
    """The broker refused or dropped the connection."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where and how to connect, parsed from FLEET_MQTT_URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class MqttSubscriber:
    """Connects, subscribes to both telemetry filters with QoS 1 on a persistent session,
    hands every message to `on_message`, and acks on request. `run()` reconnects forever."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        on_message: OnMessage,
        keepalive_s: int = 30,
        session_expiry_s: int = 7 * 86400,
        receive_maximum: int = 65535,
        share_group: str | None = None,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self._address = BrokerAddress.parse(url)
        self._url_masked = mask_url(url)
        self._on_message_cb = on_message
        self._on_state = on_state
        self._keepalive_s = keepalive_s
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        prefix = f"$share/{share_group}/" if share_group else ""
        self.topic_filters = tuple(prefix + f for f in TOPIC_FILTERS)
        self.generation = 0
        self.connected = False
        self.reconnects = 0
        self.received = 0
        self._paused = False
        self._sock: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Future[None] | None = None
        self._disconnected = asyncio.Event()
        self._client = self._make_client(client_id)

    # --- public API ---------------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Connect, subscribe, and keep reconnecting with jittered backoff until cancelled.
        `ready` is set after the first successful subscription."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        attempt = 0
        try:
            while True:
                try:
                    await self._connect_once()
                except BrokerUnavailableError as exc:
                    attempt += 1
                    delay = min(30.0, random.uniform(0.5, 1.0) * 1.5 ** min(attempt, 10))
                    if attempt == 1:
                        log.warning("broker_unavailable", url=self._url_masked, error=str(exc))
                    await asyncio.sleep(delay)
                    continue
                if attempt or self.reconnects:
                    log.info("broker_connected", url=self._url_masked, generation=self.generation)
                else:
                    log.info("broker_connected", url=self._url_masked, filters=self.topic_filters)
                attempt = 0
                if ready is not None:
                    ready.set()
                await self._disconnected.wait()
                self.reconnects += 1
                log.warning("broker_disconnected", generation=self.generation)
                await asyncio.sleep(random.uniform(0.1, 0.5))
        finally:
            self._teardown()

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        """PUBACK one message if it arrived on the current connection; False if skipped."""
        if qos == 0:
            return True
        if generation != self.generation or not self.connected:
            return False
        self._client.ack(mid, qos)
        return True

    def pause(self) -> None:
        """Stop reading from the socket: the broker holds further messages for us."""
        if not self._paused:
            self._paused = True
            if self._sock is not None and self._loop is not None:
                self._loop.remove_reader(self._sock)

    def resume(self) -> None:
        """Start reading again after pause()."""
        if self._paused:
            self._paused = False
            if self._sock is not None and self._loop is not None:
                self._loop.add_reader(self._sock, self._on_readable)
                self._loop.call_soon(self._on_readable)

    @property
    def paused(self) -> bool:
        return self._paused

    async def disconnect(self) -> None:
        """Send DISCONNECT (keeping the session and its queue at the broker) and close."""
        if self.connected:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry_s
            self._client.disconnect(properties=props)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._disconnected.wait(), timeout=2)
        self._teardown()

    # --- connection ---------------------------------------------------------------------------

    def _make_client(self, client_id: str) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if self._address.username is not None:
            client.username_pw_set(self._address.username, self._address.password)
        if self._address.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        # We reconnect ourselves; paho must not block the loop sleeping between attempts.
        client.reconnect_delay_set(1, 1)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # A durable session: clean_start=False plus a session expiry, so the broker keeps our
        # subscription and queues messages while we are down. (paho's default,
        # MQTT_CLEAN_START_FIRST_ONLY, would wipe that queue on every process start.)
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=self._keepalive_s,
            clean_start=False,
            properties=props,
        )
        return client

    async def _connect_once(self) -> None:
        assert self._loop is not None
        self._disconnected.clear()
        self._subscribed = self._loop.create_future()
        try:
            # TCP (and TLS) connect blocks; run it off the loop. The socket hooks it triggers
            # hop back to the loop thread.
            rc = await asyncio.to_thread(self._client.reconnect)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerUnavailableError(f"{exc.__class__.__name__}: {exc}") from exc
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerUnavailableError(paho.error_string(rc))
        try:
            await asyncio.wait_for(asyncio.shield(self._subscribed), timeout=10)
        except TimeoutError as exc:
            self._client.disconnect()
            self._teardown()
            raise BrokerUnavailableError("no CONNACK/SUBACK within 10 s") from exc
        except BrokerUnavailableError:
            self._teardown()
            raise

    def _teardown(self) -> None:
        if self._misc_task is not None:
            self._misc_task.cancel()
            self._misc_task = None
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock)
            self._loop.remove_writer(self._sock)
        self._sock = None
        self._set_connected(False)

    def _set_connected(self, value: bool) -> None:
        if self.connected != value:
            self.connected = value
            if self._on_state is not None:
                self._on_state(value)

    # --- paho callbacks (all on the loop thread, except socket open during connect) -----------

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            self._fail(BrokerUnavailableError(f"connection refused: {rc}"))
            return
        self.generation += 1
        opts = SubscribeOptions(qos=1)
        # Subscribe on every connect, even when the broker kept the session: Mosquitto 2.0.11
        # does not restore $share subscriptions of durable clients.
        client.subscribe([(f, opts) for f in self.topic_filters])

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        refused = [str(rc) for rc in rcs if rc.is_failure]
        if refused:
            self._fail(BrokerUnavailableError(f"subscription refused: {', '.join(refused)}"))
            return
        self._set_connected(True)
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_result(None)

    def _fail(self, exc: BrokerUnavailableError) -> None:
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_exception(exc)
        self._client.disconnect()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self._set_connected(False)
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_exception(BrokerUnavailableError(f"disconnected: {rc}"))
        self._disconnected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.received += 1
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        self._on_message_cb(topic, bytes(msg.payload), msg.mid, msg.qos, self.generation)

    # --- socket plumbing ----------------------------------------------------------------------

    def _call_on_loop(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def attach() -> None:
            assert self._loop is not None
            self._sock = sock
            if not self._paused:
                self._loop.add_reader(sock, self._on_readable)
            self._misc_task = self._loop.create_task(self._misc_loop(), name="mqtt-misc")

        self._call_on_loop(attach)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def detach() -> None:
            assert self._loop is not None
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            if self._sock is sock:
                self._sock = None
            if self._misc_task is not None:
                self._misc_task.cancel()
                self._misc_task = None

        self._call_on_loop(detach)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def register() -> None:
            assert self._loop is not None
            self._loop.add_writer(sock, self._client.loop_write)

        self._call_on_loop(register)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def unregister() -> None:
            assert self._loop is not None
            self._loop.remove_writer(sock)

        self._call_on_loop(unregister)

    def _on_readable(self) -> None:
        # paho's loop_read() reads a single packet per call (it ignores max_packets), so read a
        # burst here; stop when a call produced no message (socket drained or control packet).
        client = self._client
        for _ in range(READ_BURST):
            if self._paused or self._sock is None:
                return
            before = self.received
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or self.received == before:
                break
        sock = self._sock
        # TLS may hold decrypted bytes the selector cannot see: keep reading them.
        if sock is not None and isinstance(sock, ssl.SSLSocket) and sock.pending():
            assert self._loop is not None
            self._loop.call_soon(self._on_readable)

    async def _misc_loop(self) -> None:
        # Keepalive pings and timeouts.
        while self._client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:  # noqa: ASYNC110
            await asyncio.sleep(1)
