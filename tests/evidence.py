"""Evidence a failing test leaves behind, so a loss names its culprit: fleetd processes with
their JSON logs and counters, and `.test-artifacts/<test>/` holding the daemons' and the broker's
logs and a report when the test failed (kept out of git: .gitignore)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fleet_harness import MosquittoServer
from fleet_harness.broker_log import summary
from fleet_harness.publish import Publisher, PublishStats
from fleetd.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[1] / ".test-artifacts"
FAILED = pytest.StashKey[bool]()
"""Set on a test item when its setup or call phase failed (conftest's makereport hook)."""
BROKER = pytest.StashKey[MosquittoServer]()
"""The harness's Mosquitto of a test (set by the mqtt_url fixture), for its log."""


def failed(node: pytest.Item) -> bool:
    """Whether this test has failed so far (readable in fixture teardown)."""
    return node.stash.get(FAILED, False)


def artifact_dir(node: pytest.Item) -> Path:
    """`.test-artifacts/<test name>/`, created."""
    path = ARTIFACTS / re.sub(r"[^\w.-]+", "_", node.name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep(node: pytest.Item, *files: Path) -> None:
    """Copy `files` into the test's artifact directory if the test failed."""
    if failed(node):
        dest = artifact_dir(node)
        for f in files:
            if f.exists():
                shutil.copy(f, dest / f.name)


def log_events(log_path: Path, event: str) -> list[dict[str, Any]]:
    """Every record of `event` in a JSON log, oldest first (lines that are not JSON skipped)."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                out.append(record)
    return out


class FleetdProcess(subprocess.Popen[bytes]):
    """A `fleetd run` child whose JSON log is `log_path`."""

    log_path: Path

    def events(self, event: str) -> list[dict[str, object]]:
        """Every log record of this event, oldest first."""
        return log_events(self.log_path, event)

    def http_port(self) -> int | None:
        """The ops port it bound (FLEET_HTTP_ADDR is 127.0.0.1:0), once it logged it."""
        for record in self.events("http_listening"):
            if record.get("server") == "fleetd-ops":
                port = record.get("port")
                return port if isinstance(port, int) else None
        return None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log (for an error message)."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def spawn(settings: Settings, log_path: Path, **extra_env: str) -> FleetdProcess:
    """Start `fleetd run` as a real process configured like `settings`, logging JSON to
    `log_path` (a file, not a pipe nobody reads: a full pipe would block the daemon)."""
    env = (
        os.environ
        | {
            "FLEET_MQTT_URL": settings.mqtt_url,
            "FLEET_DATABASE_URL": settings.database_url,
            "FLEET_CLIENT_ID": settings.client_id,
            "FLEET_FLUSH_INTERVAL_MS": str(settings.flush_interval_ms),
            "FLEET_COMPACT_AFTER_DAYS": str(settings.compact_after_days),
            "FLEET_HTTP_ADDR": "127.0.0.1:0",
            "FLEET_LOG_FORMAT": "json",
        }
        | extra_env
    )
    with log_path.open("ab") as log:
        proc = FleetdProcess(
            [str(Path(sys.executable).parent / "fleetd"), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proc.log_path = log_path
    return proc


def _get_json(port: int, path: str) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def wait_ready(proc: FleetdProcess, timeout_s: float = 60.0) -> int:
    """Wait until the daemon answers /readyz with 200 (subscribed, database reachable); returns
    its ops port. Publishing before that loses messages: the broker acks and drops a message
    that no subscription matches (MQTT 5 says so in the PUBACK, 3.1.1 cannot)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"fleetd exited with {proc.returncode}:\n{proc.log_tail()}")
        port = proc.http_port()
        if port is not None:
            status, _ = await asyncio.to_thread(_get_json, port, "/readyz")
            if status == 200:
                return port
        if loop.time() > deadline:
            raise TimeoutError(f"fleetd not ready after {timeout_s:.0f} s:\n{proc.log_tail()}")
        await asyncio.sleep(0.1)


async def counters(proc: FleetdProcess) -> dict[str, object]:
    """The daemon's counters: from its `stopped` log line once it has exited, else from
    /healthz (received, written, duplicates, acked, ...)."""
    if proc.poll() is not None:
        stopped = proc.events("stopped")
        return dict(stopped[-1]) if stopped else {"exit": proc.returncode, "counters": "lost"}
    port = proc.http_port()
    if port is None:
        return {"counters": "not serving yet"}
    _, body = await asyncio.to_thread(_get_json, port, "/healthz")
    return body


class Stream:
    """Publishes `msgs` in chunks from a thread while the test's event loop watches the
    database; `join()` returns what the broker answered and re-raises the thread's error
    (PublishError names how many messages were not acked or had no subscriber)."""

    def __init__(
        self, url: str, msgs: Sequence[tuple[str, bytes]], *, chunk: int, window: int = 200
    ) -> None:
        self._url, self._msgs, self._chunk, self._window = url, msgs, chunk, window
        self.stats = PublishStats()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stream")

    def start(self) -> Stream:
        """Start publishing."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            pub = Publisher(self._url, "streamer", window=self._window)
        except BaseException as exc:
            self._error = exc
            return
        self.stats = pub.stats
        try:
            for i in range(0, len(self._msgs), self._chunk):
                pub.publish(self._msgs[i : i + self._chunk])
        except BaseException as exc:
            self._error = exc
        finally:
            pub.close()

    def raise_if_failed(self) -> None:
        """Raise the thread's error now if it already had one (for wait_for_count's check)."""
        if self._error is not None:
            raise self._error

    async def join(self) -> PublishStats:
        """Wait for the thread; raise its error if it had one."""
        await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error
        return self.stats


def reading_key(payload: bytes) -> tuple[str, datetime]:
    """(device id, timestamp) of a published reading: its history key."""
    body = json.loads(payload)
    return body.get("meterId") or body["vehicleId"], datetime.fromisoformat(body["timestamp"])


async def stored_keys(conn: asyncpg.Connection) -> list[tuple[str, datetime]]:
    """Every history key stored, both kinds (a key twice would be a doubled reading)."""
    rows = await conn.fetch(
        "SELECT meter_id AS id, ts FROM meter_readings UNION ALL "
        "SELECT vehicle_id, ts FROM vehicle_readings"
    )
    return [(r["id"], r["ts"]) for r in rows]


async def loss_report(
    node: pytest.Item,
    conn: asyncpg.Connection,
    msgs: Sequence[tuple[str, bytes]],
    *,
    publisher: PublishStats,
    daemons: Mapping[str, FleetdProcess | Mapping[str, object]],
    broker_log: Path | None = None,
) -> str | None:
    """None when every published reading is stored exactly once; else a report of who lost
    what: the publisher's answers from the broker, each daemon's counters, the broker's packet
    counts per client (`broker_log`, or the test's harness Mosquitto) and the first missing keys."""
    published = [reading_key(p) for _, p in msgs]
    stored = await stored_keys(conn)
    missing = set(published) - set(stored)
    doubled = len(stored) - len(set(stored))
    if not missing and not doubled and len(set(stored)) == len(set(published)):
        return None
    lines = [
        f"published {len(published)}, stored {len(stored)}: {len(missing)} missing, "
        f"{doubled} doubled, {len(set(stored) - set(published))} never published",
        f"publisher: {publisher}",
    ]
    for name, daemon in daemons.items():
        if isinstance(daemon, FleetdProcess):
            daemon_counters = await counters(daemon)
        else:
            daemon_counters = dict(daemon)
        wanted = ("received", "written", "duplicates", "acked", "acks_skipped", "rejected")
        lines.append(
            f"fleetd {name}: " + ", ".join(f"{k}={daemon_counters.get(k)}" for k in wanted)
        )
    if broker_log is None:
        broker = node.stash.get(BROKER, None)
        broker_log = broker.log_path if broker is not None else None
    if broker_log is not None and broker_log.exists():
        lines.append(summary(broker_log.read_text(errors="replace")))
    lines.append(f"first missing in publish order: {[k for k in published if k in missing][:5]}")
    return "\n".join(lines)


async def check_every_reading_once(
    node: pytest.Item,
    conn: asyncpg.Connection,
    msgs: Sequence[tuple[str, bytes]],
    *,
    publisher: PublishStats,
    daemons: Mapping[str, FleetdProcess | Mapping[str, object]],
) -> None:
    """Fail unless every published reading is stored exactly once, with loss_report() as the
    message (also in .test-artifacts/<test>/report.txt, next to the logs)."""
    report = await loss_report(node, conn, msgs, publisher=publisher, daemons=daemons)
    if report is not None:
        (artifact_dir(node) / "report.txt").write_text(report + "\n")
        pytest.fail(report)
