"""Rate-limited logging: a problem that can repeat at request rate is logged at most once per
interval, with the count of the ones suppressed meanwhile (a hostile client must not be able
to fill the log)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedLog:
    """Log through ``logger`` at most once per ``interval`` seconds per key.

    >>> import logging
    >>> seen = []
    >>> r = RateLimitedLog(logging.getLogger("x"), interval=60.0, clock=lambda: 0.0)
    >>> r.emit = lambda level, msg, args: seen.append(msg % args)
    >>> for _ in range(3):
    ...     _ = r.warning("k", "bad %s", "input")
    >>> seen
    ['bad input']
    >>> r.suppressed("k")
    2
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def emit(self, level: int, msg: str, args: tuple[object, ...]) -> None:
        self.logger.log(level, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log unless ``key`` was logged less than ``interval`` ago; True when logged."""
        now = self._clock()
        with self._lock:
            if now < self._next.get(key, float("-inf")):
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return False
            skipped = self._skipped.pop(key, 0)
            self._next[key] = now + self.interval
            if len(self._next) > 1024:  # keys are few (problem kinds); bound them anyway
                self._next = {key: self._next[key]}
        if skipped:
            msg += " (%d more like this were not logged)"
            args = (*args, skipped)
        self.emit(level, msg, args)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def suppressed(self, key: str) -> int:
        with self._lock:
            return self._skipped.get(key, 0)


__all__ = ["RateLimitedLog"]
