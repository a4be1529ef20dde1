"""fleetd's HTTP ingest under load: 50 clients each posting 500-reading batches of the same N
readings the MQTT drain stored, to a `fleetd run` of their own (a fresh database), every
answer waited for (sent only after commit). Readings/s from the first request to the last
answer, and each request's time."""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from fleet_harness import free_port
from fleetsim.bench.databases import ensure_days, new_database
from fleetsim.bench.processes import cpu_seconds, fleetd, peak_rss_mb

CLIENTS = 50
BATCH = 500


def _bodies(messages: list[tuple[str, bytes]]) -> list[bytes]:
    """The readings as JSON arrays of BATCH, in publish order."""
    payloads = [payload for _, payload in messages]
    return [
        b"[" + b",".join(payloads[i : i + BATCH]) + b"]" for i in range(0, len(payloads), BATCH)
    ]


async def _ready(url: str, proc_alive: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not proc_alive():
                raise RuntimeError("fleetd exited before its HTTP ingest was ready")
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("fleetd's HTTP ingest not ready in time")


async def http_ingest_stage(
    admin_url: str, mqtt: str, messages: list[tuple[str, bytes]], start: datetime
) -> dict[str, Any]:
    """Post every reading over HTTP, CLIENTS at a time; the figures."""
    url = await new_database(admin_url, "bench_http_ingest")
    await ensure_days(url, start, start + timedelta(days=3))
    token = secrets.token_hex(16)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bodies = _bodies(messages)
    with tempfile.TemporaryDirectory(prefix="bench-http-ingest-") as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.write_text(token + "\n")
        os.chmod(tokens, 0o600)
        env = {
            "FLEET_INGEST_HTTP_ADDR": f"127.0.0.1:{port}",
            "FLEET_INGEST_TOKENS_FILE": str(tokens),
        }
        with fleetd(mqtt, url, "bench-http-ingest", **env) as proc:
            await _ready(base, lambda: proc.poll() is None)
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            for body in bodies:
                queue.put_nowait(body)
            seconds: list[float] = []
            counts = {"stored": 0, "duplicate": 0, "rejected": 0, "refused": 0}
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            connector = aiohttp.TCPConnector(limit=CLIENTS)

            async def client(session: aiohttp.ClientSession) -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    while True:
                        t = time.perf_counter()
                        async with session.post(base + "/v1/telemetry", data=body) as resp:
                            answer = await resp.json(content_type=None)
                            retry = resp.headers.get("Retry-After")
                        if resp.status == 200:
                            seconds.append(time.perf_counter() - t)
                            for key in ("stored", "duplicate", "rejected"):
                                counts[key] += answer[key]
                            break
                        counts["refused"] += 1  # 429 or 503: wait as told, then again
                        await asyncio.sleep(float(retry or 1))

            cpu0 = cpu_seconds(proc.pid)
            async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
                t0 = time.perf_counter()
                await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
                wall = time.perf_counter() - t0
            cpu = cpu_seconds(proc.pid) - cpu0
            rss = peak_rss_mb(proc.pid)
    n = len(messages)
    return {
        "clients": CLIENTS,
        "batch": BATCH,
        "requests": len(bodies),
        "readings": n,
        "perS": n / wall,
        "requestP50Ms": statistics.median(seconds) * 1000,
        "requestMaxMs": max(seconds) * 1000,
        "cpuUsPerReading": cpu / max(1, n) * 1e6,
        "peakRssMb": rss,
        **counts,
    }
