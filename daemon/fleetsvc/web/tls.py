"""The server side of TLS, shared by `fleetctl serve` and fleetd's HTTP ingest."""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsPairError(ValueError):
    """The certificate and key cannot be loaded as a pair (the message says why)."""


def server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """An HTTPS context from a certificate chain and its key; None (plain HTTP) unless both
    are given. Raises TlsPairError when the files cannot be read or do not match."""
    if cert is None or key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsPairError(str(exc)) from exc
    return ctx
