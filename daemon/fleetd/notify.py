"""The systemd notify protocol (sd_notify(3)) without libsystemd: one datagram per state change
to the AF_UNIX socket named by NOTIFY_SOCKET, and watchdog pings only while fleetd is healthy.

With `Type=notify` and `WatchdogSec=30` in the unit, systemd starts counting fleetd as up at
READY=1, and restarts it when no WATCHDOG=1 arrives for 30 s. We ping only while the broker is
connected, the database reachable and flushes commit, so a wedged daemon gets restarted while a
slow-but-working one does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from fleetd.ops.health import blocked, check, summary

if TYPE_CHECKING:
    from fleetd.service import Daemon

log = structlog.get_logger("fleetd.notify")

# How often the task looks at the daemon (stopping, health). Pings go out every watchdog
# interval; this only bounds how late STOPPING=1 and a STATUS= change can be.
TICK_S = 0.5
# Without a watchdog, STATUS= is refreshed this often.
STATUS_INTERVAL_S = 10.0


class SystemdNotifier:
    """Sends sd_notify messages; every method is a no-op when NOTIFY_SOCKET is unset."""

    def __init__(self, address: str | None = None) -> None:
        # "@name" is a Linux abstract socket: the leading "@" stands for a NUL byte.
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SystemdNotifier:
        """A notifier for the socket systemd passed us in NOTIFY_SOCKET (if any)."""
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """True when there is a socket to talk to (we run under systemd with Type=notify)."""
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send `fields` ("KEY=value") as one datagram; return whether it was sent.

        Never raises: a full or vanished socket must not take down ingestion (systemd will
        notice the missing pings on its own).
        """
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("systemd_notify_failed", error=str(exc))
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: start-up finished (systemd completes `systemctl start` now)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """WATCHDOG=1: we are alive and healthy; resets systemd's WatchdogSec timer."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: a graceful shutdown began."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """STATUS=<text>: one line shown by `systemctl status`."""
        return self.notify(f"STATUS={text.replace(chr(10), ' ')}")

    def close(self) -> None:
        """Close the socket (a later call reopens it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC (as sd_watchdog_enabled(3)
    advises), or None when systemd did not enable the watchdog for this process."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    # WATCHDOG_PID names the process the watchdog is meant for; a child that inherited the
    # environment must not ping on the parent's behalf.
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


async def notifier_task(daemon: Daemon, notifier: SystemdNotifier | None = None) -> None:
    """Companion task: READY=1 once subscribed and the database is reachable, WATCHDOG=1 every
    interval while healthy, STATUS= summaries, and STOPPING=1 when the daemon stops."""
    notifier = notifier or SystemdNotifier.from_env()
    if not notifier.enabled:
        return
    interval = watchdog_interval()
    stopping_sent = False
    try:
        # Ready once working, or once waiting on what only an operator can fix (a login
        # refused, the schema not migrated): the start is over either way, and systemd's start
        # timeout and restarts would only repeat it. STATUS= names the cause.
        while not (daemon.ready.is_set() and daemon.flusher.healthy) and not blocked(daemon):
            if daemon.stopping:
                break
            await asyncio.sleep(TICK_S / 5)
        if not daemon.stopping:
            waiting = blocked(daemon)
            notifier.ready(f"waiting: {'; '.join(waiting)}" if waiting else summary(daemon))
            log.info("systemd_ready", watchdog_interval_s=interval)
        next_ping = next_status = 0.0
        while not daemon.stopping:
            now = time.monotonic()
            health = check(daemon, now)
            # Unhealthy: no ping. systemd restarts us after WatchdogSec unless we recover.
            # Refused (a login, the schema): pinged, as a restart cannot fix it and fleetd
            # retries by itself; the cause is in STATUS=, /healthz and the log.
            alive = health.ok or bool(health.details.get("waiting_for_operator"))
            if interval is not None and now >= next_ping and alive:
                notifier.watchdog()
                next_ping = now + interval
            if now >= next_status:
                text = summary(daemon)
                if not health.ok:
                    text = f"unhealthy: {'; '.join(health.reasons)} | {text}"
                notifier.status(text)
                next_status = now + min(interval or STATUS_INTERVAL_S, STATUS_INTERVAL_S)
            await asyncio.sleep(TICK_S if interval is None else min(TICK_S, interval))
        stopping_sent = notifier.stopping("stopping: flushing buffered messages")
        # Stay alive (and cancellable) until run() cancels the companions after its final flush.
        await asyncio.Event().wait()
    finally:
        if not stopping_sent:
            notifier.stopping()
        with contextlib.suppress(OSError):
            notifier.close()
