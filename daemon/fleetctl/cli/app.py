"""The frame every fleetctl command hangs in: the root group and its options, the database role
each command declares, connecting, JSON or a table, and one-line errors.

A command is one function, registered by the decorator that declares its role:

    @command(root, "fleet", role=Role.ANALYTICS, show=show_fleet)
    @click.option("--sort", ...)
    def fleet(sort: str) -> Job:
        ...                     # check the arguments: nothing has connected yet
        return lambda conn: fleet_report(conn, ...)

The decorator builds the Click command (with --json), adds it to its group, connects with the
URL of the declared role's login, runs the job, and prints JSON or `show`'s table. A command
cannot half-register: the name, the role and the output come in one call, and Click finds a
command by its name or says it has none.

Only Click and this package's light modules are imported at start: a command imports the
reports (numpy, asyncpg) when it runs, so `fleetctl --help` stays cheap.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fleetctl.roles import Role

if TYPE_CHECKING:
    import asyncpg

    from fleetctl.settings import Settings

Job = Callable[["asyncpg.Connection"], Awaitable[Any]]
"""What a command runs once connected: the result is printed as JSON or as a table."""
Service = Callable[["Settings", str], Coroutine[Any, Any, int]]
"""What a long-running command runs (settings, its role's database URL): the exit code. Called
before logging is configured, it may check settings (ConfigError) before returning the
coroutine."""


@dataclass(frozen=True)
class Output:
    """How a table is drawn: coloured on a terminal; 80 columns unless wide (-o wide)."""

    colour: bool
    wide: bool = False


Show = Callable[[Any, Output], str]

EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


class Failure(click.ClickException):
    """An operator error, shown as one line; exit 1."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause wrote


class ConfigFailure(Failure):
    """A missing or bad setting; exit 2."""

    exit_code = EXIT_CONFIG


@dataclass
class App:
    """The root options, and the settings loaded once when a command first needs them."""

    config: Path | None = None
    database_url: str | None = None
    json: bool = False
    wide: bool = False
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """The validated settings (file, then environment); ConfigError on a bad value. Warns
        once about FLEET_* variables that no program reads."""
        if self._settings is None:
            from fleetctl.settings import environment_warnings, load_settings  # noqa: PLC0415

            for line in environment_warnings():  # first: a typo may explain the error below
                click.echo(f"fleetctl: warning: {line}", err=True)
            self._settings = load_settings(self.config)
        return self._settings

    def database(self, role: Role) -> str:
        """--database-url, else the URL of `role`'s login from the settings."""
        settings = self.settings()
        if self.database_url is not None:
            from fleetsvc.settings_fields import check_database_url  # noqa: PLC0415

            return check_database_url(self.database_url, "--database-url")
        return settings.database_for(role)

    def emit(self, result: Any, show: Show, output: str | None) -> None:
        """Print the result as JSON or as `show`'s table (`output`: the command's own -o)."""
        if output == "json" or (output is None and self.json):
            text = json.dumps(result, indent=2)
        else:
            from fleetctl.settings import colour_wanted  # noqa: PLC0415

            wide = output == "wide" or (output is None and self.wide)
            text = show(result, Output(colour=colour_wanted(sys.stdout.isatty()), wide=wide))
        echo(text)


def echo(text: str) -> None:
    """Print to stdout; a reader that went away (`fleetctl alerts | head`) ends it quietly."""
    try:
        click.echo(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    # The reader closed the pipe: what is left of the output goes nowhere, and so does the
    # interpreter's final flush (which would otherwise print a BrokenPipeError).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout without a descriptor (a test's capture): nothing left to flush


class RoleCommand(click.Command):
    """A command that runs on a database connection of one declared role."""

    def __init__(self, *args: Any, role: Role, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.role = role


class NounGroup(click.Group):
    """A group of commands on one noun whose first word may be left out: `fleetctl alerts` is
    `fleetctl alerts list`, `fleetctl assignments V1` is `fleetctl assignments list V1`."""

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Insert the default command when the first word names none."""
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


_JSON_HELP = "machine-readable JSON (also accepted before the command)"
OUTPUTS = ("wide", "json")
_OUTPUT_HELP = "wide: every column (the table fits 80 columns without); json: as --json"


def _app() -> App:
    return click.get_current_context().ensure_object(App)


def command(
    group: click.Group,
    name: str,
    *,
    role: Role,
    show: Show,
    also: tuple[tuple[click.Group, str], ...] = (),
) -> Callable[[Callable[..., Job]], click.Command]:
    """Register the decorated function as the command `name` of `group` (and under the other
    (group, name) pairs of `also`): it checks its arguments and returns the Job to run on a
    connection of `role`'s login; `show` draws the result as a table."""

    def register(plan: Callable[..., Job]) -> click.Command:
        @functools.wraps(plan)
        def callback(json_output: bool, output: str | None, **params: Any) -> None:
            app = _app()
            job = _guarded(app, role, None, lambda: plan(**params))  # before connecting
            url: str = _guarded(app, role, None, lambda: app.database(role))
            result = _guarded(app, role, url, lambda: asyncio.run(_on_connection(url, job)))
            app.emit(result, show, "json" if json_output else output)

        options: list[click.Parameter] = [
            click.Option(["--json", "json_output"], is_flag=True, help=_JSON_HELP),
            click.Option(["-o", "--output"], type=click.Choice(OUTPUTS), help=_OUTPUT_HELP),
        ]
        return _add(group, name, role, plan=plan, callback=callback, extra=options, also=also)

    return register


def service(
    group: click.Group, name: str, *, role: Role
) -> Callable[[Callable[..., Service]], click.Command]:
    """Register the decorated function as the long-running command `name` of `group`: it
    checks its arguments and returns the Service to run with `role`'s database URL until it
    is stopped; its return value is the exit code."""

    def register(plan: Callable[..., Service]) -> click.Command:
        @functools.wraps(plan)
        def callback(**params: Any) -> int:
            app = _app()
            run = _guarded(app, role, None, lambda: plan(**params))
            settings = _guarded(app, role, None, app.settings)
            url: str = _guarded(app, role, None, lambda: app.database(role))
            # A service may check more settings when called, before its coroutine runs: those
            # errors are one line too, and come before logging is set up for the process.
            main = _guarded(app, role, url, lambda: run(settings, url))
            from fleetsvc.logging import configure_logging  # noqa: PLC0415

            configure_logging(settings.log_format, settings.log_level)
            code: int = _guarded(app, role, url, lambda: asyncio.run(main))
            return code

        return _add(group, name, role, plan=plan, callback=callback, extra=[], also=())

    return register


def _add(
    group: click.Group,
    name: str,
    role: Role,
    *,
    plan: Callable[..., Any],
    callback: Callable[..., Any],
    extra: list[click.Parameter],
    also: tuple[tuple[click.Group, str], ...],
) -> click.Command:
    # Click's decorators store parameters on the function, last decorator first.
    params: list[click.Parameter] = list(reversed(getattr(plan, "__click_params__", [])))
    doc = inspect.cleandoc(plan.__doc__ or "")
    cmd = RoleCommand(
        name,
        role=role,
        callback=callback,
        params=[*params, *extra],
        help=doc,
        short_help=" ".join(doc.split("\n\n")[0].split()),
    )
    group.add_command(cmd)
    for other, other_name in also:
        other.add_command(cmd, other_name)
    return cmd


async def _on_connection(url: str, job: Job) -> Any:
    from fleetdb.connect import connect_analytics  # noqa: PLC0415

    conn = await connect_analytics(url)
    try:
        return await job(conn)
    finally:
        await conn.close()


def _guarded(app: App, role: Role | None, url: str | None, run: Callable[[], Any]) -> Any:
    """Run; an error an operator can act on becomes a one-line Failure (--debug: as is)."""
    try:
        return run()
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        failure = failure_of(exc, role, url)
        if failure is None or app.debug:
            raise
        raise failure from exc


def guarded(app: App, run: Callable[[], Any]) -> Any:
    """Run a step that needs no database (loading the settings): errors as one line."""
    return _guarded(app, None, None, run)


def failure_of(exc: BaseException, role: Role | None, url: str | None) -> Failure | None:
    """The one line (and exit code) for an error an operator can act on; None for a bug."""
    while isinstance(exc, BaseExceptionGroup):  # a report's TaskGroup: its first failure
        exc = exc.exceptions[0]
    from fleetctl.errors import AnalyticsError  # noqa: PLC0415
    from fleetsvc.settings_fields import ConfigError  # noqa: PLC0415

    if isinstance(exc, ConfigError):
        return ConfigFailure(str(exc))
    if isinstance(exc, AnalyticsError):
        return Failure(str(exc))
    if "asyncpg" not in sys.modules:
        return None  # nothing connected: not a database error
    return _database_failure(exc, role, url)


def _database_failure(exc: BaseException, role: Role | None, url: str | None) -> Failure | None:
    import asyncpg  # noqa: PLC0415

    from fleetdb.connect import TRANSIENT_ERRORS  # noqa: PLC0415
    from fleetsvc.secrets import mask_url  # noqa: PLC0415

    where = f" at {mask_url(url)}" if url else ""
    login = f"{role.variable} (the {role.value} login)" if role else "the database URL"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return Failure(f"database refused the login{where}: {exc}: check the user in {login}")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return Failure(f"no such database{where}: {exc}: check {login}")
    if isinstance(exc, TRANSIENT_ERRORS):
        return Failure(f"database unreachable{where}: {exc}")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return Failure(f"database error: {exc}: this command needs {login}")
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedFunctionError):
        return Failure(
            f"database error: {exc}: is the schema migrated? run `fleetd migrate` as the "
            "schema owner"
        )
    if isinstance(exc, asyncpg.PostgresError):
        return Failure(f"database error: {exc.__class__.__name__}: {exc}")
    return None


@click.group(
    "fleetctl",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="fleet-telemetry", prog_name="fleetctl")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file (default /etc/fleet-telemetry/fleetctl.toml if it exists); "
    "FLEET_* variables override it",
)
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL URL for this command, whatever its role (default: the role's variable)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable JSON output")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), help=_OUTPUT_HELP)
@click.option("--debug", is_flag=True, help="on an error, the traceback instead of one line")
@click.pass_context
def root(
    ctx: click.Context,
    *,
    config: Path | None,
    database_url: str | None,
    as_json: bool,
    output: str | None,
    debug: bool,
) -> None:
    """AC->DC efficiency per vehicle, fleet reports, charger diagnosis, current state,
    alerts, dead letters and assignments; `fleetctl serve` is the same as an HTTP API.

    Each command reads the database as the login its job needs: reports as
    FLEET_ANALYTICS_DATABASE_URL (a fleet_analytics login or a read replica), writes as
    FLEET_ADMIN_DATABASE_URL (fleet_admin), partitions and compaction as FLEET_DATABASE_URL
    (the schema owner), which is also the fallback of the other two. Settings come from
    --config or /etc/fleet-telemetry/fleetctl.toml, overridden by FLEET_* variables
    (`fleetctl check-config` prints them).

    Exit codes: 0 ok; 1 a one-line error (unknown id, bad window, conflict, database
    unreachable or refusing); 2 a bad setting or usage.
    """
    app = ctx.ensure_object(App)
    app.config, app.database_url, app.debug = config, database_url, debug
    app.json, app.wide = as_json or output == "json", output == "wide"
