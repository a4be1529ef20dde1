"""Cursors of paged listings (fleetctl.analytics.pages): opaque, bound to their listing and
arguments, refused with a 400 when edited, and pages that cover a sorted list exactly once."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from fleetctl.analytics.pages import (
    InvalidCursorError,
    Page,
    decode,
    encode,
    fingerprint,
    now_of,
    page_of,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
Q = fingerprint("fleet", "24h", "efficiency")


def _pages(rows: list[dict[str, Any]], limit: int) -> list[list[dict[str, Any]]]:
    out, cursor = [], None
    while True:
        chunk, cursor = page_of(
            rows,
            lambda r: [r["k"], r["id"]],
            Page(limit, cursor),
            listing="fleet",
            query=Q,
            now=NOW,
        )
        out.append(chunk)
        if cursor is None:
            return out


class TestPages:
    """Keyset pages over a sorted list."""

    @pytest.mark.parametrize("limit", [1, 2, 3, 7, 10, 11])
    def test_every_row_once_in_order(self, limit: int) -> None:
        rows = [{"k": i // 3, "id": f"V{i:03}"} for i in range(10)]  # ties on k
        pages = _pages(rows, limit)
        assert [r for p in pages for r in p] == rows
        assert all(len(p) == limit for p in pages[:-1])

    def test_no_limit_is_everything_and_no_cursor(self) -> None:
        rows = [{"k": 1, "id": "a"}]
        assert page_of(
            rows, lambda r: [r["k"], r["id"]], Page(), listing="fleet", query=Q, now=NOW
        ) == (rows, None)

    def test_the_cursor_carries_now(self) -> None:
        assert now_of(encode("fleet", Q, NOW, [1, "a"])) == NOW


class TestRefused:
    """A cursor that is not as issued is a clear error."""

    def test_edited(self) -> None:
        cursor = encode("fleet", Q, NOW, [0.5, "V1"])
        body, digest = cursor.split(".")
        raw = base64.urlsafe_b64decode(body + "==").replace(b"V1", b"V2")
        edited = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + digest
        with pytest.raises(InvalidCursorError, match="not one this server issued"):
            decode(edited, "fleet", Q)

    @pytest.mark.parametrize("text", ["", "x", "a.b.c", "!!!.???", "e30.AAAAAAAAAAA", "x" * 5000])
    def test_garbage(self, text: str) -> None:
        with pytest.raises(InvalidCursorError):
            decode(text, "fleet", Q)
        with pytest.raises(InvalidCursorError):
            now_of(text)

    def test_other_listing_or_arguments(self) -> None:
        cursor = encode("fleet", Q, NOW, [1, "a"])
        with pytest.raises(InvalidCursorError, match="another listing"):
            decode(cursor, "alerts", Q)
        with pytest.raises(InvalidCursorError, match="other parameters"):
            decode(cursor, "fleet", fingerprint("fleet", "48h", "efficiency"))

    def test_a_key_of_another_shape(self) -> None:
        rows = [{"k": 1, "id": "a"}, {"k": 2, "id": "b"}]
        cursor = encode("fleet", Q, NOW, ["x", 1])
        with pytest.raises(InvalidCursorError):
            page_of(
                rows,
                lambda r: [r["k"], r["id"]],
                Page(1, cursor),
                listing="fleet",
                query=Q,
                now=NOW,
            )
