"""The closer: closes the attribution windows that have ended, on schedule."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> float: ...


class ClosingLog(Protocol):
    """What the closer needs of the decision log."""

    def close_due(self, now: float, limit: int = 5000) -> int: ...


class Closer:
    """Closes every window that has ended by the clock's now (:meth:`close_due`), every
    ``interval`` seconds while :meth:`run` runs."""

    def __init__(self, log: ClosingLog, clock: Clock, interval: float) -> None:
        self.log = log
        self.clock = clock
        self.interval = interval

    def close_due(self) -> int:
        """Close what is due now; returns how many closed."""
        return self.log.close_due(self.clock.now())

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set (a failure is logged and retried at the next tick)."""
        while not stop.wait(self.interval):
            try:
                self.close_due()
            except Exception:
                log.exception("closing attribution windows failed; retrying")


__all__ = ["Closer", "ClosingLog"]
