"""The choices and defaults the reports take, in a module that loads nothing: the CLI builds its
options and help from here without importing the reports (fleetctl.analytics: numpy, asyncpg)
until a command runs."""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CHARGER_MAX_INTERVAL",
    "CURRENT_KINDS",
    "DEFAULT_MIN_AC_KWH",
    "SORT_KEYS",
    "CurrentKind",
]

# Below this AC energy in a window a vehicle is insufficient_data rather than judged.
DEFAULT_MIN_AC_KWH = 0.1
SORT_KEYS = ("efficiency", "loss", "ac", "vehicle")
CurrentKind = Literal["meters", "vehicles", "all"]
CURRENT_KINDS: tuple[CurrentKind, ...] = ("meters", "vehicles", "all")
# A charger's 95 % interval of η at most this wide (± 1 point) earns a status from η̂ even
# when it crosses a band's edge (fleetctl.analytics.chargers).
CHARGER_MAX_INTERVAL = 0.02
