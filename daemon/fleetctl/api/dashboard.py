"""The dashboard page `fleetctl serve` answers at /: static files shipped in the package
(fleetctl/api/static), the charting library vendored there at build time from npm
(web/assets.py, run by the wheel's build hook and `make static`), so nothing is fetched from a
CDN at run time. The files are served by aiohttp's static handler (which keeps paths inside
the directory)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def static_dir() -> Path:
    """The directory of the page's files (a real directory: the wheel ships it unpacked)."""
    return Path(str(importlib.resources.files("fleetctl.api") / "static"))
