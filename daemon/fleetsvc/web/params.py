"""Route parameters declared once, next to the route: each knows how to read its text and how
to describe itself as a JSON Schema (so an OpenAPI document can be generated from the routes).
A value out of its range is a 400 naming the parameter and the range, never a 500."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from fleetsvc.web.errors import BadRequestError

# C0 controls, DEL and C1 controls: never part of an id, and NUL is refused by PostgreSQL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_SHOWN_CHARS = 40


class Kind(Protocol):
    """How a parameter's text becomes a value (ValueError with a reason otherwise)."""

    def parse(self, text: str) -> Any:
        """The value of `text`; raises ValueError whose text completes "<name> ..."."""

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the value."""


@dataclass(frozen=True)
class Number:
    """A finite decimal number within [minimum, maximum] ((minimum, ...] when exclusive)."""

    minimum: float
    maximum: float
    exclusive_minimum: bool = False

    def parse(self, text: str) -> float:
        """A float; NaN, infinities and out-of-range values are refused."""
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"must be a number in {self._range()}") from None
        below = value <= self.minimum if self.exclusive_minimum else value < self.minimum
        if not math.isfinite(value) or below or value > self.maximum:
            raise ValueError(f"must be a number in {self._range()}")
        return value

    def _range(self) -> str:
        return f"{'(' if self.exclusive_minimum else '['}{self.minimum:g}, {self.maximum:g}]"

    def schema(self) -> dict[str, Any]:
        """number with its bounds."""
        low = "exclusiveMinimum" if self.exclusive_minimum else "minimum"
        return {"type": "number", low: self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Integer:
    """A whole number within [minimum, maximum]."""

    minimum: int
    maximum: int

    def parse(self, text: str) -> int:
        """An int in range (digits only, an optional sign)."""
        if not re.fullmatch(r"[+-]?\d{1,18}", text) or not (
            self.minimum <= int(text) <= self.maximum
        ):
            raise ValueError(f"must be a whole number in [{self.minimum}, {self.maximum}]")
        return int(text)

    def schema(self) -> dict[str, Any]:
        """integer with its bounds."""
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Flag:
    """`true` or `false`."""

    def parse(self, text: str) -> bool:
        """True for "true", False for "false"."""
        if text not in ("true", "false"):
            raise ValueError("must be true or false")
        return text == "true"

    def schema(self) -> dict[str, Any]:
        """boolean."""
        return {"type": "boolean"}


@dataclass(frozen=True)
class Text:
    """A printable string of at most `max_length` characters (ids, field names)."""

    max_length: int = 200

    def parse(self, text: str) -> str:
        """`text` itself, unless empty, too long or holding control characters."""
        if not text:
            raise ValueError("must not be empty")
        if len(text) > self.max_length:
            raise ValueError(f"must be at most {self.max_length} characters")
        if _CONTROL.search(text):
            raise ValueError("must not contain control characters")
        return text

    def schema(self) -> dict[str, Any]:
        """string with its length and no control characters."""
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": self.max_length,
            "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$",
        }


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words."""

    values: tuple[str, ...]

    def parse(self, text: str) -> str:
        """`text` when it is one of the values."""
        if text not in self.values:
            raise ValueError(f"must be one of {', '.join(self.values)}")
        return text

    def schema(self) -> dict[str, Any]:
        """string enum."""
        return {"type": "string", "enum": list(self.values)}


@dataclass(frozen=True)
class Instant:
    """An RFC 3339 timestamp with an offset, its year within [min_year, max_year]."""

    min_year: int = 2000
    max_year: int = 2200

    def parse(self, text: str) -> datetime:
        """An aware datetime."""
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            value = None
        if value is None or value.tzinfo is None or "T" not in text.upper():
            raise ValueError(
                "must be an RFC 3339 timestamp with an offset, e.g. 2026-11-20T08:00:00Z"
            ) from None
        if not self.min_year <= value.year <= self.max_year:
            raise ValueError(f"must be a time in the years {self.min_year} to {self.max_year}")
        return value

    def schema(self) -> dict[str, Any]:
        """string, date-time."""
        return {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Param:
    """One parameter of a route: where it is, its kind, and what it means."""

    name: str
    kind: Kind
    where: Literal["query", "path"] = "query"
    required: bool = False
    default: Any = None
    description: str = ""

    def read(self, text: str) -> Any:
        """The value of `text`, or BadRequestError naming the parameter and what it must be."""
        try:
            return self.kind.parse(text)
        except ValueError as exc:
            shown = text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "…"
            raise BadRequestError(f"{self.name} {exc}, got {shown!r}") from None


def read_params(
    params: tuple[Param, ...], path: Mapping[str, str], query: Mapping[str, str]
) -> dict[str, Any]:
    """Every declared parameter's value (its default when absent); a required one missing, or
    a query parameter given twice, is a BadRequestError."""
    values: dict[str, Any] = {}
    for p in params:
        source = path if p.where == "path" else query
        if p.where == "query" and len(getall(query, p.name)) > 1:
            raise BadRequestError(f"{p.name} is given more than once")
        text = source.get(p.name)
        if text is None or (text == "" and p.where == "query"):
            if p.required:
                raise BadRequestError(f"{p.name} is required")
            values[p.name] = p.default
        else:
            values[p.name] = p.read(text)
    return values


def getall(query: Mapping[str, str], name: str) -> list[str]:
    """Every value of `name` in a multi-valued query mapping (one for a plain dict)."""
    many = getattr(query, "getall", None)
    if many is None:
        return [query[name]] if name in query else []
    return list(many(name, []))
