"""Response helpers every route uses."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web


def json_response(
    status: int, body: object, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer: one line, newline-terminated (dates and decimals as strings)."""
    data = json_body(body)
    return web.Response(status=status, body=data, content_type="application/json", headers=headers)


def json_body(body: object) -> bytes:
    """`body` as json_response sends it (for an answer encoded once and sent many times)."""
    return json.dumps(body, default=str, separators=(",", ":")).encode() + b"\n"
