"""The trainer's lease: exactly one active trainer per log, by a PostgreSQL advisory lock.

A trainer holds a session-level advisory lock (keyed by the log's schema) on a connection of
its own for as long as it trains. A second trainer waits, trying the lock every ``poll``
seconds; when the first dies — SIGKILL included — its connection closes, PostgreSQL releases
the lock, and the standby takes it. Before each checkpoint the active trainer checks that
its connection (and so its lease) is still alive, so a trainer cut off from the database
never publishes a model after another one has taken over.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

import psycopg

from bandit.log.postgres.decisions import Conn
from bandit.log.postgres.store import connect

log = logging.getLogger(__name__)

TRAINER_LOCK: Final = 0x0FB3
"""Advisory lock class of the trainer's lease (key: a hash of the log's schema)."""


class TrainerLease:
    """The lease on the log at ``dsn``."""

    def __init__(self, dsn: str, poll: float = 0.5) -> None:
        self.dsn = dsn
        self.poll = poll
        self._conn: Conn | None = None

    def acquire(self, stop: threading.Event) -> bool:
        """Wait until the lease is ours (True) or ``stop`` is set (False)."""
        waiting = False
        while not stop.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.dsn, application="offerbandit-trainer")
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))",
                    (TRAINER_LOCK,),
                ).fetchone()
                if row is not None and row[0]:
                    return True
            except Exception as exc:  # the database away: keep trying
                log.warning("cannot try the trainer's lease: %s", exc)
                self._drop()
            if not waiting:
                log.info("another trainer is active; standing by")
                waiting = True
            stop.wait(self.poll)
        return False

    def held(self) -> bool:
        """Whether the lease is still ours (its connection answers)."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            self._drop()
            return False
        return True

    def release(self) -> None:
        """Give the lease up (closing its connection releases the lock)."""
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


__all__ = ["TRAINER_LOCK", "TrainerLease"]
