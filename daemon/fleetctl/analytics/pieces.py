"""Split a window into the fewest rollup buckets and raw readings that cover it exactly.

[start, end) is covered, from the coarsest level down, by the level's whole buckets that fit,
and the parts left over at either side by the next finer level, down to raw readings for what
no 10-minute bucket covers. A 24 h window from 08:13:30 reads raw [08:13:30, 08:20),
10-minute buckets [08:20, 09:00), hours [09:00, 12:00), 4-hour blocks [12:00, 08:00) of the
next day, and then hours, 10-minute buckets and raw readings up to 08:13:30 again.

Buckets hold exactly the readings whose timestamp falls in them, so the pieces sum to the
same figures as the raw readings of the window, to the last digit. A level is complete only
before its watermark (fleetdb.fold): `folded` clamps each level's pieces there, and what lies
after it is covered by the finer levels (the 10-minute level's watermark is a few minutes ago:
only the newest minutes come from raw readings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleetdb.fold import Marks
from fleetdb.rollups import LEVELS, Level, ceil_to, floor_to


@dataclass(frozen=True)
class Piece:
    """Readings in [start, end) from `level`'s buckets, or raw readings when level is None."""

    level: Level | None
    start: datetime
    end: datetime


def split(
    start: datetime, end: datetime, levels: tuple[Level, ...] = LEVELS, folded: Marks | None = None
) -> list[Piece]:
    """The pieces covering [start, end), in time order, none empty; with `folded` (the
    levels' watermarks), no level's piece reaches past its watermark."""
    if start >= end:
        return []
    if not levels:
        return [Piece(None, start, end)]
    coarsest, finer = levels[-1], levels[:-1]
    lo, hi = ceil_to(start, coarsest.width), floor_to(end, coarsest.width)
    if folded is not None:
        hi = min(hi, floor_to(folded[coarsest.name], coarsest.width))
    if lo >= hi:
        return split(start, end, finer, folded)
    return [
        *split(start, lo, finer, folded),
        Piece(coarsest, lo, hi),
        *split(hi, end, finer, folded),
    ]


def open_ended(end: datetime) -> datetime:
    """Where a window may be taken to end when no reading at or after `end` exists yet.

    Then the bucket of every level that holds `end` holds exactly the readings before it, so
    the window can run to the end of the coarsest bucket and needs no fine pieces at its end.
    """
    return ceil_to(end, LEVELS[-1].width)
