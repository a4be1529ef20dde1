"""Keeping secrets out of logs and printed configuration."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry a credential: libpq's ?password=, and anything named like one
# (sslpassword, client_secret, access_token, ...).
_SECRET_PARAM = re.compile(r"password|secret|token", re.IGNORECASE)


def mask_url(url: str) -> str:
    """Return `url` with every credential replaced by `***` (safe to log or print): the
    password of the userinfo and the value of any query parameter whose name contains
    password, secret or token. Never raises: a port out of range is left as written (the
    settings reject such a URL with their own one-line error)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = _mask_userinfo(parts.netloc)
    query = "&".join(_mask_param(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _mask_userinfo(netloc: str) -> str:
    # Taken apart by hand, not through SplitResult.password/.port: those raise on a bad port,
    # and a libpq multi-host netloc (h1:5432,h2:5432) is not one host.
    userinfo, at, hosts = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return netloc
    user = userinfo.partition(":")[0]
    return f"{user}:{MASK}@{hosts}"


def _mask_param(param: str) -> str:
    name, eq, _value = param.partition("=")
    return f"{name}={MASK}" if eq and _SECRET_PARAM.search(name) else param
