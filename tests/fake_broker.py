"""A scripted fake MQTT broker node on a free loopback port, for what real brokers do only when
they are in trouble: hang up before CONNACK (a node going down, a cluster election), close right
after CONNACK (another client took our client id), go mute (a hung process)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Literal, cast

from fleet_harness import free_port
from fleetsvc.mqtt import packets

Answer = Literal["hangup", "refuse", "deny", "accept", "close", "mute"]
"""hangup: close before CONNACK; refuse: CONNACK "unacceptable protocol version"; deny: CONNACK
"not authorised" (0x87, 3.1.1: 0x05), as Mosquitto answers a wrong password; accept:
CONNACK, SUBACK, PINGRESP; close: CONNACK then close at once; mute: CONNACK, SUBACK, then
nothing more (the socket stays open and the kernel keeps acknowledging)."""


class ScriptedNode:
    """`answer(protocol_level, n)` decides how the n-th CONNECT (0-based) is answered;
    `connects` records the protocol level (4: 3.1.1, 5: MQTT 5) of each CONNECT."""

    def __init__(
        self, answer: Callable[[int, int], Answer], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.answer = answer
        self.host = host
        self.port = port or free_port()
        self.connects: list[int] = []
        self.pings = 0

    @property
    def url(self) -> str:
        return f"mqtt://fleet:s3cret@{self.host}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind, body = await _read_packet(reader)
        assert kind == packets.CONNECT, kind
        level = body[6]
        what = self.answer(level, len(self.connects))
        self.connects.append(level)
        v5 = level == 5
        if what == "hangup":
            return
        if what == "refuse":
            writer.write(b"\x20\x03\x00\x84\x00" if v5 else b"\x20\x02\x00\x01")
            await writer.drain()
            return
        if what == "deny":
            writer.write(b"\x20\x03\x00\x87\x00" if v5 else b"\x20\x02\x00\x05")
            await writer.drain()
            return
        writer.write(b"\x20\x03\x00\x00\x00" if v5 else b"\x20\x02\x00\x00")
        await writer.drain()
        if what == "close":
            return
        while True:
            kind, body = await _read_packet(reader)
            if kind == packets.SUBSCRIBE:
                granted = bytes([1] * 2)
                writer.write(bytes([0x90, 2 + v5 + 2]) + body[:2] + b"\x00" * v5 + granted)
            elif kind == packets.PINGREQ:
                self.pings += 1
                if what == "mute":
                    continue
                writer.write(b"\xd0\x00")
            elif kind == packets.DISCONNECT:
                return
            await writer.drain()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[ScriptedNode]:
        server = await asyncio.start_server(self._handle, self.host, self.port)
        try:
            yield self
        finally:
            server.close()
            await asyncio.sleep(0.05)  # the handlers see their clients' EOF and close


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length = shift = 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first >> 4, await reader.readexactly(length)


async def _serve_forever(host: str, port: int, answer: Answer) -> None:
    async with ScriptedNode(lambda _level, _n: answer, host=host, port=port).serving():
        print("listening", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    # python -m tests.fake_broker HOST PORT ANSWER: one node, e.g. inside a network namespace.
    asyncio.run(_serve_forever(sys.argv[1], int(sys.argv[2]), cast(Answer, sys.argv[3])))
