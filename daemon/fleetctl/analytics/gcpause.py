"""Build many small objects without the cyclic garbage collector running in between.

A fleet report creates ~30,000 container objects per kind of result (per-device tuples, row
dicts and their lists); with the collector on, every 700 of them start a young collection and
every 10 of those a middle one that traverses everything built so far. Kept because an
interleaved A/B of the whole report (docs/performance.md) measured it at 15 % of the call.
Reference counting still frees everything at once: none of these objects form cycles.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic collector for a synchronous block (never across an await: other tasks
    would run with it paused too). Nests: only the outermost block resumes it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
