"""Options several commands share: the report window, and RFC 3339 instants."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from fleetctl.params import DEFAULT_MIN_AC_KWH

F = TypeVar("F", bound=Callable[..., Any])

_TIME = (
    click.Option(["--hours"], type=float, help="window of H hours ending now (default 24)"),
    click.Option(["--start"], help="window start, RFC 3339 (e.g. 2026-11-23T00:00:00Z)"),
    click.Option(["--end"], help="window end, RFC 3339, exclusive (default now)"),
)
_WINDOW = (
    *_TIME,
    click.Option(
        ["--min-ac-kwh"],
        type=float,
        default=DEFAULT_MIN_AC_KWH,
        show_default=True,
        help="below this AC energy a vehicle is insufficient_data",
    ),
)


def window_options(plan: F) -> F:
    """--hours | --start/--end and --min-ac-kwh; the function gets `window` (a Window, checked
    before connecting: a bad one is a usage error, one line, exit 2 as Click's own) and
    `min_ac_kwh`."""
    return _with_window(plan, _WINDOW)


def time_window_options(plan: F) -> F:
    """--hours | --start/--end only (a report that judges no AC threshold): `window`."""
    return _with_window(plan, _TIME)


def _with_window(plan: F, options: tuple[click.Option, ...]) -> F:

    @functools.wraps(plan)
    def with_window(*, hours: float | None, start: str | None, end: str | None, **kw: Any) -> Any:
        from fleetctl.analytics.window import InvalidWindowError, Window  # noqa: PLC0415

        try:
            window = Window.parse(hours=hours, start=start, end=end)
        except InvalidWindowError as exc:
            # A bad option value, like Click's own range and type errors: exit 2, not 1.
            raise click.UsageError(str(exc), click.get_current_context()) from None
        return plan(window=window, **kw)

    # Click reads a function's options from __click_params__, last decorator first.
    own = list(getattr(plan, "__click_params__", []))
    with_window.__dict__["__click_params__"] = [*own, *reversed(options)]
    return with_window  # type: ignore[return-value]  # same options, plus the window's


def instant(text: str | None, name: str) -> datetime | None:
    """An RFC 3339 option's value, or None; a one-line error naming the option."""
    if text is None:
        return None
    from fleetctl.analytics.window import parse_rfc3339  # noqa: PLC0415

    return parse_rfc3339(text, name)
