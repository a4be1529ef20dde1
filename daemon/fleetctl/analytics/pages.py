"""Pages of a listing: at most `limit` rows, in a stable order that ends in a unique key, and
an opaque cursor that names where the next page starts (keyset pagination: a row inserted or
removed meanwhile shifts nothing, unlike an offset).

A cursor is base64url JSON: the listing it belongs to, a fingerprint of the arguments of the
first page (a cursor replayed with other arguments is refused rather than answered with a page
of another listing), the instant the first page took as "now" (so "the last 24 h" means the
same window on every page), the sort key of the last row served, and a digest so that an
edited or truncated cursor is a clear error, never a wrong page or a database error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from fleetctl.analytics.window import iso
from fleetctl.errors import InvalidRequestError

VERSION = 1
MAX_PAGE_ROWS = 10_000
MAX_CURSOR_CHARS = 2048
_DIGEST_BYTES = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Row = TypeVar("Row")
Key = list[Any]  # a row's sort key: JSON scalars (str, int, float, bool, None)


class InvalidCursorError(InvalidRequestError):
    """A cursor this server did not issue for this listing and these arguments."""


@dataclass(frozen=True)
class Page:
    """What a caller asked for: `limit` rows (None: all of them) after `cursor` (None: from
    the first row)."""

    limit: int | None = None
    cursor: str | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and not 1 <= self.limit <= MAX_PAGE_ROWS:
            raise InvalidRequestError(f"limit must be between 1 and {MAX_PAGE_ROWS}")


@dataclass(frozen=True)
class Cursor:
    """A decoded cursor: where the previous page ended, and the "now" of the first page."""

    listing: str
    query: str
    now: datetime
    after: Key


def fingerprint(*arguments: object) -> str:
    """A short digest of a listing's arguments (everything but the page)."""
    text = json.dumps(arguments, default=str, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(listing: str, query: str, now: datetime, after: Key) -> str:
    """The cursor of the page after the row whose sort key is `after`."""
    body = json.dumps(
        {"v": VERSION, "l": listing, "q": query, "n": iso(now), "a": after},
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
    return _b64(body) + "." + _b64(hashlib.sha256(body).digest()[:_DIGEST_BYTES])


def _refuse(_: str) -> None:
    raise ValueError("not a finite number")


def decode(text: str, listing: str, query: str) -> Cursor:
    """The cursor `text` of `listing` with these arguments, or InvalidCursorError."""
    bad = decode_error()
    if len(text) > MAX_CURSOR_CHARS or text.count(".") != 1:
        raise bad
    body_text, digest_text = text.split(".")
    try:
        body, digest = _unb64(body_text), _unb64(digest_text)
    except (binascii.Error, ValueError):
        raise bad from None
    if hashlib.sha256(body).digest()[:_DIGEST_BYTES] != digest:
        raise bad
    try:
        data = json.loads(body, parse_constant=_refuse)
        version, kind, fp, now_text, after = (data[k] for k in ("v", "l", "q", "n", "a"))
        now = datetime.fromisoformat(str(now_text).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if version != VERSION or not isinstance(after, list) or now.tzinfo is None:
        raise bad
    if not all(_scalar(v) for v in after):
        raise bad
    if kind != listing:
        raise InvalidCursorError(f"cursor belongs to another listing ({kind!r}, not {listing!r})")
    if fp != query:
        raise InvalidCursorError(
            "cursor belongs to other parameters: repeat the first page's parameters with it"
        )
    return Cursor(kind, fp, now.astimezone(UTC), after)


def _scalar(v: object) -> bool:
    if isinstance(v, str):
        return len(v) <= 200 and not _CONTROL.search(v)
    if isinstance(v, float):
        return math.isfinite(v)
    return v is None or isinstance(v, int | bool)


def now_of(text: str | None) -> datetime | None:
    """The "now" a cursor pins (None without a cursor), before its listing checks it: the
    caller resolves relative windows with it so every page reads the same one."""
    if text is None:
        return None
    if len(text) > MAX_CURSOR_CHARS or text.count(".") != 1:
        raise decode_error()
    try:
        data = json.loads(_unb64(text.split(".")[0]), parse_constant=_refuse)
        value = datetime.fromisoformat(str(data["n"]).replace("Z", "+00:00"))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise decode_error() from None
    if value.tzinfo is None:
        raise decode_error()
    return value.astimezone(UTC)


def decode_error() -> InvalidCursorError:
    """The error of a cursor that cannot be read at all."""
    return InvalidCursorError(
        "cursor is not one this server issued: pass the nextCursor of the previous page as is"
    )


def instant_of(text: str) -> datetime:
    """A timestamp a cursor carries (as isoformat wrote it), or InvalidCursorError."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise decode_error() from None
    if value.tzinfo is None:
        raise decode_error()
    return value


def key_of(cursor: Cursor, *types: type | tuple[type, ...]) -> Key:
    """The cursor's sort key, checked to hold one value of each of `types` (a key built for
    another listing is refused before it reaches SQL)."""
    after = cursor.after
    if len(after) != len(types) or not all(
        isinstance(v, t) and not (isinstance(v, bool) and t is not bool)
        for v, t in zip(after, types, strict=True)
    ):
        raise decode_error()
    return after


def page_of(
    rows: Sequence[Row],
    key: Callable[[Row], Key],
    page: Page,
    *,
    listing: str,
    query: str,
    now: datetime,
) -> tuple[list[Row], str | None]:
    """The page of `rows` (sorted by `key`, which is unique per row) and the next cursor (None
    on the last page). In memory: for reports that compute every row anyway."""
    start = 0
    if page.cursor is not None:
        after = decode(page.cursor, listing, query).after
        try:
            start = bisect_right(rows, after, key=key)
        except TypeError:  # a key of another shape
            raise decode_error() from None
    if page.limit is None:
        return list(rows[start:]), None
    chunk = list(rows[start : start + page.limit])
    more = start + page.limit < len(rows)
    return chunk, encode(listing, query, now, key(chunk[-1])) if more and chunk else None


def next_cursor(
    rows: Sequence[Row],
    limit: int | None,
    key: Callable[[Row], Key],
    *,
    listing: str,
    query: str,
    now: datetime,
) -> tuple[list[Row], str | None]:
    """For SQL pages fetched with `limit + 1` rows: the page and the next cursor."""
    if limit is None or len(rows) <= limit:
        return list(rows), None
    chunk = list(rows[:limit])
    return chunk, encode(listing, query, now, key(chunk[-1]))
