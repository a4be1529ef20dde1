"""The MQTT side of fleetd: a lean asyncio subscriber for an ack-after-commit pipeline.

Why not a client library: aiomqtt 2.x acks on arrival (before the database has the message) and
drops messages when its queue is full; paho-mqtt has manual acks, but its read path costs
~38 us per message with MQTT 3.1.1 and ~76 us with MQTT 5 here (one recv() per header byte, a
threading.Condition and property objects per message), which alone caps the daemon near 13-26k
messages/s. A subscriber needs few packets (CONNECT, SUBSCRIBE, PUBLISH in, PUBACK out, ping),
so this module speaks them with the shared codec (`fleetsvc.mqtt`: `packets` builds, `reader`
frames and checks): whole socket reads are parsed in one pass and the PUBACKs of a committed
batch leave in one write.
Anything the reader cannot trust ends the connection with DISCONNECT (reason 0x81 in MQTT 5)
and a reconnect, never an exception on the event loop.

Protocol: `auto` offers MQTT 5 and falls back to 3.1.1 for the life of the process when the
broker refuses it (CONNACK 0x01 or 0x84). A hang-up or silence instead of a CONNACK is
ambiguous: RabbitMQ < 3.13 answers a v5 CONNECT that way, but so does a cluster node going down
or in the middle of an election. So 3.1.1 is then tried on the same node at once: if it fails too
the failure was transient and MQTT 5 stays; if it succeeds that one connection runs on 3.1.1 and
the next one offers MQTT 5 again, and only a second such answer makes the fallback stick.

Brokers: FLEET_MQTT_URL may name several nodes of one cluster (comma-separated). A failed
connect or a lost connection moves to the next node; the backoff keeps growing across the list
(a whole cluster down is not hammered node after node).

Refusals: a CONNACK refusing our credentials or client id (3.1.1: 0x02, 0x04, 0x05; MQTT 5:
0x85, 0x86, 0x87, 0x8A) or a SUBACK refusing a device filter is the operator's to fix. One node
refusing may be its auth backend in a hiccup, so the next node is tried as after any failure;
once every node of the list refused in a row, the refusal is `refusal` (cause: fix, shown by
/healthz) and retries slow down to minutes (fleetd.waiting). A subscription resets it.

The gateway filter is optional: an upgrade must never stop the ingest of the device topics that
worked before it, and a broker that checks permissions at SUBSCRIBE (RabbitMQ topic permissions,
Mosquitto's dynamic security, EMQX, NATS) refuses `gateways/+/telemetry` to a login granted only
the device topics. So it goes in a SUBSCRIBE of its own, sent once the device filters' SUBACK
has granted them: a SUBACK refusing it leaves the device filters working, with one warning per
connection (`subscription_refused`, the filter, the broker's reason, the fix) and the filter in
`refused_filters` (fleet_mqtt_subscription_refused, /healthz); it is asked for again every
GATEWAY_RETRY_S, so a fixed ACL takes effect without a reconnect. Some brokers close the connection
instead of answering (RabbitMQ before 3.13; aedes when its authorizer errs): a connection lost
while only the gateway SUBACK was awaited, twice in a row, drops the gateway filter until fleetd
restarts, so ingest of the device topics resumes instead of a reconnect loop.
FLEET_MQTT_GATEWAYS=off asks for no gateway filter, and since a durable session keeps what an
earlier run subscribed to, a connection resuming a session sends UNSUBSCRIBE for it once the
device filters are granted (what the session had queued still arrives: fleetd.ingest.intake
keeps it as a reject).

Liveness (`liveness.py`): a PINGREQ every half keepalive; unanswered past its deadline the link
is "silent" (`silent_s()`, which /healthz reports) and after 1.5 x keepalive without a packet it
is aborted and fleetd reconnects, as the broker gives up on us at that point too.

Backpressure: pause() stops reading from the socket, so the broker queues for us instead of our
memory growing. Each (re)connection has a generation number and a message can only be acked on
the connection it arrived on: after a reconnect the broker resends every unacked message and may
reuse packet ids, so an ack for an old generation could ack the wrong message. It is skipped
instead and the redelivered copy (a no-op in the database) is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable, Sequence

import structlog

from fleetd.mqtt import liveness
from fleetd.mqtt.topics import (
    DEVICE_FILTERS,
    GATEWAY_FILTER,
    TOPIC_FILTERS,
    device_filters,
    subscription_filters,
    topic_filters,
)
from fleetd.waiting import REFUSED_BACKOFF_MAX_S, Reminder, refused_backoff_s
from fleetsvc.mqtt import packets
from fleetsvc.mqtt.address import BrokerAddress
from fleetsvc.mqtt.reader import Disconnect, PacketReader, Publish, SubAck, UnsubAck
from fleetsvc.secrets import mask_url

log = structlog.get_logger("fleetd.mqtt")

__all__ = [
    "DEVICE_FILTERS",
    "GATEWAY_FILTER",
    "TOPIC_FILTERS",
    "MqttSubscriber",
    "device_filters",
    "topic_filters",
]

_SUBSCRIBE_ID = 1  # the device filters
_GATEWAY_SUBSCRIBE_ID = 2  # the gateway filter, asked for once the device filters are granted
_GATEWAY_UNSUBSCRIBE_ID = 3  # gateways off: the filter an earlier run's session may still hold
# Connections in a row that the broker ended while only the gateway SUBACK was awaited, after
# which the gateway filter is left out (one could be a node going down at that moment).
GATEWAY_CLOSES_TO_DROP = 2
# How often a live connection asks again for a gateway filter its broker refused in a SUBACK.
GATEWAY_RETRY_S = REFUSED_BACKOFF_MAX_S

OnMessage = Callable[[str, bytes, int, int, int], None]
"""on_message(topic, payload, packet_id, qos, generation), called on the loop thread."""
OnOversized = Callable[[str, int, int, int, int], None]
"""on_oversized(topic, packet_bytes, packet_id, qos, generation): a PUBLISH over the size limit
whose payload was dropped unread; acked like any message once the daemon has recorded it."""

CONNACK_TIMEOUT_S = 10.0
# A connection that ends sooner than this (or by a broker DISCONNECT or a protocol error)
# counts as a failed attempt, so the backoff grows instead of restarting at its minimum.
STABLE_CONNECTION_S = 30.0


class BrokerUnavailableError(Exception):
    """The broker refused or dropped the connection."""


class BrokerRefusedError(BrokerUnavailableError):
    """The broker refused our credentials, client id or subscription: `fix` says what to do."""

    def __init__(self, message: str, *, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


_CREDENTIALS_FIX = "check the user and password in FLEET_MQTT_URL"
# Mosquitto answers a wrong password with "not authorised" (0x05, 0x87), not 0x04/0x86.
_AUTHORISED_FIX = (
    "check the user and password in FLEET_MQTT_URL, and that the broker lets this user "
    "connect (its password file, ACL or ban list)"
)
_REFUSALS = {  # (MQTT 5?, CONNACK code) -> the fix
    (False, 0x02): "check FLEET_CLIENT_ID (the broker refuses it as a client id)",
    (False, 0x04): _CREDENTIALS_FIX,
    (False, 0x05): _AUTHORISED_FIX,
    (True, 0x85): "check FLEET_CLIENT_ID (the broker refuses it as a client id)",
    (True, 0x86): _CREDENTIALS_FIX,
    (True, 0x87): _AUTHORISED_FIX,
    (True, 0x8A): _AUTHORISED_FIX,
}
_GATEWAY_FIX = (
    "grant FLEET_MQTT_URL's user read access to gateways/+/telemetry in the broker's ACL "
    "(fleetd asks again every 2 minutes), or set FLEET_MQTT_GATEWAYS=off if no gateway "
    "publishes; the device topics are ingested meanwhile"
)
_GATEWAY_DROPPED_FIX = (
    "grant FLEET_MQTT_URL's user read access to gateways/+/telemetry in the broker's ACL and "
    "restart fleetd, or set FLEET_MQTT_GATEWAYS=off if no gateway publishes; the device topics "
    "are ingested meanwhile"
)


class _Mqtt5RefusedError(BrokerUnavailableError):
    """The broker answered our MQTT 5 CONNECT as a 3.1.1-only broker does (`definitive`: a
    CONNACK refusing the version) or not at all (a hang-up or silence: maybe a node in trouble)."""

    def __init__(self, message: str, *, definitive: bool) -> None:
        super().__init__(message)
        self.definitive = definitive


def split_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    """The broker URLs of FLEET_MQTT_URL: one, or several nodes of a cluster, comma-separated."""
    items = urls.split(",") if isinstance(urls, str) else urls
    return tuple(u.strip() for u in items if u.strip())


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; its bytes are framed by a PacketReader and handled by the
    owning subscriber."""

    def __init__(
        self, owner: MqttSubscriber, generation: int, *, v5: bool, url_masked: str = ""
    ) -> None:
        loop = asyncio.get_running_loop()
        self.owner = owner
        self.url_masked = url_masked
        self.generation = generation
        self.v5 = v5
        self.reader = PacketReader(v5=v5, max_packet_bytes=owner.max_packet_bytes)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[packets.ConnAck] = loop.create_future()
        # Retrieved here so an exception nobody awaits (CONNACK timeout) is not reported.
        self.connack.add_done_callback(_retrieve)
        self.lost: asyncio.Future[None] = loop.create_future()
        self.last_rx = time.monotonic()
        self.opened = time.monotonic()
        self.connacked: float | None = None  # monotonic time of an accepting CONNACK
        self.ping_sent: float | None = None  # the oldest PINGREQ not answered yet
        self.keepalive_s = owner.keepalive_s
        self.failed = False  # ended by a broker DISCONNECT, a protocol error or a refusal
        self.refused: BrokerRefusedError | None = None  # the SUBACK refused a device filter
        self.devices_subscribed = False  # the SUBACK granted the device filters
        self.session_present = False  # the CONNACK resumed a session the broker kept
        self.gateway_pending = False  # the gateway filter's SUBSCRIBE sent, no SUBACK yet
        self.protocol_error = False  # ended by us: the broker sent what we cannot trust
        self.gateway_warned = False  # this connection's refusal of the gateway filter logged
        self.taken_over = False  # ended by the broker for another client with our client id
        self.silent = False  # aborted by us: nothing heard for 1.5 x keepalive

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.reader.feed(data)
        self.owner._drain(self)  # the owner is this protocol's other half

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(
                BrokerUnavailableError(f"connection closed before CONNACK ({exc})")
            )
        if not self.lost.done():
            self.lost.set_result(None)
        self.owner._on_lost(self)

    def close(self, reason_code: int = 0) -> None:
        """Send DISCONNECT (with `reason_code` in v5) and close; the broker keeps the session."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(packets.disconnect_packet(reason_code, v5=self.v5))
            self.transport.close()


def _retrieve(future: asyncio.Future[packets.ConnAck]) -> None:
    if not future.cancelled():
        future.exception()


class MqttSubscriber:
    """Connects, subscribes to the telemetry filters (TOPIC_FILTERS) with QoS 1 on a durable
    session, hands every message to `on_message`, and acks on request. `run()` reconnects until
    cancelled."""

    def __init__(
        self,
        *,
        url: str | Sequence[str],
        client_id: str,
        on_message: OnMessage,
        keepalive_s: int = 30,
        session_expiry_s: int = 7 * 86400,
        receive_maximum: int = 65535,
        max_packet_bytes: int = 1 << 20,
        share_group: str | None = None,
        protocol: str = "auto",
        on_state: Callable[[bool], None] | None = None,
        on_oversized: OnOversized | None = None,
        device_filters: tuple[str, ...] = DEVICE_FILTERS,
        gateways: bool = True,
    ) -> None:
        if protocol not in ("auto", "5", "3.1.1"):
            raise ValueError(f"protocol must be auto, 5 or 3.1.1, not {protocol!r}")
        urls = split_urls(url)
        if not urls:
            raise ValueError("no broker URL")
        self._nodes = tuple(BrokerAddress.parse(u) for u in urls)
        self._nodes_masked = tuple(mask_url(u) for u in urls)
        self._node = 0  # index of the node the next connection goes to
        self._client_id = client_id
        self._on_message_cb = on_message
        self._on_state = on_state
        self._on_oversized = on_oversized
        self.keepalive_s = keepalive_s
        self.max_packet_bytes = max_packet_bytes
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._protocol = protocol
        self._v5 = protocol != "3.1.1"  # what the next CONNECT offers
        # auto: connections that a hang-up on MQTT 5 put on 3.1.1 (the second one makes it stick)
        self._v5_hangups = 0
        self._clash = liveness.ClashWatch()
        self.device_filters, self.gateway_filter = subscription_filters(
            device_filters, share_group=share_group, gateways=gateways
        )
        self.topic_filters = (*self.device_filters, *filter(None, [self.gateway_filter]))
        # Gateways off: the filter an earlier run with them on left in the durable session.
        self._stale_gateway_filter = (
            None if gateways else subscription_filters(device_filters, share_group=share_group)[1]
        )
        # Filters the broker refused (or closed the connection at), with its reason: what
        # fleet_mqtt_subscription_refused and /healthz show. Only the gateway filter can be here
        # while fleetd ingests; a refused device filter is a `refusal`.
        self.refused_filters: dict[str, str] = {}
        self._gateway_closes = 0  # connections in a row lost awaiting the gateway SUBACK
        self._gateway_dropped = False  # left out of SUBSCRIBE until restart (GATEWAY_CLOSES_…)
        self.generation = 0
        self.connected = False
        self.reconnects = 0
        self.received = 0
        self.subscribed = asyncio.Event()
        self.last_error: str | None = None  # why the last try failed, until a connection
        self.refusal: str | None = None  # "cause: fix" once every node refused in a row
        self._refused_in_a_row = 0
        self._reminder = Reminder()
        self._conn: _Connection | None = None
        self._paused = False
        self._closing = False
        self._acks = bytearray()
        self._acks_scheduled = False

    # --- public API ---------------------------------------------------------------------------

    @property
    def protocol(self) -> str:
        """The MQTT version of the current connection (or the next one): "5" or "3.1.1"."""
        conn = self._conn
        v5 = conn.v5 if conn is not None and self.connected else self._v5
        return "5" if v5 else "3.1.1"

    @property
    def url(self) -> str:
        """The (masked) URL of the node connected to, or tried next."""
        conn = self._conn
        if conn is not None and self.connected:
            return conn.url_masked
        return self._nodes_masked[self._node]

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Connect, subscribe, and keep reconnecting with jittered backoff until cancelled or
        disconnect(). `ready` is set after the first successful subscription."""
        attempt = 0
        while not self._closing:
            try:
                conn = await self._connect_negotiated(self._node)
            except BrokerUnavailableError as exc:
                attempt += 1
                delay_s = self._unavailable(exc, attempt, first_s=1.0)
                self._next_node()
                await asyncio.sleep(delay_s)
                continue
            self.last_error = None
            await self._serve(conn, ready)
            if self.closing:
                return
            attempt = self._after_loss(conn, attempt)
            self._gateway_after_loss(conn)
            delay_s = _backoff_s(attempt, first_s=0.5)
            if conn.refused is not None:
                delay_s = self._unavailable(conn.refused, attempt, first_s=0.5)
            self._next_node()
            await asyncio.sleep(delay_s)

    def _unavailable(self, exc: BrokerUnavailableError, attempt: int, *, first_s: float) -> float:
        """Record and log a failed try on the current node; the delay before the next one."""
        url = self._nodes_masked[self._node]
        refused = exc if isinstance(exc, BrokerRefusedError) else None
        self._refused_in_a_row = self._refused_in_a_row + 1 if refused else 0
        rounds = self._refused_in_a_row // len(self._nodes)  # every node refused, how often
        self.refusal = f"{refused}: {refused.fix}" if refused and rounds else None
        self.last_error = f"{url}: {exc}" + (f": {refused.fix}" if refused else "")
        # Each node's first failure of an outage is worth a line, then one a minute at most.
        if self._reminder.due() or attempt <= len(self._nodes):
            if refused is not None:
                log.error(
                    "broker_refused",
                    url=url,
                    reason=str(refused),
                    fix=refused.fix,
                    every_node=bool(rounds),
                    attempt=attempt,
                )
            else:
                log.warning(
                    "broker_unavailable",
                    url=url,
                    error=str(exc),
                    attempt=attempt,
                    for_s=round(self._reminder.lasted_s()),
                )
        if self.refusal is not None:
            return refused_backoff_s(rounds)
        return _backoff_s(attempt, first_s=first_s)

    async def _serve(self, conn: _Connection, ready: asyncio.Event | None) -> None:
        """Keep one connection alive (pings, deadlines) until it is lost."""
        log.info(
            "broker_connected",
            url=conn.url_masked,
            protocol=self.protocol,
            generation=self.generation,
            session_present=conn.connack.result().session_present,
        )
        keepalive = asyncio.create_task(self._keepalive(conn), name="mqtt-keepalive")
        gateway_retry = asyncio.create_task(self._retry_gateway(conn), name="mqtt-gateway-retry")
        if ready is not None and not ready.is_set():
            subscribed = asyncio.create_task(_wait_event(self.subscribed))
            lost = asyncio.create_task(_wait_future(conn.lost))
            await asyncio.wait([subscribed, lost], return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            subscribed.cancel()
            if self.subscribed.is_set():
                ready.set()
        await conn.lost
        keepalive.cancel()
        gateway_retry.cancel()

    def _after_loss(self, conn: _Connection, attempt: int) -> int:
        """Log a lost connection; the backoff attempt to use next (it grows across connections
        that ended badly or early, and starts over after a stable one)."""
        self.reconnects += 1
        lived_s = time.monotonic() - (conn.connacked or conn.opened)
        attempt = attempt + 1 if conn.failed or lived_s < STABLE_CONNECTION_S else 0
        log.warning(
            "broker_disconnected",
            url=conn.url_masked,
            generation=conn.generation,
            lived_s=round(lived_s, 1),
            attempt=attempt,
        )
        self._watch_clash(conn, lived_s)
        return attempt

    def _gateway_after_loss(self, conn: _Connection) -> None:
        """A connection the broker ended while the gateway SUBACK was awaited (and the device
        filters were granted) is how some brokers refuse a filter: after GATEWAY_CLOSES_TO_DROP
        in a row, subscribe without it so the device topics are ingested again."""
        gateway = self.gateway_filter
        if gateway is None or self._gateway_dropped:
            return
        # Not a refusal: a dead link, a packet we could not trust, another client with our id.
        if not conn.gateway_pending or conn.silent or conn.protocol_error or conn.taken_over:
            return
        self._gateway_closes += 1
        if self._gateway_closes < GATEWAY_CLOSES_TO_DROP:
            log.warning(
                "broker_closed_at_subscribe",
                url=conn.url_masked,
                filter=gateway,
                closes=self._gateway_closes,
                hint="the broker ended the connection right after fleetd asked for this filter; "
                f"after {GATEWAY_CLOSES_TO_DROP} in a row fleetd subscribes without it",
            )
            return
        self._gateway_dropped = True
        reason = (
            f"the broker closed the connection at its SUBSCRIBE, {self._gateway_closes} in a row"
        )
        self._gateway_refused(
            conn,
            reason,
            _GATEWAY_DROPPED_FIX,
            action="subscribing without it until fleetd restarts",
        )

    def _gateway_refused(self, conn: _Connection, reason: str, fix: str, **extra: str) -> None:
        """Record the gateway filter as refused (fleet_mqtt_subscription_refused, /healthz)
        and say so in the one warning both ways of refusing it share."""
        gateway = self.gateway_filter
        assert gateway is not None
        self.refused_filters[gateway] = reason
        log.warning(
            "subscription_refused",
            url=conn.url_masked,
            filter=gateway,
            reason=reason,
            fix=fix,
            **extra,
            ingesting=list(self.device_filters),
        )

    def _next_node(self) -> None:
        # After any failure the next node of the list is tried: the one that failed may be the
        # node that went down, and the others of a cluster hold the same session.
        self._node = (self._node + 1) % len(self._nodes)

    def _watch_clash(self, conn: _Connection, lived_s: float) -> None:
        hung_up = not (conn.failed or conn.silent)
        if self._clash.ended(lived_s, hung_up_by_broker=hung_up):
            log.error(
                "client_id_clash_suspected",
                client_id=self._client_id,
                short_connections=self._clash.streak,
                longest_s=round(self._clash.longest_s, 1),
                hint="the broker keeps closing the connection right after CONNACK without a "
                "reason: another client most likely uses this client id (a second fleetd?). "
                "Give every fleetd its own FLEET_CLIENT_ID (FLEET_SHARE_GROUP to share the load)",
            )

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        """PUBACK one message if it arrived on the current connection; False if skipped.
        Acks queued in one loop iteration leave in a single write."""
        if qos == 0:
            return True
        if generation != self.generation or not self.connected:
            return False
        self._acks += packets.puback_packet(mid)
        if not self._acks_scheduled:
            self._acks_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_acks)
        return True

    def pause(self) -> None:
        """Stop reading from the socket: the broker holds further messages for us."""
        if not self._paused:
            self._paused = True
            if self._conn is not None and self._conn.transport is not None:
                self._conn.transport.pause_reading()

    def resume(self) -> None:
        """Start reading again after pause()."""
        if self._paused:
            conn = self._conn
            if conn is not None and conn.transport is not None:
                # What the TCP acknowledgements told while paused carries over until the
                # packets that waited in the socket are read.
                conn.last_rx = self._heard_mono(conn, time.monotonic())
            self._paused = False
            if conn is not None and conn.transport is not None:
                conn.transport.resume_reading()
                asyncio.get_running_loop().call_soon(self._drain, conn)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def closing(self) -> bool:
        """disconnect() was called: run() returns instead of reconnecting."""
        return self._closing

    async def disconnect(self) -> None:
        """Send pending acks and DISCONNECT (the broker keeps the session and its queue)."""
        self._closing = True
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.lost.done():
            self._send_acks()
            conn.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(conn.lost), timeout=2)
            if not conn.lost.done():
                conn.transport.abort()

    # --- connection ---------------------------------------------------------------------------

    async def _connect_negotiated(self, node: int) -> _Connection:
        """Connect to one node with the protocol in force; `auto` probes 3.1.1 on the same node
        when MQTT 5 is refused. Raises BrokerUnavailableError (transient: try the next node)."""
        try:
            return await self._connect_once(node, v5=self._v5)
        except _Mqtt5RefusedError as exc:
            if self._protocol != "auto":
                log.error(  # noqa: TRY400 - the reason is the broker's answer, not a traceback
                    "mqtt5_refused",
                    url=self._nodes_masked[node],
                    reason=str(exc),
                    hint="this broker does not speak MQTT 5: set FLEET_MQTT_PROTOCOL=3.1.1 or auto",
                )
                raise BrokerUnavailableError(str(exc)) from exc
            refused = exc
        log.warning(
            "mqtt5_refused", url=self._nodes_masked[node], reason=str(refused), fallback="3.1.1"
        )
        # A failure here propagates: the node is unwell, not 3.1.1-only, and MQTT 5 stays.
        conn = await self._connect_once(node, v5=False)
        if refused.definitive or self._v5_hangups:
            self._v5 = False
            log.warning("mqtt_protocol_fallback", protocol="3.1.1", reason=str(refused))
        else:
            # A node going down (or electing) hangs up on any CONNECT: one 3.1.1 success right
            # after it is not yet proof, so the next connection offers MQTT 5 again.
            self._v5_hangups += 1
            log.warning("mqtt_protocol_fallback", protocol="3.1.1", for_connections=1)
        return conn

    async def _connect_once(self, node: int, *, v5: bool) -> _Connection:
        loop = asyncio.get_running_loop()
        address = self._nodes[node]
        conn = _Connection(self, self.generation + 1, v5=v5, url_masked=self._nodes_masked[node])
        ctx = ssl.create_default_context() if address.tls else None
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    address.host,
                    address.port,
                    ssl=ctx,
                    server_hostname=address.host if ctx else None,
                ),
                timeout=10,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise BrokerUnavailableError(f"{exc.__class__.__name__}: {exc}") from exc
        assert conn.transport is not None
        self._conn = conn
        if self._paused:
            conn.transport.pause_reading()
        conn.transport.write(
            packets.connect_packet(
                self._client_id,
                keepalive_s=self.keepalive_s,
                v5=v5,
                username=address.username,
                password=address.password,
                session_expiry_s=self._session_expiry_s,
                receive_maximum=self._receive_maximum,
                maximum_packet_bytes=self.max_packet_bytes,
            )
        )
        connack = await self._await_connack(conn, v5=v5)
        if v5:
            self._v5_hangups = 0  # this cluster speaks MQTT 5: earlier hang-ups were transient
        if connack.server_keepalive_s is not None:
            conn.keepalive_s = connack.server_keepalive_s
        # Subscribe on every connect, even when the broker kept the session: Mosquitto 2.0.11
        # does not restore $share subscriptions of durable clients. The gateway filter follows
        # once these are granted (_subscribe_gateway).
        self.subscribed.clear()
        conn.transport.write(packets.subscribe_packet(_SUBSCRIBE_ID, self.device_filters, v5=v5))
        return conn

    async def _await_connack(self, conn: _Connection, *, v5: bool) -> packets.ConnAck:
        """Wait for an accepting CONNACK, or abort the connection and raise why not (an MQTT 5
        refusal as _Mqtt5RefusedError, so `auto` can try 3.1.1)."""
        assert conn.transport is not None
        # Only CONNACK is awaited: with a persistent session the broker may send a large
        # backlog before our SUBACK, which then arrives behind those messages.
        done, _ = await asyncio.wait([conn.connack], timeout=CONNACK_TIMEOUT_S)
        if not done:
            conn.transport.abort()
            conn.connack.cancel()
            # amqtt reads v5 properties as the client id and never answers.
            silent = f"no CONNACK within {CONNACK_TIMEOUT_S:.0f} s"
            if v5:
                raise _Mqtt5RefusedError(silent, definitive=False)
            raise BrokerUnavailableError(silent)
        error = conn.connack.exception()
        if error is not None:
            conn.transport.abort()
            # RabbitMQ before 3.13 hangs up on a v5 CONNECT ("cannot parse a frame").
            if v5:
                raise _Mqtt5RefusedError(str(error), definitive=False) from error
            raise BrokerUnavailableError(str(error)) from error
        connack = conn.connack.result()
        if connack.code != 0:
            conn.transport.abort()
            reason = packets.connack_reason(connack.code, v5=v5)
            fix = _REFUSALS.get((v5, connack.code))
            if fix is not None:
                raise BrokerRefusedError(
                    f"connection refused: {reason} ({connack.code:#04x})", fix=fix
                )
            if v5 and connack.code in (
                packets.UNACCEPTABLE_PROTOCOL_V3,
                packets.UNSUPPORTED_PROTOCOL_V5,
            ):
                raise _Mqtt5RefusedError(f"connection refused: {reason}", definitive=True)
            raise BrokerUnavailableError(f"connection refused: {reason}")
        return connack

    # --- liveness -----------------------------------------------------------------------------

    def _heard_mono(self, conn: _Connection, now: float) -> float:
        """When the broker was last heard from: its last packet, and while we do not read (its
        packets wait in the socket) the last TCP acknowledgement of what we sent."""
        if not self._paused or conn.transport is None:
            return conn.last_rx
        age_s = liveness.tcp_last_ack_age_s(conn.transport)
        if age_s is None:
            return now  # the kernel does not tell: a paused link counts as alive
        return max(conn.last_rx, now - age_s)

    def silence_s(self, now: float | None = None) -> float:
        """Seconds since the broker was last heard from on the current connection (0 when
        there is none)."""
        conn = self._conn
        if conn is None or not self.connected:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, now - self._heard_mono(conn, now))

    def silent_s(self, now: float | None = None) -> float | None:
        """The silence once a PINGREQ went unanswered past its deadline (the link may be dead
        and nothing arrives), else None."""
        conn = self._conn
        if conn is None or not self.connected or conn.ping_sent is None:
            return None
        now = time.monotonic() if now is None else now
        heard = self._heard_mono(conn, now)
        if heard >= conn.ping_sent or now - conn.ping_sent < liveness.pingresp_wait_s(
            conn.keepalive_s
        ):
            return None
        return now - heard

    async def _keepalive(self, conn: _Connection) -> None:
        # PINGREQ every half keepalive (the broker's Server Keep Alive when it sent one; 0 turns
        # pings off), also while paused: its TCP acknowledgement is then the sign of life.
        keepalive_s = conn.keepalive_s
        if not keepalive_s:
            return
        interval_s = keepalive_s / 2
        give_up_s = liveness.give_up_after_s(keepalive_s)
        next_ping = time.monotonic() + interval_s
        while conn.transport is not None and not conn.lost.done():
            now = time.monotonic()
            heard = self._heard_mono(conn, now)
            if now >= next_ping:
                if conn.ping_sent is None or heard >= conn.ping_sent:
                    conn.ping_sent = now  # the oldest unanswered one is what the deadline counts
                conn.transport.write(packets.PINGREQ_PACKET)
                next_ping = now + interval_s
            if now - heard >= give_up_s:
                log.warning(
                    "broker_silent",
                    url=conn.url_masked,
                    seconds=round(now - heard, 1),
                    keepalive_s=keepalive_s,
                    paused=self._paused,
                )
                conn.silent = True
                conn.transport.abort()
                return
            await asyncio.sleep(max(0.05, min(next_ping, heard + give_up_s) - now))

    def _send_acks(self) -> None:
        self._acks_scheduled = False
        conn = self._conn
        if self._acks and conn is not None and conn.transport is not None:
            conn.transport.write(bytes(self._acks))
        self._acks.clear()

    def _set_connected(self, value: bool) -> None:
        if self.connected != value:
            self.connected = value
            if self._on_state is not None:
                self._on_state(value)

    def _on_lost(self, conn: _Connection) -> None:
        if conn is self._conn:
            self._acks.clear()
            self._set_connected(False)

    # --- packets in ---------------------------------------------------------------------------

    def _drain(self, conn: _Connection) -> None:
        """Handle every whole packet the connection has buffered (until paused)."""
        reader = conn.reader
        cb = self._on_message_cb
        gen = conn.generation
        while not self._paused and not conn.failed:
            try:
                pkt = reader.next()
            except packets.ProtocolError as exc:
                self._protocol_error(conn, exc)
                return
            if pkt is None:
                return
            if type(pkt) is Publish:
                self.received += 1
                if pkt.size:
                    self._oversized(pkt, gen)
                else:
                    cb(pkt.topic, pkt.payload, pkt.packet_id, pkt.qos, gen)
            else:
                self._control(conn, pkt)

    def _oversized(self, pkt: Publish, generation: int) -> None:
        log.warning(
            "mqtt_packet_too_large",
            topic=pkt.topic[:200],
            bytes=pkt.size,
            limit=self.max_packet_bytes,
        )
        if self._on_oversized is not None:
            self._on_oversized(pkt.topic, pkt.size, pkt.packet_id, pkt.qos, generation)

    def _protocol_error(self, conn: _Connection, exc: packets.ProtocolError) -> None:
        conn.protocol_error = True
        log.error("mqtt_protocol_error", error=str(exc), reason_code=hex(exc.reason_code))
        if not conn.connack.done():
            conn.connack.set_exception(BrokerUnavailableError(f"protocol error: {exc}"))
        self._fail(conn, exc.reason_code)

    def _fail(self, conn: _Connection, reason_code: int | None) -> None:
        """End a connection that went wrong; DISCONNECT (unless None: the broker already sent
        one) is the last thing it sends. Nothing more is acked on it: the broker redelivers
        on the next connection."""
        conn.failed = True
        if conn is self._conn:
            self._acks.clear()
            self._set_connected(False)
        if reason_code is not None:
            conn.close(reason_code)
        elif conn.transport is not None:
            conn.transport.close()

    def _control(self, conn: _Connection, pkt: object) -> None:
        if isinstance(pkt, packets.ConnAck):
            if conn.connack.done():
                self._protocol_error(conn, packets.ProtocolError("a second CONNACK", 0x82))
                return
            if pkt.code == 0:
                # Connected (and able to ack) from CONNACK on.
                conn.connacked = time.monotonic()
                conn.session_present = pkt.session_present
                self.generation = conn.generation
                self._set_connected(True)
            conn.connack.set_result(pkt)
        elif isinstance(pkt, SubAck):
            if pkt.packet_id == _GATEWAY_SUBSCRIBE_ID:
                if conn.gateway_pending:  # else a stray answer: nothing was asked
                    self._gateway_suback(conn, pkt)
                return
            if any(code >= 0x80 for code in pkt.codes):
                log.error("subscription_refused", filters=self.device_filters, codes=pkt.codes)
                codes = ", ".join(f"{c:#x}" for c in pkt.codes)
                fix = (
                    f"let FLEET_MQTT_URL's user read {' and '.join(self.device_filters)} in the "
                    "broker's ACL (config/mosquitto.acl)"
                )
                conn.refused = BrokerRefusedError(f"subscription refused ({codes})", fix=fix)
                self._fail(conn, 0)
                return
            self._refused_in_a_row = 0
            self.refusal = None
            self._reminder.clear()
            conn.devices_subscribed = True
            self.subscribed.set()
            self._subscribe_gateway(conn)
            self._unsubscribe_gateway(conn)
        elif isinstance(pkt, UnsubAck):
            if pkt.packet_id == _GATEWAY_UNSUBSCRIBE_ID:
                self._gateway_unsuback(pkt)
        elif isinstance(pkt, Disconnect):
            if pkt.reason_code == packets.SESSION_TAKEN_OVER:
                conn.taken_over = True
                log.error(
                    "session_taken_over",
                    client_id=self._client_id,
                    hint="another client connected with this client id: give every fleetd its "
                    "own FLEET_CLIENT_ID (FLEET_SHARE_GROUP to share the load)",
                )
            else:
                log.warning(
                    "broker_sent_disconnect", reason=hex(pkt.reason_code), text=pkt.reason_string
                )
            self._fail(conn, None)
        # PINGRESP needs nothing: any byte received refreshes last_rx (and so answers pings).

    def _subscribe_gateway(self, conn: _Connection) -> None:
        """Ask for the gateway filter in a SUBSCRIBE of its own (unless turned off or dropped)."""
        gateway = self.gateway_filter
        if gateway is None or self._gateway_dropped or conn.transport is None:
            return
        conn.gateway_pending = True
        conn.transport.write(
            packets.subscribe_packet(_GATEWAY_SUBSCRIBE_ID, (gateway,), v5=conn.v5)
        )

    def _unsubscribe_gateway(self, conn: _Connection) -> None:
        """Gateways off and a resumed session: drop the gateway filter an earlier run with them
        on subscribed to, else the broker keeps delivering gateway messages (each a reject)."""
        stale = self._stale_gateway_filter
        if stale is None or not conn.session_present or conn.transport is None:
            return
        conn.transport.write(
            packets.unsubscribe_packet(_GATEWAY_UNSUBSCRIBE_ID, (stale,), v5=conn.v5)
        )

    def _gateway_unsuback(self, pkt: UnsubAck) -> None:
        """The broker's answer to _unsubscribe_gateway: logged, nothing else depends on it (a
        gateway message still delivered is a reject, fleetd.ingest.intake)."""
        code = pkt.codes[0] if pkt.codes else 0
        if code < 0x80:
            log.info(
                "gateway_filter_unsubscribed",
                filter=self._stale_gateway_filter,
                result=packets.unsuback_reason(code) if pkt.codes else "done",
            )
            return
        reason = packets.unsuback_reason(code)
        if pkt.reason_string:
            reason += f": {pkt.reason_string}"
        log.warning(
            "unsubscribe_refused",
            filter=self._stale_gateway_filter,
            reason=reason,
            effect="gateway messages the session still receives are kept as rejects "
            "(FLEET_MQTT_GATEWAYS=off)",
        )

    async def _retry_gateway(self, conn: _Connection) -> None:
        # A refused gateway filter is asked for again every few minutes on the live connection,
        # so an ACL fixed meanwhile takes effect without a reconnect (as fleetd.waiting does for
        # every refusal); the broker's answer is logged once per connection.
        while not conn.lost.done():
            await asyncio.sleep(GATEWAY_RETRY_S)
            refused = self.gateway_filter in self.refused_filters
            if refused and not conn.gateway_pending and not conn.lost.done():
                self._subscribe_gateway(conn)

    def _gateway_suback(self, conn: _Connection, pkt: SubAck) -> None:
        """The gateway filter granted or refused: either way the device filters go on."""
        gateway = self.gateway_filter
        assert gateway is not None
        conn.gateway_pending = False
        self._gateway_closes = 0
        code = pkt.codes[0]
        if code < 0x80:
            if self.refused_filters.pop(gateway, None) is not None:
                log.info("subscription_granted", url=conn.url_masked, filter=gateway)
            return
        reason = packets.suback_reason(code, v5=conn.v5)
        if pkt.reason_string:
            reason += f": {pkt.reason_string}"
        if conn.gateway_warned:  # asked again on this connection (_retry_gateway)
            self.refused_filters[gateway] = reason
            log.debug("subscription_refused_again", filter=gateway, reason=reason)
            return
        conn.gateway_warned = True
        self._gateway_refused(conn, reason, _GATEWAY_FIX)


def _backoff_s(attempt: int, *, first_s: float) -> float:
    """Jittered exponential backoff: `first_s` x 0.2-1 at attempt 0, growing 1.5x, capped."""
    return min(30.0, random.uniform(0.2, 1.0) * first_s * 1.5 ** min(attempt, 12))


async def _wait_event(event: asyncio.Event) -> None:
    await event.wait()


async def _wait_future(future: asyncio.Future[None]) -> None:
    await asyncio.shield(future)
