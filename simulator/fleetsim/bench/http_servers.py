"""Trivial HTTP servers: `/healthz` answering `{"status":"ok"}` on ours (fleetsvc.web, as
fleetd and fleetctl serve run it), on uvicorn (h11 or httptools) and on plain aiohttp, each a
process of its own so its memory is its own: `python -m fleetsim.bench.http_servers KIND PORT`.
uvicorn runs on its default event loop as installed ("auto": uvloop when it is installed, as
uvicorn[standard] would have it; asyncio's own here, where nothing installs uvloop), so the
comparison never handicaps the reference."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

KINDS = ("fleetsvc", "aiohttp", "uvicorn-h11", "uvicorn-httptools")
BACKLOG = 4096  # the same for every candidate: the kernel caps it at net.core.somaxconn
BODY = b'{"status":"ok"}\n'

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def trivial_asgi(scope: Scope, _receive: Receive, send: Send) -> None:
    """The least an ASGI app can do: one JSON body on every path."""
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def _uvicorn(http: str, port: int) -> None:
    import uvicorn  # noqa: PLC0415 (only the bench installs it)

    config = uvicorn.Config(
        trivial_asgi,
        host="127.0.0.1",
        port=port,
        http=http,
        backlog=BACKLOG,
        log_level="warning",
        loop="auto",
        access_log=False,
        lifespan="off",
    )
    asyncio.run(uvicorn.Server(config).serve())


def _aiohttp(port: int) -> None:
    from aiohttp import web  # noqa: PLC0415

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=BACKLOG).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def _fleetsvc(port: int) -> None:
    from aiohttp import web  # noqa: PLC0415

    from fleetsvc.web import Call, HttpServer, Route  # noqa: PLC0415

    async def healthz(_call: Call) -> web.StreamResponse:
        return web.Response(body=BODY, content_type="application/json")

    # No access log: the trivial servers it is compared with write none either.
    server = HttpServer(
        f"127.0.0.1:{port}",
        (Route("GET", "/healthz", healthz),),
        name="bench",
        access_log_level=None,
    )
    asyncio.run(server.run())


def main(argv: list[str]) -> int:
    """Serve KIND on 127.0.0.1:PORT until killed."""
    kind, port = argv[0], int(argv[1])
    if kind == "fleetsvc":
        _fleetsvc(port)
    elif kind == "aiohttp":
        _aiohttp(port)
    elif kind.startswith("uvicorn-"):
        _uvicorn(kind.removeprefix("uvicorn-"), port)
    else:
        print(f"unknown server {kind!r}; one of {', '.join(KINDS)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
