"""Load and hostile clients for HTTP servers, shared by the probe (`fleetsim.bench.http_probe`)
and the bench's HTTP stage: keep-alive request rate (wrk when installed, else an asyncio
client), connections whose request head never ends (one endless header, or many large ones)
while the server's memory is sampled, and malformed requests that RFC 9112 wants refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 5.0
LARGE_HEADERS = 60  # with Host, within a server's 64 headers
LARGE_HEADER_BYTES = 8000  # each line, name and CRLF included: within 8,190 bytes a field


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` now, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU time (user + system) process `pid` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process(
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server started with `argv`, once `port` accepts connections; killed at the end."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not listen on {port} within 30 s")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def trivial_server_argv(kind: str, port: int) -> list[str]:
    """argv of one of fleetsim.bench.http_servers' trivial servers."""
    return [sys.executable, "-m", "fleetsim.bench.http_servers", kind, str(port)]


# --- request rate -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """What a keep-alive load run measured."""

    tool: str
    connections: int
    requests_per_s: float
    timeouts: int
    errors: int
    max_latency_ms: float


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk_rate(url: str, connections: int, seconds: float, threads: int = 2) -> Rate:
    """`wrk -c connections` on `url` (keep-alive), timeouts counted at 5 s."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={TIMEOUT_S:.0f}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    connect = read = write = timeout = 0
    if errors:
        connect, read, write, timeout = (int(g) for g in errors.groups())
    return Rate(
        "wrk",
        connections,
        rps,
        timeout,
        connect + read + write + (int(non2xx.group(1)) if non2xx else 0),
        _ms(latency.group(1)) if latency else float("nan"),
    )


async def asyncio_rate(
    host: str,
    port: int,
    path: str,
    connections: int,
    seconds: float,
) -> Rate:
    """The same measure without wrk: `connections` keep-alive clients asking `path` in a loop
    (one process, so this measures the client as much as the server on a small machine)."""
    done = timeouts = errors = 0
    worst = 0.0
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done, timeouts, errors, worst
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
        except TimeoutError:
            timeouts += 1
            return
        except OSError:
            errors += 1
            return
        try:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                worst = max(worst, time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                done += 1
        except TimeoutError:
            timeouts += 1
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.monotonic() - started
    return Rate("asyncio", connections, done / elapsed, timeouts, errors, worst * 1000)


def rate(host: str, port: int, path: str, connections: int, seconds: float) -> Rate:
    """wrk if it is installed (`make sysdeps`), else the asyncio client."""
    if shutil.which("wrk"):
        return wrk_rate(f"http://{host}:{port}{path}", connections, seconds)
    return asyncio.run(asyncio_rate(host, port, path, connections, seconds))


# --- request heads that never end ----------------------------------------------------------


@dataclass(frozen=True)
class Flood:
    """A run of connections that each send a request head that never ends."""

    connections: int
    seconds: float
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    cut_by_server: int
    """How many times the server closed such a connection (each worker reconnects at once)."""
    refused: int


async def _flood(
    host: str,
    port: int,
    pid: int,
    connections: int,
    seconds: float,
    *,
    send: Callable[[asyncio.StreamReader, asyncio.StreamWriter, float], Awaitable[None]],
) -> Flood:
    """`connections` workers, each opening a connection and running `send` on it until the
    deadline (its third argument); when the server cuts it (an OSError, or `send` returning
    before the deadline), the worker reconnects. The server's RSS (process `pid`) is sampled
    every 100 ms; "after" is 2 s after the end."""
    before = rss_mb(pid)
    peak = before
    cut = refused = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal cut, refused
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            except (OSError, TimeoutError):
                refused += 1
                await asyncio.sleep(0.1)
                continue
            try:
                await send(reader, writer, deadline)
                if time.monotonic() < deadline:
                    cut += 1
            except TimeoutError:
                pass  # the server stopped reading: the head stays unfinished, as intended
            except OSError:
                cut += 1
            finally:
                writer.transport.abort()

    async def sample() -> None:
        nonlocal peak
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.1)

    await asyncio.gather(sample(), *(worker() for _ in range(connections)))
    await asyncio.sleep(2)
    peak = max(peak, rss_mb(pid))
    return Flood(connections, seconds, before, peak, rss_mb(pid), cut, refused)


async def endless_headers(
    host: str, port: int, pid: int, connections: int, seconds: float, *, chunk_bytes: int = 16384
) -> Flood:
    """`connections` workers, each sending a request line, a Host and then one header value
    that never ends, reconnecting when cut; the server's RSS sampled meanwhile."""
    head = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Never-Ends: ".encode()
    filler = b"a" * chunk_bytes

    async def send(_: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float) -> None:
        writer.write(head)
        while time.monotonic() < deadline:
            writer.write(filler)
            await asyncio.wait_for(writer.drain(), max(0.1, deadline - time.monotonic()))
            await asyncio.sleep(0.01)

    return await _flood(host, port, pid, connections, seconds, send=send)


async def large_headers(
    host: str,
    port: int,
    pid: int,
    connections: int,
    seconds: float,
    *,
    headers: int = LARGE_HEADERS,
    header_bytes: int = LARGE_HEADER_BYTES,
) -> Flood:
    """`connections` workers, each sending a request line, a Host and `headers` whole header
    lines of `header_bytes` each (every one within a per-field limit of 8,190 bytes, the lot
    within a count of 64), then stalling without the blank line that ends the head; when the
    server answers or cuts it, the worker reconnects. The server's RSS sampled meanwhile."""
    lines = [
        b"X-Large-%02d: %s\r\n" % (i, b"a" * (header_bytes - len(b"X-Large-00: \r\n")))
        for i in range(headers)
    ]
    head = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n".encode()

    async def send(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float
    ) -> None:
        writer.write(head)
        for line in lines:  # one line at a time: the client holds little of 3,000 heads
            writer.write(line)
            await asyncio.wait_for(writer.drain(), max(0.1, deadline - time.monotonic()))
        # the head stays unfinished: wait for the server's answer or cut, or the deadline
        await asyncio.wait_for(reader.read(), max(0.1, deadline - time.monotonic()))

    return await _flood(host, port, pid, connections, seconds, send=send)


# --- RFC 9112 requests a server must refuse -----------------------------------------------------

MALFORMED = {
    "duplicate Content-Length": (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"
    ),
    "missing Host": b"GET /healthz HTTP/1.1\r\n\r\n",
    "space before colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n",
    "header without colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "obs-fold": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
}


async def status_of(host: str, port: int, raw: bytes) -> str:
    """The status code a server answers `raw` with ("closed" when it just hangs up)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
    except (OSError, TimeoutError):
        return "closed"
    finally:
        writer.close()
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "closed"


async def malformed_statuses(host: str, port: int) -> dict[str, str]:
    """What the server answers to each of MALFORMED."""
    return {name: await status_of(host, port, raw) for name, raw in MALFORMED.items()}
