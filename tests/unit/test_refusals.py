"""fleetdb.refusals: which database errors no retry fixes, and the fix each names."""

from __future__ import annotations

import asyncpg
import pytest

from fleetdb.connect import TRANSIENT_ERRORS
from fleetdb.refusals import MissingPrivilegeError, SchemaOutdatedError, refusal

PRIVILEGE_FIX = "make the login a member of fleet_ingest"


@pytest.mark.parametrize(
    ("error", "cause", "fix"),
    [
        (
            asyncpg.InvalidPasswordError('password authentication failed for user "fleetd"'),
            "the database refused the login",
            "check the user and password in FLEET_DATABASE_URL",
        ),
        (
            asyncpg.InvalidAuthorizationSpecificationError('role "fleetd" does not exist'),
            "the database refused the login",
            "check the user in FLEET_DATABASE_URL",
        ),
        (
            asyncpg.InvalidCatalogNameError('database "flet" does not exist'),
            "no such database",
            "check the database name in FLEET_DATABASE_URL",
        ),
        (
            asyncpg.InsufficientPrivilegeError("permission denied for table meter_readings"),
            "permission denied",
            PRIVILEGE_FIX,
        ),
        (MissingPrivilegeError("in none of the fleet_* roles"), "permission denied", PRIVILEGE_FIX),
        (
            asyncpg.UndefinedFunctionError("function fleet_ensure_day(unknown) does not exist"),
            "the database schema is not migrated",
            "run `fleetd migrate` as the schema owner",
        ),
        (
            SchemaOutdatedError("013_schema_migrations_readable.sql not applied"),
            "older than this fleetd",
            "run `fleetd migrate` as the schema owner",
        ),
    ],
)
def test_a_refusal_names_its_cause_and_fix(error: Exception, cause: str, fix: str) -> None:
    found = refusal(error, variable="FLEET_DATABASE_URL", privilege_fix=PRIVILEGE_FIX)
    assert found is not None
    assert cause in found.cause
    assert found.fix.startswith(fix)
    assert "\n" not in str(found)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        TimeoutError("the database did not answer within 5 s"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TargetServerAttributeNotMatched("no writable host"),
        asyncpg.UniqueViolationError("a bug, not the operator's"),
    ],
)
def test_an_outage_or_a_bug_is_no_refusal(error: Exception) -> None:
    assert refusal(error, variable="FLEET_DATABASE_URL", privilege_fix=PRIVILEGE_FIX) is None


def test_every_refusal_is_outside_the_transient_errors() -> None:
    # A refusal retried as an outage would be retried within seconds, forever, without its fix.
    for cls in (
        asyncpg.InvalidPasswordError,
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidCatalogNameError,
        asyncpg.InsufficientPrivilegeError,
        asyncpg.UndefinedFunctionError,
    ):
        assert not issubclass(cls, TRANSIENT_ERRORS)
