"""The simulator's fast publisher on the shared one: connections used in turn, a lost
connection replaced and its unacknowledged messages resent, every message acked once."""

from __future__ import annotations

import pytest

from fleetsim.publisher import MqttPublisher, PublisherError
from tests.unit.test_publisher import Broker, messages, puback


async def test_messages_spread_over_the_connections_and_all_are_acked() -> None:
    async with Broker().serving() as broker:
        pub = MqttPublisher(broker.url, connections=2, window=100)
        await pub.connect()
        await pub.publish(messages(2500))
        await pub.close(5)
        assert (pub.sent, pub.acked, pub.outstanding, pub.errors) == (2500, 2500, 0, 0)
        assert len(broker.connects) == 2


async def test_a_lost_connection_is_replaced_and_what_it_left_unacked_is_resent() -> None:
    hung_up = False

    def answer(n: int, pid: int) -> bytes | None:
        nonlocal hung_up
        if n == 700 and not hung_up:  # the first connection dies after 700 acks
            hung_up = True
            return None
        return puback(pid)

    async with Broker(answer).serving() as broker:
        pub = MqttPublisher(broker.url, connections=1, window=1000)
        await pub.connect()
        await pub.publish(messages(3000))
        await pub.close(10)
        assert (pub.sent, pub.acked, pub.outstanding, pub.errors) == (3000, 3000, 0, 1)
        assert len(broker.connects) == 2
        topics = {p[4 : 4 + p[3]] for p in broker.publishes}  # 2-byte lengths: topics < 128 B
        assert len(topics) == 3000


async def test_a_broker_that_refuses_is_a_publisher_error() -> None:
    async with Broker(connack=b"\x20\x02\x00\x04").serving() as broker:
        with pytest.raises(PublisherError, match="bad username or password"):
            await MqttPublisher(broker.url).connect()
