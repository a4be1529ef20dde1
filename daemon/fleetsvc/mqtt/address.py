"""Where an MQTT client connects, from an `mqtt://[user:pass@]host:port` URL (`mqtts://` for
TLS); the credentials come percent-decoded."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class BrokerAddress:
    """Where and how to connect: host, port, TLS and the credentials of one broker URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """The address of `url` (port 1883, or 8883 with mqtts://, when none is given)."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
