"""The harness's network namespaces: a veth link that works, is cut silently (no reset, only
timeouts), comes back, and leaves nothing behind even when the test fails."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fleet_harness import PostgresServer
from fleet_harness.netns import NetNamespace, netns_unavailable, wait_gone

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or ""),
]

# A one-line TCP server: answers "ok" to every connection (runs inside the namespace).
_SERVER = (
    "import socket,sys\n"
    "s=socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
    "print('listening', flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.sendall(b'ok'); c.close()\n"
)


@pytest.fixture
def ns() -> Iterator[NetNamespace]:
    with NetNamespace() as namespace:
        yield namespace


def _serve(ns: NetNamespace, port: int) -> subprocess.Popen[str]:
    proc = ns.popen(
        [sys.executable, "-c", _SERVER, ns.ns_ip, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "listening"
    return proc


def _answer(host: str, port: int, timeout_s: float = 1.0) -> str:
    """ "ok", "timeout" (packets dropped) or the OSError's name (e.g. a reset)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            return sock.recv(2).decode()
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__


def test_a_cut_link_drops_packets_silently_and_comes_back(ns: NetNamespace) -> None:
    _serve(ns, 7001)
    _serve(ns, 7002)
    assert _answer(ns.ns_ip, 7001) == "ok"

    ns.cut()
    assert ns.is_cut
    assert _answer(ns.ns_ip, 7001) == "timeout"  # no RST, no ICMP: only silence
    assert _answer(ns.ns_ip, 7002) == "timeout"

    ns.restore()
    assert _answer(ns.ns_ip, 7001) == "ok"

    ns.cut(7001)  # one port only: the rest of the link stays up
    assert _answer(ns.ns_ip, 7001) == "timeout"
    assert _answer(ns.ns_ip, 7002) == "ok"
    ns.restore()
    assert _answer(ns.ns_ip, 7001) == "ok"


def test_a_process_inside_reaches_the_root_side_address(ns: NetNamespace) -> None:
    with socket.create_server((ns.host_ip, 0)) as server:
        port = server.getsockname()[1]
        client = [
            sys.executable,
            "-c",
            f"import socket; socket.create_connection(('{ns.host_ip}', {port}), timeout=2)",
        ]
        assert ns.run(client).returncode == 0
    assert ns.host_url(f"postgresql://u@127.0.0.1:{port}/db?x=1") == (
        f"postgresql://u@{ns.host_ip}:{port}/db?x=1"
    )


def test_everything_is_removed_even_when_the_test_fails() -> None:
    with pytest.raises(RuntimeError, match="boom"), NetNamespace() as ns:  # noqa: PT012
        name, host_if = ns.name, ns.host_if
        proc = _serve(ns, 7003)
        ns.cut()
        raise RuntimeError("boom")
    assert proc.poll() is not None
    assert wait_gone(name)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert host_if not in links.stdout


def test_a_harness_postgres_is_reachable_from_inside_until_cut(ns: NetNamespace) -> None:
    probe = (
        "import asyncio, sys, asyncpg\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(sys.argv[1], timeout=2)\n"
        "    print(await conn.fetchval('SELECT 1'))\n"
        "asyncio.run(main())\n"
    )
    with PostgresServer(listen=("127.0.0.1", ns.host_ip), trust=(str(ns.subnet),)) as pg:
        url = ns.host_url(pg.url)
        assert ns.run([sys.executable, "-c", probe, url]).stdout.strip() == "1"
        ns.cut(pg.port)
        assert "TimeoutError" in ns.run([sys.executable, "-c", probe, url]).stderr
