"""`fleetd run | migrate | check-config`.

Exit codes: 0 ok; 1 interrupted, or a bug (its traceback); 2 a bad setting or usage, or the
ops address (FLEET_HTTP_ADDR) taken; 3 the database unreachable (migrate); 4 the database
refused (migrate: the login, a privilege, no such database). Each error is one line naming
the fix; `--debug` shows the traceback instead. `fleetd run` does not exit on what the
database or broker refuses: it retries slowly and says why (fleetd.waiting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetd.service import Daemon
    from fleetd.settings import Settings

# Settings (pydantic), the daemon, the database layer and aiohttp are imported where a command
# needs them: at the top they cost `fleetd --version` over a second on a loaded host.

EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_STARTUP = 3
EXIT_REFUSED = 4
MIGRATE_PRIVILEGE_FIX = (
    "run `fleetd migrate` as the schema owner (the login that owns the tables; on a new "
    "database, one that may create in its public schema)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetd", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('fleet-telemetry')}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "ingest MQTT telemetry into PostgreSQL until SIGTERM"),
        ("migrate", "apply pending sql/ migrations and create partitions ahead"),
        ("check-config", "print the effective configuration (secrets masked)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, help="TOML file; FLEET_* environment overrides it")
        p.add_argument(
            "--debug", action="store_true", help="on an error, the traceback instead of one line"
        )
    return parser


async def _run(settings: Settings) -> int:
    from fleetd.service import Daemon  # noqa: PLC0415

    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            # A second signal means "now": the broker still holds every unacked message.
            raise SystemExit(1)
        daemon.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    _install_companions(daemon)
    await daemon.run()
    return 0


def _install_companions(daemon: Daemon) -> None:
    """The ops HTTP server and the systemd notifier (see fleetd.ops). Imported here, not at the
    top, so `fleetd migrate` and `check-config` do not load them; a broken import fails loudly."""
    from fleetd.ops import install  # noqa: PLC0415

    install(daemon)


async def _migrate(settings: Settings) -> int:
    import structlog  # noqa: PLC0415

    from fleetdb.connect import connect  # noqa: PLC0415
    from fleetdb.migrate import migrate  # noqa: PLC0415
    from fleetdb.partitions import PartitionCache  # noqa: PLC0415

    log = structlog.get_logger("fleetd")
    conn = await connect(settings.database_url, application_name="fleetd-migrate")
    try:
        applied = await migrate(conn)
        created = await PartitionCache().ensure_ahead(conn)
    finally:
        await conn.close()
    log.info("migrated", applied=applied, partitions_created=created)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fleetd` console script."""
    args = _parser().parse_args(argv)
    from fleetd.settings import ConfigError, environment_warnings, load_settings  # noqa: PLC0415

    for line in environment_warnings():
        print(f"fleetd: warning: {line}", file=sys.stderr)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"fleetd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if "database_url" not in settings.model_fields_set:
        # Set nowhere: the default may be some other service's database on this host.
        print(
            f"fleetd: warning: FLEET_DATABASE_URL is not set: using {settings.database_url}",
            file=sys.stderr,
        )
    if args.command == "check-config":
        print(json.dumps(settings.masked(), indent=2))
        return 0
    from fleetsvc.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings.log_format, settings.log_level)
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        return asyncio.run(_run(settings))
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception as exc:
        failure = None if args.debug else one_line(exc)
        if failure is None:
            raise
        code, line = failure
        print(f"fleetd: {line}", file=sys.stderr)
        return code


def one_line(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for an error an operator can act on; None for a bug."""
    from fleetd.settings import ConfigError  # noqa: PLC0415
    from fleetdb.connect import TRANSIENT_ERRORS  # noqa: PLC0415
    from fleetdb.refusals import refusal  # noqa: PLC0415
    from fleetsvc.web.server import BindError  # noqa: PLC0415

    while isinstance(exc, BaseExceptionGroup):  # a TaskGroup's: its first failure
        exc = exc.exceptions[0]
    if isinstance(exc, ConfigError):  # a setting found wanting only when used (a file)
        return EXIT_CONFIG, f"invalid configuration: {exc}"
    if isinstance(exc, BindError):
        return EXIT_CONFIG, (
            f"FLEET_HTTP_ADDR: {exc}: stop what listens there, or set FLEET_HTTP_ADDR to a free "
            "host:port (or off)"
        )
    if isinstance(exc, TRANSIENT_ERRORS):
        return EXIT_STARTUP, f"database unreachable: {exc.__class__.__name__}: {exc}"
    found = refusal(exc, variable="FLEET_DATABASE_URL", privilege_fix=MIGRATE_PRIVILEGE_FIX)
    if found is not None:
        return EXIT_REFUSED, str(found)
    return None
