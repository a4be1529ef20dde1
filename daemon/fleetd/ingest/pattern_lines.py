"""The line format FLEET_INGEST_TOKENS_FILE (fleetd.ingest.tokens) and FLEET_GATEWAYS_FILE
(fleetd.ingest.gateway_grants) share: `KEY [PATTERN[,PATTERN...]]` a line, patterns separated
by commas or white space, blank lines and `#` lines skipped. What a key must be, and whether it
needs patterns, is each file's own rule."""

from __future__ import annotations

from pathlib import Path

from fleetsvc.settings_fields import ConfigError


def read_pattern_lines(
    path: Path, variable: str, error: type[ConfigError]
) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line number, key, patterns) of each line of `path` that is not blank or a comment;
    `error` naming `variable` when the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{variable}: cannot read {path}: {exc}") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        # Any white space separates, a tab too: "TOKEN\tMETER-*" is not a token with a tab in it.
        parts = raw.split(maxsplit=1)
        if not parts or parts[0].startswith("#"):
            continue
        patterns = tuple(parts[1].replace(",", " ").split()) if len(parts) > 1 else ()
        lines.append((number, parts[0], patterns))
    return lines
