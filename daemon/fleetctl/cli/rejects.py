"""`fleetctl rejects list|replay`: the dead letters fleetd kept, and replaying them with today's
rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from fleetctl.cli import render
from fleetctl.cli.app import Job, NounGroup, Output, command, root
from fleetctl.cli.options import instant
from fleetctl.roles import Role

_SINCE_HELP = "RFC 3339 (default: 24 h ago)"


@root.group("rejects", cls=NounGroup, default="list")
def rejects() -> None:
    """Dead letters: counts by field and rule, newest payloads; `rejects replay` after a fix."""


def _since(text: str | None) -> datetime:
    return instant(text, "since") or datetime.now(UTC) - timedelta(hours=24)


def show_rejects(r: dict[str, Any], out: Output) -> str:
    """Counts by kind, field and rule, then the newest payloads (-o wide: whole rules, when the
    newest came, whole payloads)."""
    cols = (
        render.Column("kind", lambda c: c["kind"]),
        render.Column("field", lambda c: c["field"]),
        render.Column("rule", lambda c: render.clip(c["rule"], 44, out.wide)),
        render.Column("count", lambda c: f"{c['count']:,}", right=True),
        render.Column("newest", lambda c: c["newest"], wide=True),
    )
    lines = [
        f"{r['total']:,} rejected messages since {r['since']}",
        render.columns(r["counts"], cols, wide=out.wide),
    ]
    if r["newest"]:
        lines += ["", "newest:"]
        for m in r["newest"]:
            lines.append(render.clip(f"  {m['receivedAt']}  {m['topic']}", 80, out.wide))
            lines.append(render.clip(f"    {m['reason']}", 80, out.wide))
            lines.append(render.clip(f"    {m['payload'][:200]!r}", 80, out.wide))
    return "\n".join(lines)


@command(rejects, "list", role=Role.ANALYTICS, show=show_rejects)
@click.option("--since", help=_SINCE_HELP)
@click.option("--field", help="only reasons about this field (e.g. soc, timestamp)")
@click.option("--limit", type=int, default=20, show_default=True, help="newest payloads to show")
def list_(since: str | None, field: str | None, limit: int) -> Job:
    """What fleetd refused and kept, counted by field and rule, with the newest payloads."""
    from fleetctl.analytics import rejects as report  # noqa: PLC0415

    start = _since(since)
    return lambda conn: report(conn, since=start, field=field, limit=limit)


def show_replay(r: dict[str, Any], _out: Output) -> str:
    """One line: what the replay stored and what it still rejects."""
    return (
        f"replayed {r['replayed']:,} rejects: {r['stored']:,} stored, "
        f"{r['alreadyStored']:,} already stored, {r['stillRejected']:,} still rejected"
    )


@command(rejects, "replay", role=Role.ADMIN, show=show_replay)
@click.option("--since", help=_SINCE_HELP)
def replay(since: str | None) -> Job:
    """Validate the dead letters again with today's rules and store those that now pass
    (exactly once, however often it runs); it writes readings, as FLEET_ADMIN_DATABASE_URL."""
    from fleetctl.admin.replay import replay as run  # noqa: PLC0415

    start = _since(since)
    return lambda conn: run(conn, since=start)
