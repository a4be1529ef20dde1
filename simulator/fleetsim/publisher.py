"""The simulator's fast MQTT publisher: `connections` sockets of the shared QoS 1 publisher
(`fleetsvc.mqtt.publisher`: pre-encoded PUBLISH packets, a thousand per write, a window of
outstanding packet ids per connection, PUBACKs read by the checked reader), used in turn.

"Sent" means written to a socket; "acked" means the broker has it (QoS 1). `close()` returns
only when every QoS 1 message was acknowledged. When a connection is lost, it reconnects with
backoff and resends every unacknowledged packet (at-least-once: the daemon's keys absorb a copy
the broker already had); after `max_reconnect_s` without a connection it gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Sequence

import structlog

from fleetsvc.mqtt.address import BrokerAddress
from fleetsvc.mqtt.publisher import (
    MAX_WINDOW,
    ConnectError,
    ConnectionLostError,
    Publisher,
    PublishError,
)

log = structlog.get_logger("fleetsim.publisher")

_CHUNK = 1000  # messages per call to a connection (one socket write)


class PublisherError(Exception):
    """The broker refused the connection, could not be reached, or never acknowledged."""


class MqttPublisher:
    """Pipelined QoS 0/1 publisher over `connections` sockets to one broker."""

    def __init__(
        self,
        url: str,
        *,
        qos: int = 1,
        connections: int = 2,
        window: int = 5000,
        client_id_prefix: str = "fleet-sim",
        keepalive_s: int = 60,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = 10.0,
        max_reconnect_s: float = 60.0,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("--qos must be 0 or 1")
        if connections < 1:
            raise ValueError("--connections must be >= 1")
        self.address = BrokerAddress.parse(url)
        self.qos = qos
        self.window = max(100, min(window, MAX_WINDOW))
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.max_reconnect_s = max_reconnect_s
        self._ssl = ssl_context or (ssl.create_default_context() if self.address.tls else None)
        tag = f"{client_id_prefix}-{os.getpid()}-{id(self) % 100_000}"
        self._links = [self._publisher(f"{tag}-{k}") for k in range(connections)]
        self._retired_acked = 0  # acks counted by connections that were lost since
        self._sent = 0
        self._reconnects = 0
        self._rr = 0

    def _publisher(self, client_id: str) -> Publisher:
        return Publisher(
            self.address,
            client_id=client_id,
            window=self.window,
            keepalive_s=self.keepalive_s,
            connect_timeout_s=self.connect_timeout_s,
            ssl_context=self._ssl,
        )

    # -- counters --
    @property
    def sent(self) -> int:
        """Messages written to a socket (resends not counted twice)."""
        return self._sent

    @property
    def acked(self) -> int:
        """QoS 1 messages the broker acknowledged."""
        return self._retired_acked + sum(p.acked for p in self._links)

    @property
    def outstanding(self) -> int:
        """QoS 1 messages sent and not yet acknowledged."""
        return sum(p.outstanding for p in self._links)

    @property
    def errors(self) -> int:
        """Connection losses (each followed by a reconnect and resend)."""
        return self._reconnects

    # -- lifecycle --
    async def connect(self) -> None:
        """Open every connection; raises PublisherError when the broker refuses or is away."""
        results = await asyncio.gather(*(p.connect() for p in self._links), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            for p in self._links:
                await p.close()
            if isinstance(failed[0], ConnectError):
                raise PublisherError(str(failed[0])) from failed[0]
            raise failed[0]

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Write every message; returns when all are on a socket (QoS 1: acks may be pending).

        Waits whenever a connection's window of unacknowledged messages is full, so memory
        stays bounded and the broker sets the pace.
        """
        for k in range(0, len(messages), _CHUNK):
            i = self._rr % len(self._links)
            self._rr += 1
            part = messages[k : k + _CHUNK]
            while part:
                try:
                    await self._links[i].publish(part, qos=self.qos)
                except ConnectionLostError as exc:
                    self._sent += exc.written
                    part = part[exc.written :]
                    await self._reconnect(i, exc)
                else:
                    self._sent += len(part)
                    part = part[:0]

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every QoS 1 message sent so far is acknowledged (reconnecting and
        resending when a connection is lost); TimeoutError after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        for i in range(len(self._links)):
            while True:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    await self._links[i].wait_acked(left)
                    break
                except ConnectionLostError as exc:
                    await self._reconnect(i, exc)
                except PublishError as exc:
                    raise TimeoutError(f"{self.outstanding} messages not acknowledged") from exc

    async def close(self, timeout_s: float = 120.0) -> None:
        """Wait for every acknowledgement, then DISCONNECT. Raises if acks never come."""
        try:
            if self.qos:
                await self.flush(timeout_s)
        finally:
            for p in self._links:
                with contextlib.suppress(OSError):
                    await p.close()

    async def abort(self) -> None:
        """Close every connection without waiting for acknowledgements (after a failure:
        close() would reconnect to wait for them, for max_reconnect_s more per connection)."""
        for p in self._links:
            with contextlib.suppress(OSError):
                await p.close()

    async def _reconnect(self, i: int, lost: ConnectionLostError) -> None:
        """Replace connection `i` by a new one with the same client id, with backoff, and
        resend what the lost one left unacknowledged; PublisherError after max_reconnect_s."""
        old = self._links[i]
        self._reconnects += 1
        log.warning("publisher_connection_lost", client_id=old.client_id, error=str(lost))
        await old.close()
        delay, waited = 0.2, 0.0
        while True:
            await asyncio.sleep(delay)
            waited += delay
            new = self._publisher(old.client_id)
            try:
                await new.connect()
                break
            except ConnectError as exc:
                if waited >= self.max_reconnect_s:
                    raise PublisherError(
                        f"{exc} (gave up after {waited:.0f} s; {old.outstanding} messages "
                        "unacknowledged)"
                    ) from exc
                delay = min(delay * 2, 5.0)
        # Clean session: the broker forgot everything unacknowledged; send it all again.
        self._retired_acked += old.acked
        resent = new.resend_unacked(old)
        self._links[i] = new
        log.info("publisher_reconnected", client_id=new.client_id, resent=resent)
