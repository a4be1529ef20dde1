"""What every throwaway server of the harness is: started and stopped around a `with` block."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ThrowawayServer:
    """`with Server() as s:` starts the server and always stops (and removes) it."""

    def start(self) -> Self:
        """Start the server; return self."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and remove what it wrote."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
