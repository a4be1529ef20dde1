"""Who may post readings over HTTP: bearer tokens from a file (FLEET_INGEST_TOKENS_FILE), one a
line, each optionally limited to device-id glob patterns (`TOKEN METER-0*,VEHICLE-0*`), and a
per-token rate of readings. Tokens are compared in constant time and never logged: a token is
known afterwards only by its line number."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from fleetd.ingest.pattern_lines import read_pattern_lines
from fleetsvc.settings_fields import ConfigError


class TokensFileError(ConfigError):
    """The tokens file cannot be read or has a bad line (named by number, never its token)."""


@dataclass
class Token:
    """One line of the file: the secret, the device-id patterns it may write (none: any), and
    its rate bucket."""

    line: int
    secret: bytes = field(repr=False)
    patterns: tuple[str, ...] = ()
    _allowance: float = 0.0
    _checked: float = 0.0

    def allows(self, device: str) -> bool:
        """May this token write readings of `device`?"""
        return not self.patterns or any(fnmatchcase(device, p) for p in self.patterns)

    def take(self, readings: int, rate: float, now: float | None = None) -> float:
        """Spend `readings` from a bucket of `rate` readings/s holding up to one second of them
        (at least one request's worth); 0 when allowed, else the seconds to wait."""
        if rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        cap = max(rate, float(readings))
        if not self._checked:
            self._allowance = cap
        else:
            self._allowance = min(cap, self._allowance + (now - self._checked) * rate)
        self._checked = now
        if self._allowance >= readings:
            self._allowance -= readings
            return 0.0
        return (readings - self._allowance) / rate


def load_tokens(path: Path) -> list[Token]:
    """The tokens of `path`: `TOKEN [PATTERN[,PATTERN...]]` a line; blank lines and `#` lines
    are skipped (fleetd.ingest.pattern_lines)."""
    name = "FLEET_INGEST_TOKENS_FILE"
    tokens: list[Token] = []
    for number, secret, patterns in read_pattern_lines(path, name, TokensFileError):
        if len(secret) < 16:
            raise TokensFileError(f"{name} line {number}: a token must be at least 16 characters")
        tokens.append(Token(number, secret.encode(), patterns))
    if not tokens:
        raise TokensFileError(f"{name}: {path} holds no token")
    return tokens


def find_token(tokens: list[Token], header: str | None) -> Token | None:
    """The token an `Authorization: Bearer ...` header names, or None. Every token is compared
    (in constant time each), so the time taken does not tell which one was close."""
    if not header or not header.startswith("Bearer "):
        return None
    given = header[len("Bearer ") :].strip().encode()
    found = None
    for token in tokens:
        if hmac.compare_digest(given, token.secret) and found is None:
            found = token
    return found
