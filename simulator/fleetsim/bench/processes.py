"""fleetd as a process for the benchmark, and what it cost (CPU seconds, peak RSS from /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def fleetd(
    mqtt_url: str, db_url: str, client_id: str, *, code: str | None = None, **extra_env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`fleetd run` as a process; `code` is another checkout whose daemon/ is imported instead."""
    env = os.environ | {
        "FLEET_MQTT_URL": mqtt_url,
        "FLEET_DATABASE_URL": db_url,
        "FLEET_CLIENT_ID": client_id,
        "FLEET_HTTP_ADDR": "off",
        "FLEET_LOG_LEVEL": "warning",
        "FLEET_MAX_PAST_DAYS": "30",
        **extra_env,
    }
    if code is not None:
        env["PYTHONPATH"] = f"{code}/daemon:{code}/simulator"
    proc = subprocess.Popen([str(BIN / "fleetd"), "run"], env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
