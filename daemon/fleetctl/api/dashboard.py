"""The dashboard page `fleetctl serve` answers at /: static files shipped in the package
(fleetctl/api/static), the charting library vendored there by `make static` from npm (web/), so
nothing is fetched from a CDN at run time."""

from __future__ import annotations

import importlib.resources
from functools import lru_cache

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@lru_cache(maxsize=32)
def asset(name: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of a shipped file, or None: only plain names under static/ of a
    known type, so a path can never leave the directory."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    kind = _TYPES.get(name[name.rfind(".") :])
    if kind is None:
        return None
    node = importlib.resources.files("fleetctl.api") / "static"
    for p in parts:
        node = node / p
    if not node.is_file():
        return None
    return kind, node.read_bytes()
