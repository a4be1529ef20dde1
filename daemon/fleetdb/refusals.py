"""Database errors that no retry fixes: a login the server refuses, a database that does not
exist, a login without the privileges its job needs, a schema older than the code. Each becomes
a Refusal: the cause and what to do, on one line, for fleetd's log and /healthz and for the
one-line errors of the command-line tools. Anything else is not a refusal (None): an unreachable
server is retried (fleetdb.connect.TRANSIENT_ERRORS), a bug is a bug."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

MIGRATE = "run `fleetd migrate` as the schema owner"


@dataclass(frozen=True)
class Refusal:
    """What the database refused and how to fix it."""

    cause: str
    fix: str

    def __str__(self) -> str:
        return f"{self.cause}: {self.fix}"


class SchemaOutdatedError(Exception):
    """The database lacks migrations this code ships (never migrated, or an older backup)."""


class MissingPrivilegeError(Exception):
    """The login lacks a privilege its job needs (found by a check, not by a failed query)."""


def refusal(exc: BaseException, *, variable: str, privilege_fix: str) -> Refusal | None:
    """The Refusal `exc` stands for, or None. `variable` names the setting holding the URL;
    `privilege_fix` says what to do about a permission the login lacks (it depends on the job:
    a fleet_ingest login for fleetd, the schema owner for migrations)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, SchemaOutdatedError):
        return Refusal(f"the database schema is older than this fleetd ({text})", MIGRATE)
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return Refusal(
            f"the database refused the login ({text})", f"check the user and password in {variable}"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        # role does not exist, or no pg_hba.conf entry for this user, database and address
        return Refusal(
            f"the database refused the login ({text})",
            f"check the user in {variable} (and the server's pg_hba.conf)",
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return Refusal(
            f"no such database ({text})",
            f"check the database name in {variable}, or create it and {MIGRATE}",
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError | MissingPrivilegeError):
        return Refusal(f"permission denied ({text})", privilege_fix)
    if isinstance(
        exc,
        asyncpg.UndefinedTableError | asyncpg.UndefinedFunctionError | asyncpg.UndefinedColumnError,
    ):
        return Refusal(f"the database schema is not migrated ({text})", MIGRATE)
    return None
