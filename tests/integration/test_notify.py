"""systemd notify protocol: READY/WATCHDOG/STATUS/STOPPING over a real AF_UNIX datagram socket,
and no watchdog pings while the daemon is unhealthy (so systemd restarts a wedged fleetd)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from fleetd.ingest.intake import Counters
from fleetd.notify import SystemdNotifier, notifier_task, watchdog_interval
from fleetd.service import Daemon
from fleetd.settings import Settings


class Listener:
    """Plays systemd's side: a datagram socket collecting every notify message."""

    def __init__(self, path: Path | str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append((time.monotonic(), data.decode()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._collect())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sock.close()

    def fields(self, since: float = 0.0) -> list[str]:
        """Every KEY=value line received after `since` (monotonic), in order."""
        return [f for t, m in self.messages if t >= since for f in m.split("\n")]

    async def wait_for(self, field: str, within: float = 20.0, since: float = 0.0) -> None:
        deadline = time.monotonic() + within
        while not any(f.startswith(field) for f in self.fields(since)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {field!r} in {self.fields(since)}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    lst = Listener(tmp_path / "notify.sock")
    lst.start()
    yield lst
    await lst.close()


@pytest.mark.integration
async def test_daemon_notifies_systemd(
    settings: Settings, listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # ping every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = Daemon(settings)
    daemon.companions.append(notifier_task)
    task = asyncio.create_task(daemon.run())
    try:
        await listener.wait_for("READY=1")
        ready_at = next(t for t, m in listener.messages if "READY=1" in m.split("\n"))
        await asyncio.sleep(1.6)
        pings = [f for f in listener.fields(ready_at) if f == "WATCHDOG=1"]
        assert len(pings) >= 3, listener.fields()
        status = [f for f in listener.fields() if f.startswith("STATUS=")]
        assert any("received 0, written 0, rejected 0, buffered 0" in s for s in status), status
        # Nothing before READY=1 is a watchdog ping: the watchdog starts with the service.
        assert "WATCHDOG=1" not in listener.fields()[: listener.fields().index("READY=1")]
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, timeout=15)
    await listener.wait_for("STOPPING=1", within=5)


class FakeBatcher:
    """len() = buffered messages; oldest_age_s() = how long the oldest one waited."""

    def __init__(self) -> None:
        self.n = 0
        self.oldest = 0.0

    def __len__(self) -> int:
        return self.n

    def oldest_age_s(self, now: float | None = None) -> float:
        return self.oldest


def _fake_daemon(*, flush_interval_ms: int = 200) -> SimpleNamespace:
    """Just the attributes the notifier and the health check read, under the test's control."""
    ready = asyncio.Event()
    ready.set()
    fake = SimpleNamespace(
        ready=ready,
        stopping=False,
        flusher=SimpleNamespace(
            healthy=True, last_error=None, connected_writers=1, replication=None, problem=None
        ),
        mqtt=SimpleNamespace(
            connected=True,
            url="mqtt://127.0.0.1:1883",
            last_error=None,
            refusal=None,
            generation=1,
            silent_s=lambda now=None: None,  # the broker answers its pings
            silence_s=lambda now=None: 0.0,
            refused_filters={},  # every filter granted
        ),
        batcher=FakeBatcher(),
        # The daemon's own counters: a counter added to the health check needs no edit here.
        counters=Counters(received=7, written=5, rejected=2, acked=5),
        settings=SimpleNamespace(flush_interval_ms=flush_interval_ms),
        last_flush_ok=True,
        last_flush_mono=time.monotonic(),
        in_flight=0,
        flush_age=0.0,  # age of the running transaction, set by the test
    )
    fake.oldest_flush_age_s = lambda now=None: fake.flush_age
    return fake


async def _pings_in(listener: Listener, seconds: float) -> int:
    since = time.monotonic()
    await asyncio.sleep(seconds)
    return listener.fields(since).count("WATCHDOG=1")


async def test_watchdog_pings_only_while_healthy(
    listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = _fake_daemon()
    notifier = SystemdNotifier(str(tmp_path / "notify.sock"))
    task = asyncio.create_task(notifier_task(daemon, notifier))  # type: ignore[arg-type]
    try:
        await listener.wait_for("READY=1", within=5)
        assert await _pings_in(listener, 0.6) >= 3

        # Database unreachable: no pings, STATUS says why.
        daemon.flusher.healthy = False
        daemon.flusher.last_error = "ConnectionRefusedError: connection refused"
        await asyncio.sleep(0.2)
        assert await _pings_in(listener, 1.0) == 0
        await listener.wait_for("STATUS=unhealthy: database unreachable", within=11, since=0)

        # Recovered: pings resume at once.
        daemon.flusher.healthy = True
        assert await _pings_in(listener, 0.6) >= 3

        # Broker gone: no pings.
        daemon.mqtt.connected = False
        await asyncio.sleep(0.2)
        assert await _pings_in(listener, 0.6) == 0
        daemon.mqtt.connected = True
        assert await _pings_in(listener, 0.6) >= 3

        # Stuck flush: rows waiting 11 s (> max(10 s, 5 x 0.2 s)) and no commit for as long.
        daemon.batcher.n, daemon.batcher.oldest = 50, 11.0
        daemon.last_flush_mono = time.monotonic() - 11
        await asyncio.sleep(0.2)
        assert await _pings_in(listener, 0.6) == 0
        # A commit just happened (the burst after an idle hour): healthy again.
        daemon.last_flush_mono = time.monotonic()
        assert await _pings_in(listener, 0.6) >= 3
        # Rows waiting only briefly after a long idle period is not stuck either.
        daemon.last_flush_mono = time.monotonic() - 3600
        daemon.batcher.oldest = 0.5
        assert await _pings_in(listener, 0.6) >= 3
        # One transaction hanging for 11 s with nothing buffered behind it: stuck.
        daemon.batcher.n = 0
        daemon.flush_age = 11.0
        await asyncio.sleep(0.2)
        assert await _pings_in(listener, 0.6) == 0
        daemon.flush_age = 0.0
        assert await _pings_in(listener, 0.6) >= 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await listener.wait_for("STOPPING=1", within=2)


async def test_notifier_sends_stopping_when_daemon_stops(
    listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    daemon = _fake_daemon()
    notifier = SystemdNotifier(str(tmp_path / "notify.sock"))
    task = asyncio.create_task(notifier_task(daemon, notifier))  # type: ignore[arg-type]
    await listener.wait_for("READY=1", within=5)
    daemon.stopping = True
    await listener.wait_for("STOPPING=1", within=2)
    assert "WATCHDOG=1" not in listener.fields()  # no WATCHDOG_USEC: watchdog off
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert listener.fields().count("STOPPING=1") == 1


async def test_not_ready_until_database_reachable(
    listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    daemon = _fake_daemon()
    daemon.flusher.healthy = False
    task = asyncio.create_task(
        notifier_task(daemon, SystemdNotifier(str(tmp_path / "notify.sock")))  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.5)
    assert listener.fields() == []
    daemon.flusher.healthy = True
    await listener.wait_for("READY=1", within=2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_abstract_socket_and_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"fleetd-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.status("hello")
        assert sock.recv(100) == b"STATUS=hello"
        notifier.close()
    finally:
        sock.close()
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    off = SystemdNotifier.from_env()
    assert not off.enabled
    assert not off.ready()
    assert not off.watchdog()
    # A socket that vanished is logged once, never raised into the daemon.
    gone = SystemdNotifier("/nonexistent/notify.sock")
    assert not gone.watchdog()
    assert not gone.watchdog()
    gone.close()


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}) == 1.0
    # Meant for another process (we inherited the environment): not ours to ping.
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None


async def test_ready_and_pinged_while_a_refusal_waits_for_the_operator(
    listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refused login at start: no 300 s "activating" and restart loop; STATUS= says why, and
    # the watchdog is fed (a restart cannot fix it), until the operator fixes it.
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = _fake_daemon()
    daemon.ready.clear()
    daemon.flusher.healthy = False
    daemon.flusher.problem = "the database refused the login (...): check the user and password"
    task = asyncio.create_task(
        notifier_task(daemon, SystemdNotifier(str(tmp_path / "notify.sock")))  # type: ignore[arg-type]
    )
    try:
        await listener.wait_for("READY=1", within=5)
        assert "STATUS=waiting: the database refused the login" in "\n".join(listener.fields())
        assert await _pings_in(listener, 0.6) >= 3
        # An outage, not a refusal: no pings (systemd restarts a daemon that stays unhealthy).
        daemon.flusher.problem = None
        await asyncio.sleep(0.2)
        assert await _pings_in(listener, 0.6) == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
