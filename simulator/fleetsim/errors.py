"""What fleet-sim tells an operator when it cannot do its job: one line, never a traceback
(`--debug` shows it). The URLs in these messages are masked."""

from __future__ import annotations

from urllib.parse import urlsplit

from fleetsvc.secrets import mask_url

MQTT_SCHEMES = ("mqtt", "mqtts")


class SimError(Exception):
    """An error in the operator's hands (a server away, refusing, unprepared): exit 1."""


def check_mqtt_url(url: str) -> None:
    """Raise ValueError (a usage error) unless `url` is mqtt[s]://[user:pass@]host[:port]."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"--mqtt-url {shown}: {str(exc).lower()}") from None
    if parts.scheme not in MQTT_SCHEMES:
        raise ValueError(f"--mqtt-url {shown}: must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"--mqtt-url {shown}: no host (mqtt://host:port)")
    if port == 0:
        raise ValueError(f"--mqtt-url {shown}: port 0")


def database_error(url: str, exc: BaseException) -> SimError:
    """A database failure as one line naming the database and, where it helps, the fix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    hint = ""
    if exc.__class__.__name__ in ("UndefinedTableError", "UndefinedFunctionError"):
        hint = " (is the schema there? run `fleetd migrate` first)"
    return SimError(f"database {mask_url(url)}: {text}{hint}")
