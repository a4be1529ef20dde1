"""The shared HTTP server (fleetsvc.web) in-process: the route table and its declared
parameters, one error mapping (400 with a reason, 500 without the exception's text), the token
on every route but public ones, the Host allow-list, the browser headers, static files, and
the limits a hostile client meets (header size, slowloris, connection cap, RFC 9112)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from aiohttp import web
from pydantic import Field

from fleetsvc.web import (
    BadRequestError,
    Call,
    Flag,
    HttpServer,
    Instant,
    NotFoundError,
    PathParams,
    Query,
    Route,
    Text,
    json_response,
    parse,
    parse_addr,
)
from tests.integration.test_ops_http import self_signed

TOKEN = "s3cret-token-for-tests-0123456789"


class UnknownThingError(Exception):
    """Stands for an application error the server maps to 404."""


async def raw(port: int, data: bytes) -> bytes:
    """Send `data`, read until the server closes (within 5 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def request(
    port: int, target: str, *, method: str = "GET", host: str = "localhost", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One request with Connection: close: (status, headers with lower-case names, body)."""
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    answer = await raw(
        port,
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n".encode(),
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


def large_headers(count: int) -> bytes:
    """`count` header lines of 8,000 bytes each (CRLF included): each within 8,190 bytes."""
    return b"".join(b"X-Large-%02d: %s\r\n" % (i, b"a" * 7986) for i in range(count))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response with a Content-Length from a kept-alive connection: (status, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert length, head
    return int(head.split()[1]), await reader.readexactly(int(length.group(1)))


async def fetch_json(port: int, target: str, **kw: Any) -> tuple[int, Any]:
    status, headers, body = await request(port, target, **kw)
    assert headers["content-type"] == "application/json", (status, body)
    return status, json.loads(body)


class WindowQuery(Query):
    hours: float = Field(24.0, gt=0, le=87_600)
    start: Instant | None = None
    all: Flag = False


class ThingPath(PathParams):
    thing_id: Text


async def window(call: Call) -> web.StreamResponse:
    return json_response(200, {k: str(v) for k, v in dict(call.query).items()})


async def thing(call: Call) -> web.StreamResponse:
    thing_id = call.path.thing_id
    if thing_id == "missing":
        raise UnknownThingError("no thing 'missing'")
    if thing_id == "gone":
        raise NotFoundError("gone for good")
    if thing_id == "boom":
        raise RuntimeError("secret internals\nline two")
    return json_response(200, {"id": thing_id})


async def health(_call: Call) -> web.StreamResponse:
    return json_response(200, {"status": "ok"})


async def size(call: Call) -> web.StreamResponse:
    return json_response(200, {"bytes": len(await call.request.read())})


ROUTES = (
    Route("GET", "/healthz", health, public=True),
    Route("GET", "/v1/window", window, query=WindowQuery),
    Route("GET", "/v1/things/{thing_id}", thing, path_params=ThingPath),
    Route("POST", "/v1/size", size),
)


@contextlib.asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[HttpServer]:
    server = HttpServer(
        "127.0.0.1:0", ROUTES, error_statuses={UnknownThingError: 404}, name="test", **kw
    )
    task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.started.wait(), 5)
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    (tmp_path / "app.js").write_text("console.log(1);\n")
    async with serving(static={"/static": tmp_path}) as server:
        assert server.port
        yield server.port


class TestRouteTable:
    """Routes with path parameters; parameters checked before the handler; one error map."""

    async def test_parameters_are_read_and_typed(self, port: int) -> None:
        status, body = await fetch_json(
            port, "/v1/window?hours=1.5&start=2026-11-20T08:00:00Z&all=true"
        )
        assert (status, body) == (
            200,
            {"hours": "1.5", "start": "2026-11-20 08:00:00+00:00", "all": "True"},
        )
        assert (await fetch_json(port, "/v1/window"))[1]["hours"] == "24.0"

    @pytest.mark.parametrize(
        ("query", "reason"),
        [
            ("hours=1e9", "hours must be a number in (0, 87600], got '1e9'"),
            ("hours=inf", "hours must be a number in (0, 87600], got 'inf'"),
            ("hours=nan", "hours must be a number in (0, 87600]"),
            ("hours=-1", "hours must be a number in (0, 87600]"),
            ("hours=abc", "hours must be a number in (0, 87600]"),
            ("hours=1&hours=2", "hours is given more than once"),
            ("start=0001-01-01T00:00:00Z", "start must be a time in the years 2000 to 2200"),
            ("start=9999-12-31T23:59:59Z", "start must be a time in the years 2000 to 2200"),
            ("start=yesterday", "start must be an RFC 3339 timestamp"),
            ("start=2026-11-20T08:00:00", "start must be an RFC 3339 timestamp"),
            ("all=yes", "all must be true or false"),
        ],
    )
    async def test_a_bad_parameter_is_a_400_with_one_line(
        self, port: int, query: str, reason: str
    ) -> None:
        status, body = await fetch_json(port, f"/v1/window?{query}")
        assert status == 400
        assert body["error"].startswith(reason)
        assert "\n" not in body["error"]

    async def test_path_parameters_and_mapped_errors(self, port: int) -> None:
        assert await fetch_json(port, "/v1/things/a%20b") == (200, {"id": "a b"})
        assert await fetch_json(port, "/v1/things/missing") == (
            404,
            {"error": "no thing 'missing'"},
        )
        assert await fetch_json(port, "/v1/things/gone") == (404, {"error": "gone for good"})
        status, body = await fetch_json(port, "/v1/things/a%00b")
        assert (status, body["error"]) == (
            400,
            "thing_id must not contain control characters, got 'a\\x00b'",
        )

    async def test_an_unforeseen_error_is_a_500_that_names_nothing(self, port: int) -> None:
        status, body = await fetch_json(port, "/v1/things/boom")
        assert status == 500
        assert "secret" not in json.dumps(body)

    async def test_unknown_paths_and_methods(self, port: int) -> None:
        assert await fetch_json(port, "/nope?x=1") == (
            404,
            {"error": "not found", "path": "/nope"},
        )
        status, headers, _ = await request(port, "/healthz", method="POST")
        assert (status, headers["allow"]) == (405, "GET,HEAD")
        status, headers, body = await request(port, "/healthz", method="HEAD")
        assert (status, body) == (200, b"")

    def test_a_route_declares_each_path_parameter(self) -> None:
        with pytest.raises(ValueError, match="path parameters"):
            Route("GET", "/v1/x/{x_id}", health)
        with pytest.raises(ValueError, match="must start with"):
            Route("GET", "v1", health)

    def test_parse_without_a_server(self) -> None:
        assert parse(WindowQuery, {"hours": "3"}) == WindowQuery(hours=3.0)
        assert parse(ThingPath, {"thing_id": "x"}) == ThingPath(thing_id="x")
        with pytest.raises(BadRequestError, match=r"^unknown query parameter nope \(this route"):
            parse(WindowQuery, {"nope": "1"})


class TestAccess:
    """The token, the Host allow-list and the headers every answer carries."""

    async def test_the_token_guards_every_route_but_public_ones(self, tmp_path: Path) -> None:
        (tmp_path / "app.js").write_text("1;\n")
        async with serving(token=TOKEN, static={"/static": tmp_path}) as server:
            assert server.port
            assert (await fetch_json(server.port, "/healthz"))[0] == 200
            assert (await request(server.port, "/static/app.js"))[0] == 200
            for target in ("/v1/window", "/nope", "/v1/things/x"):
                status, headers, _ = await request(server.port, target)
                assert status == 401, target
                assert headers["www-authenticate"] == 'Bearer realm="fleet-telemetry"'
            for wrong in ("Bearer nope", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
                status, _ = await fetch_json(server.port, "/v1/window", Authorization=wrong)
                assert status == 401
            status, _ = await fetch_json(
                server.port, "/v1/window", Authorization=f"Bearer {TOKEN}", host="evil.example"
            )
            assert status == 200  # with a token, any Host: the token is the guard

    async def test_without_a_token_only_loopback_hosts_are_answered(self, port: int) -> None:
        for host in ("localhost", "localhost:9109", "127.0.0.1:1", "[::1]:9109"):
            assert (await fetch_json(port, "/v1/window", host=host))[0] == 200, host
        status, body = await fetch_json(port, "/v1/window", host="rebind.evil.example")
        assert status == 400
        assert "not served here" in body["error"]
        answer = await raw(port, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert b" 400 " in answer.split(b"\r\n")[0]

    async def test_every_answer_carries_the_browser_headers(self, port: int) -> None:
        for target in ("/healthz", "/nope", "/static/app.js"):
            _, headers, _ = await request(port, target)
            assert headers["x-content-type-options"] == "nosniff", target
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "script-src 'self'" in headers["content-security-policy"]

    @pytest.mark.parametrize(
        "target",
        ["/static/../test_http_server.py", "/static/%2e%2e/x", "/static/..%2fx", "/static/x"],
    )
    async def test_static_files_stay_in_their_directory(self, port: int, target: str) -> None:
        status, _, body = await request(port, target)
        assert status in (403, 404)
        assert b"import" not in body


class TestHostileClients:
    """Limits enforced while reading, before anything is buffered or authenticated."""

    async def test_a_header_that_never_ends_is_cut_at_8_kib(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"a" * 9000)
        await writer.drain()
        answer = b""
        with contextlib.suppress(ConnectionResetError):  # the rest of our header: a reset
            answer = await asyncio.wait_for(reader.read(), 5)
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # a cut connection takes no more
                writer.write(b"a" * 4096)
                await writer.drain()
                await asyncio.sleep(0.01)
            pytest.fail("the server kept reading a 256 KiB header")
        writer.close()
        assert answer.startswith(b"HTTP/1.0 400 Bad Request")
        assert answer.endswith(
            b'{"error":"request line or header too long (8,190 bytes at most)"}\n'
        )

    async def test_a_request_head_over_32_kib_gets_431_and_is_closed(self, port: int) -> None:
        # each header within the per-field limit, their number within 64: only the total is
        # over, by one byte (more, and the server may close with the rest of it unread: a reset
        # that can discard the answer before we read it)
        headers = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + large_headers(4)
        head = headers + b"X-Pad: " + b"a" * (32 * 1024 + 1 - len(headers) - 9) + b"\r\n"
        assert len(head) == 32 * 1024 + 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        await writer.drain()  # and never the blank line that ends the head
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            answer = await asyncio.wait_for(reader.read(), 5)
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # a cut connection takes no more
                writer.write(large_headers(1))
                await writer.drain()
                await asyncio.sleep(0.01)
            pytest.fail("the server kept reading a 545 KB head")
        writer.close()
        assert answer.startswith(b"HTTP/1.0 431 Request Header Fields Too Large\r\n")
        assert answer.endswith(b'{"error":"request head too large (32,768 bytes at most)"}\n')

    async def test_heads_of_32_kib_are_answered_one_after_another(self, port: int) -> None:
        line = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
        headers = line + large_headers(4)
        pad = 32 * 1024 - len(headers) - len(b"X-Pad: \r\n\r\n")
        head = headers + b"X-Pad: " + b"a" * pad + b"\r\n\r\n"
        assert len(head) == 32 * 1024  # the cap, to the byte
        post = b"POST /v1/size HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        try:
            # one connection: the count starts again with each head, and skips bodies
            for data in (head, post + b"b" * 200_000, head, head):
                writer.write(data)
                answers.append(await read_response(reader))
        finally:
            writer.close()
        ok = (200, b'{"status":"ok"}')
        assert [(status, body.strip()) for status, body in answers] == [
            ok,
            (200, b'{"bytes":200000}'),
            ok,
            ok,
        ]

    async def test_a_silent_connection_is_closed_within_about_5_s(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: local")  # and never more
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(reader.read(), 15)
        writer.close()
        assert 3 < loop.time() - started < 12

    @pytest.mark.parametrize(
        "data",
        [
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\n"
            b"abcde",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
            b"\x00\x01garbage\r\n\r\n",
        ],
        ids=["duplicate-content-length", "space-before-colon", "no-colon", "obs-fold", "junk"],
    )
    async def test_rfc_9112_refusals(self, port: int, data: bytes) -> None:
        head, _, body = (await raw(port, data)).partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request")
        assert json.loads(body)["error"] in ("malformed HTTP request", "not an HTTP request")
        assert body.count(b"\n") == 1  # one line, and nothing of the request echoed back
        assert b"garbage" not in body

    async def test_connections_over_the_cap_get_503(self) -> None:
        async with serving(max_connections=3) as server:
            assert server.port
            held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
            await asyncio.sleep(0.2)
            answer = await raw(server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert server.site is not None
            assert server.site.refused == 1
            for _, writer in held:
                writer.close()
            await asyncio.sleep(0.2)
            assert (await fetch_json(server.port, "/healthz"))[0] == 200

    async def test_a_burst_of_connections_is_held_to_the_cap(self) -> None:
        """Connections queued while the loop was busy are accepted in one pass, each protocol
        made before any is connected: the cap counts those too."""
        async with serving(max_connections=5) as server:
            assert server.port
            # Blocking connects, the loop not running: all 30 wait in the listen backlog.
            socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(30)]
            try:
                await asyncio.sleep(0.3)  # one accept pass takes them all
                for s in socks:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    s.setblocking(False)
                answers: list[bytes] = []
                for s in socks:
                    reader, writer = await asyncio.open_connection(sock=s)
                    answers.append(await asyncio.wait_for(reader.readline(), 5))
                    writer.close()
            finally:
                for s in socks:
                    s.close()
            served = sum(a.startswith(b"HTTP/1.1 200") for a in answers)
            busy = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
            assert served <= 5
            assert served + busy == 30

    async def test_failed_tls_handshakes_do_not_hold_the_cap(self, tmp_path: Path) -> None:
        """A TLS connection is connection_made only after its handshake, never if it fails:
        connections that never shake hands (plain HTTP on the HTTPS port) leave no trace in
        the cap, and the next client is served."""
        cert, key = self_signed(tmp_path)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        client_tls = ssl.create_default_context(cafile=str(cert))
        async with serving(max_connections=3, tls=server_tls) as server:
            assert server.port
            for _ in range(8):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                await reader.read()  # the server gives up on the handshake and closes
                writer.close()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=client_tls, server_hostname="localhost"
            )
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            writer.close()


def test_addresses() -> None:
    assert parse_addr("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_addr("[::1]:0") == ("::1", 0)
    assert parse_addr("off") is None
    assert parse_addr("") is None
    with pytest.raises(ValueError, match="host:port"):
        parse_addr("9108")


class TestAccessLog:
    """One `http_access` event per answered request, at the server's level, never a secret."""

    async def test_one_event_per_request_with_no_token_and_no_query_value(self) -> None:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with structlog.testing.capture_logs() as events:
            async with serving(token=TOKEN) as server:
                assert server.port
                await request(server.port, "/healthz")
                await request(server.port, f"/healthz?hours=2&{TOKEN}=1&key={TOKEN}", **auth)
                await request(server.port, "/v1/things/a%0Ab", **auth)
                await request(server.port, f"/v1/things/{TOKEN[:30]}?{TOKEN[:20]}", **auth)
                await request(server.port, f"/{TOKEN}")
                await request(server.port, "/v1/window")
        access = [e for e in events if e["event"] == "http_access"]
        seen = [(e["path"], e["status"], e["log_level"]) for e in access]
        expected = [
            ("/healthz", 200, "info"),
            ("/healthz", 200, "info"),
            ("/v1/things/a%0Ab", 400, "info"),  # as sent: no control character
            (f"/v1/things/{TOKEN[:30]}", 200, "info"),
            ("/***", 401, "info"),  # the server's token, wherever a client puts it
            ("/v1/window", 401, "info"),
        ]
        assert seen == expected
        assert access[1]["query"] == ["hours", "?", "key"]
        assert access[3]["query"] == [TOKEN[:20]]  # a name, not the token
        assert TOKEN not in repr(events)
        assert {e["method"] for e in access} == {"GET"}
        assert all(e["bytes"] > 0 and e["remote"] == "127.0.0.1" for e in access)

    @pytest.mark.parametrize(("level", "expected"), [(logging.DEBUG, ["debug"]), (None, [])])
    async def test_the_level_is_the_servers_choice(
        self, level: int | None, expected: list[str]
    ) -> None:
        with structlog.testing.capture_logs() as events:
            async with serving(access_log_level=level) as server:
                assert server.port
                await request(server.port, "/healthz")
        levels = [e["log_level"] for e in events if e["event"] == "http_access"]
        assert levels == expected
