"""Errors the analytics API raises; the CLI and HTTP API turn each into a one-line message."""

from __future__ import annotations


class AnalyticsError(Exception):
    """Base of every error a caller can show to an operator as is."""


class UnknownDeviceError(AnalyticsError, LookupError):
    """No reading, current row or assignment knows this device id."""


class NeverSeenError(AnalyticsError):
    """An assignment names a vehicle or meter that never reported (refused with strict)."""


class AssignmentConflictError(AnalyticsError):
    """The requested assignment would give a vehicle two meters at the same instant."""


class InvalidRequestError(AnalyticsError, ValueError):
    """Arguments that cannot go together (a device id with kind "all")."""
