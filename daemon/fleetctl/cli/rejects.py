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
    """Dead letters grouped by field and rule; `rejects replay` after a fix."""


def _since(text: str | None) -> datetime:
    return instant(text, "since") or datetime.now(UTC) - timedelta(hours=24)


def _minute(stamp: str) -> str:
    """`2026-11-20T10:59:59.123456Z` as `11-20 10:59` (the default table's width)."""
    return stamp[5:16].replace("T", " ")


def show_rejects(r: dict[str, Any], out: Output) -> str:
    """The groups (kind, field and rule: count, last seen, one example with its device id and
    reason), then the newest payloads if asked for (-o wide: whole rules and reasons, first
    and last seen to the microsecond)."""
    cols = (
        render.Column("kind", lambda c: c["kind"]),
        render.Column("field", lambda c: render.clip(c["field"], 14, out.wide)),
        render.Column("rule", lambda c: render.clip(c["rule"], 30, out.wide)),
        render.Column("count", lambda c: f"{c['count']:,}", right=True),
        render.Column("first seen", lambda c: c["firstSeen"], wide=True),
        render.Column("last seen", lambda c: c["lastSeen"] if out.wide else _minute(c["lastSeen"])),
    )
    groups = len(r["counts"])
    head = f"{r['total']:,} rejected messages since {r['since']}"
    lines = [f"{head}, {groups} {'group' if groups == 1 else 'groups'}"]
    if groups:
        table = render.columns(r["counts"], cols, wide=out.wide).splitlines()
        lines += table[:2]
        for row, c in zip(table[2:], r["counts"], strict=True):
            ex = c["example"]
            lines += [
                row,
                render.clip(
                    f"  e.g. {ex['deviceId'] or ex['topic']}: {ex['reason']}", 80, out.wide
                ),
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
@click.option(
    "--limit",
    type=int,
    default=0,
    show_default=True,
    help="also list the N newest rejects with their payloads (0: the groups only)",
)
def list_(since: str | None, field: str | None, limit: int) -> Job:
    """What fleetd refused and kept, grouped by field and rule (count, first and last seen, one
    example each); --limit N also lists the N newest with their payloads."""
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
    from fleetdb.ingest.replay import replay as run  # noqa: PLC0415

    start = _since(since)
    return lambda conn: run(conn, since=start)
