"""The shared QoS 1 publisher against a scripted broker on a free loopback port: every PUBACK
counted within the window, a refused CONNACK and a lost connection raised with the count of
what is unacknowledged, the checked reader in front of it, a resend on a new connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from fleet_harness import free_port
from fleetsvc.mqtt import packets
from fleetsvc.mqtt.publisher import ConnectError, ConnectionLostError, Publisher, PublishError

# answer(n, packet id) for the n-th PUBLISH (0-based) of a connection: the bytes to send back
# (b"" for nothing), or None to hang up.
Answer = Callable[[int, int], bytes | None]


def puback(pid: int, code: int | None = None) -> bytes:
    if code is None:
        return packets.puback_packet(pid)
    return bytes([0x40, 3]) + pid.to_bytes(2, "big") + bytes([code])


@dataclass
class Broker:
    """One scripted broker: CONNACK `connack` (bytes), then every PUBLISH answered by `answer`."""

    answer: Answer = lambda _n, pid: puback(pid)
    connack: bytes = b"\x20\x02\x00\x00"
    port: int = field(default_factory=free_port)
    publishes: list[bytes] = field(default_factory=list)  # every PUBLISH packet, whole
    connects: list[bytes] = field(default_factory=list)
    disconnects: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"mqtt://alerts:s3cret@127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        try:
            while True:
                whole = await _read_packet(reader)
                kind = whole[0] >> 4
                if kind == packets.CONNECT:
                    self.connects.append(whole)
                    writer.write(self.connack)
                elif kind == packets.PUBLISH:
                    self.publishes.append(whole)
                    answer = self.answer(n, _packet_id(whole))
                    n += 1
                    if answer is None:
                        return
                    writer.write(answer)
                elif kind == packets.DISCONNECT:
                    self.disconnects.append(whole)
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Broker]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        try:
            yield self
        finally:
            server.close()
            await asyncio.sleep(0.05)


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(1)
    length = shift = 0
    while True:
        byte = await reader.readexactly(1)
        head += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    return head + await reader.readexactly(length)


def _packet_id(publish: bytes) -> int:
    _, body_at = packets.decode_varint(publish, 1) or (0, 0)
    topic_end = body_at + 2 + int.from_bytes(publish[body_at : body_at + 2], "big")
    return int.from_bytes(publish[topic_end : topic_end + 2], "big")


def messages(n: int) -> list[tuple[str, bytes]]:
    return [(f"fleet/alerts/k/D{i}", f'{{"i":{i}}}'.encode()) for i in range(n)]


async def test_every_message_is_acked_within_the_window_and_encoded_as_the_codec_says() -> None:
    async with Broker().serving() as broker:
        async with Publisher(broker.url, client_id="t", window=7) as pub:
            await pub.publish(messages(50), retain=True)
            await pub.wait_acked(5)
        assert (pub.sent, pub.acked, pub.outstanding) == (50, 50, 0)
        expected = [
            packets.publish_packet(topic, payload, packet_id=i + 1, retain=True)
            for i, (topic, payload) in enumerate(messages(50))
        ]
        assert broker.publishes == expected
        connect = broker.connects[0]
        assert connect[9] == 0xC2  # username, password, clean session
        assert connect.endswith(b"\x00\x01t\x00\x06alerts\x00\x06s3cret")
        assert broker.disconnects == [b"\xe0\x00"]


async def test_the_window_bounds_what_is_unacknowledged() -> None:
    held: list[int] = []

    def answer(_n: int, pid: int) -> bytes:
        held.append(pid)
        return b""  # ack nothing yet

    async with (
        Broker(answer).serving() as broker,
        Publisher(broker.url, client_id="t", window=10) as pub,
    ):
        task = asyncio.create_task(pub.publish(messages(25)))
        await asyncio.sleep(0.2)
        assert not task.done()
        assert (pub.sent, pub.outstanding) == (10, 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_refused_connack_raises_connect_error_with_its_reason() -> None:
    async with Broker(connack=b"\x20\x02\x00\x05").serving() as broker:
        with pytest.raises(ConnectError, match="not authorised") as err:
            await Publisher(broker.url, client_id="t").connect()
        assert err.value.code == 5


async def test_no_broker_is_a_connect_error() -> None:
    with pytest.raises(ConnectError, match="cannot connect"):
        await Publisher(f"mqtt://127.0.0.1:{free_port()}", client_id="t").connect()


async def test_a_lost_connection_raises_with_the_unacked_count() -> None:
    def answer(n: int, pid: int) -> bytes | None:
        return puback(pid) if n < 30 else None  # acks 30, then hangs up

    async with Broker(answer).serving() as broker:
        pub = Publisher(broker.url, client_id="t")
        await pub.connect()
        await pub.publish(messages(40))
        with pytest.raises(ConnectionLostError, match="10 messages unacknowledged") as err:
            await pub.wait_acked(5)
        assert err.value.unacked == 10
        assert pub.acked == 30
        with pytest.raises(ConnectionLostError) as err:
            await pub.publish(messages(3))
        assert err.value.written == 0
        await pub.close()


async def test_a_new_connection_resends_what_the_lost_one_left_unacked() -> None:
    def answer(n: int, pid: int) -> bytes | None:
        return puback(pid) if n < 30 or n >= 40 else None  # the first connection dies at 30

    async with Broker(answer).serving() as broker:
        old = Publisher(broker.url, client_id="t")
        await old.connect()
        await old.publish(messages(40))
        with pytest.raises(ConnectionLostError):
            await old.wait_acked(5)
        new = Publisher(broker.url, client_id="t")
        await new.connect()
        assert new.resend_unacked(old) == 10
        await new.wait_acked(5)
        assert (old.acked + new.acked, old.outstanding, new.outstanding) == (40, 0, 0)
        await new.close()
        await old.close()


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        pytest.param(b"\x40\x03\x00\x01\x00", "PUBACK of 3 bytes", id="v3 PUBACK with a reason"),
        pytest.param(b"\x40\x02\x00\x00", "packet id 0", id="PUBACK for id 0"),
        pytest.param(b"\x30\x05\x00\x01a\x00\x01", "unexpected PUBLISH", id="a PUBLISH"),
        pytest.param(b"\x90\x03\x00\x01\x01", "unexpected SUBACK", id="a SUBACK"),
        pytest.param(b"\x40\x84\x80\x80\x80\x01", "longer than 4 bytes", id="bad length"),
    ],
)
async def test_what_the_checked_reader_refuses_ends_the_connection(reply: bytes, why: str) -> None:
    async with (
        Broker(lambda _n, _pid: reply).serving() as broker,
        Publisher(broker.url, client_id="t") as pub,
    ):
        await pub.publish(messages(1))
        with pytest.raises(ConnectionLostError, match=why) as err:
            await pub.wait_acked(5)
        assert err.value.unacked == 1


async def test_mqtt5_refusals_and_no_subscribers() -> None:
    def answer(n: int, pid: int) -> bytes:
        return puback(pid, 0x87 if n == 2 else 0x10)

    async with Broker(answer, connack=b"\x20\x03\x00\x00\x00").serving() as broker:
        async with Publisher(broker.url, client_id="t", v5=True) as pub:
            await pub.publish(messages(5))
            with pytest.raises(PublishError, match=r"1 of 5 messages refused .*not authorised"):
                await pub.wait_acked(5)
        assert pub.outstanding == 0
        assert broker.publishes[0] == packets.publish_packet(
            "fleet/alerts/k/D0", b'{"i":0}', packet_id=1, v5=True
        )


async def test_acks_that_never_come_raise_after_the_timeout() -> None:
    async with (
        Broker(lambda _n, _pid: b"").serving() as broker,
        Publisher(broker.url, client_id="t") as pub,
    ):
        await pub.publish(messages(4))
        with pytest.raises(PublishError, match="4 of 4 messages not acknowledged") as err:
            await pub.wait_acked(0.2)
        assert err.value.unacked == 4


async def test_qos0_needs_no_acks() -> None:
    async with Broker(lambda _n, _pid: b"").serving() as broker:
        async with Publisher(broker.url, client_id="t") as pub:
            await pub.publish(messages(3), qos=0)
            await pub.wait_acked(1)
        await asyncio.sleep(0.05)
        assert broker.publishes[0] == packets.publish_packet("fleet/alerts/k/D0", b'{"i":0}', qos=0)


async def test_mqtt5_receive_maximum_bounds_the_window() -> None:
    connack = b"\x20\x06\x00\x00\x03\x21\x00\x05"  # Receive Maximum 5
    async with (
        Broker(lambda _n, _pid: b"", connack=connack).serving() as broker,
        Publisher(broker.url, client_id="t", v5=True, window=100) as pub,
    ):
        task = asyncio.create_task(pub.publish(messages(8)))
        await asyncio.sleep(0.2)
        assert (pub.window, pub.sent, pub.outstanding) == (5, 5, 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
