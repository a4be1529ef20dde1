"""The HTTP probe of issue 23 against candidate servers, each a process of its own:
`python -m fleetsim.bench.http_probe [--connections 2000] [--seconds 10] [KIND ...]`.

Per server: malformed requests (what each is answered), `wrk -c N` on /healthz, then N
connections sending never-ending headers with the server's RSS before, at peak and after,
then N connections each sending 60 headers of 8,000 bytes and never ending the head, likewise.
KIND is one of fleetsim.bench.http_servers.KINDS ("fleetsvc" is ours, fleetsvc.web)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from typing import Any

from fleet_harness import free_port
from fleetsim.bench.http_load import (
    endless_headers,
    large_headers,
    malformed_statuses,
    rate,
    server_process,
    trivial_server_argv,
)
from fleetsim.bench.http_servers import KINDS


def probe(argv: list[str], port: int, connections: int, seconds: float) -> dict[str, Any]:
    """Every probe case against the server `argv` starts on `port`."""
    out: dict[str, Any] = {}
    with server_process(argv, port) as proc:
        out["malformed"] = asyncio.run(malformed_statuses("127.0.0.1", port))
        out["rate"] = asdict(rate("127.0.0.1", port, "/healthz", connections, seconds))
    with server_process(argv, port) as proc:
        flood = endless_headers("127.0.0.1", port, proc.pid, connections, seconds)
        out["flood"] = asdict(asyncio.run(flood))
    with server_process(argv, port) as proc:
        heads = large_headers("127.0.0.1", port, proc.pid, connections, seconds)
        out["largeHeadersFlood"] = asdict(asyncio.run(heads))
    return out


def main(argv: list[str] | None = None) -> int:
    """Probe each server KIND and print one JSON object per server."""
    parser = argparse.ArgumentParser(prog="fleetsim.bench.http_probe", description=__doc__)
    parser.add_argument("kinds", nargs="*", default=[*KINDS])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    for kind in args.kinds:
        port = free_port()
        result = probe(trivial_server_argv(kind, port), port, args.connections, args.seconds)
        print(json.dumps({"server": kind, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
