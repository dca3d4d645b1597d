"""The decision log on SQLite (:class:`bandit.log.DecisionLog`): WAL mode, one writing
connection, group commit.

The log is put together from one module per concept: the group-commit engine
(:mod:`.groupcommit`: every write is a job; queued jobs share one transaction and one
fsync, and an answered call is durable), decisions and their catalogues (:mod:`.decisions`),
outcomes, activations, closing and voiding (:mod:`.attribution`, applying the rules of
:mod:`bandit.outcomes`), statistics (:mod:`.stats`), and the schema with its migrations
(:mod:`.schema`). This module owns the connections, the background WAL checkpoints and the
log's health (:attr:`SqliteDecisionLog.writable`).

Reads use one connection per reading thread (WAL readers never block the writer).

Log positions: ``seq`` orders decisions as they were logged; ``closed_seq`` orders them as
their attribution windows closed, which is the order the learner learns them in. A
checkpoint stores the last ``closed_seq`` it has learned.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bandit.contact.history import LoggedHistory
from bandit.errors import OfferBanditError, StorageError
from bandit.log.sqlite import contacts
from bandit.log.sqlite.attribution import LAST_CLOSED, AttributionRule, LastTouch, OutcomeJobs
from bandit.log.sqlite.decisions import DecisionRows
from bandit.log.sqlite.groupcommit import GroupCommit, Job, Notify, Pending, run_jobs
from bandit.log.sqlite.schema import (
    CONTACT_SCHEMA,
    SCHEMA,
    add_contact_columns,
    add_void_columns,
    migrate_from_1,
    schema_version_of,
)
from bandit.log.sqlite.stats import LiveState, log_stats, removal_counts
from bandit.logcodec import PMF_IN_HEAD_SCHEMA, SCHEMA_VERSION
from bandit.ratelog import RateLimitedLog
from bandit.records import ClosedDecision, LogStats, OutcomeInput, StoredDecision, Windows
from bandit.rewards import RewardRule
from bandit.types import Decision

log = logging.getLogger(__name__)
_rate_log = RateLimitedLog(log, interval=10.0)
T = TypeVar("T")

_WAL_SIZE_LIMIT = 16 * 1024 * 1024
"""Bytes the WAL file is truncated to when it restarts."""


class SqliteDecisionLog:
    """The SQLite decision log (:class:`bandit.log.DecisionLog`). One instance per process owns
    the writer thread."""

    def __init__(
        self,
        path: Path,
        *,
        windows: Windows | None = None,
        reward_rule: RewardRule | None = None,
        attribution: AttributionRule | None = None,
        max_batch: int = 512,
        synchronous: str = "FULL",
        checkpoint_interval: float = 1.0,
        wal_frames_limit: int = 4096,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError(f"synchronous is FULL, NORMAL or OFF, not {synchronous!r}")
        self.path = path
        self._synchronous = synchronous
        self.windows = windows or Windows()
        self.reward_rule = reward_rule or RewardRule()
        self.attribution: AttributionRule = attribution or LastTouch()
        self._decisions = DecisionRows(self.windows)
        self._outcomes = OutcomeJobs(self.windows, self.reward_rule, self.attribution)
        self._live = LiveState()
        """GetStats' doubly robust incremental estimate, kept up to date as it is asked."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._commit_lock = threading.Lock()
        self._closed = threading.Event()
        self.writable = True
        """False since a commit failed (disk full, I/O error …) until a commit — a real one
        or the checkpointer's write probe, tried every ``checkpoint_interval`` — succeeds.
        The server reports health from it."""
        self.wal_frames_limit = wal_frames_limit
        self._conn = self._connect()
        self._migrate()
        # WAL checkpoints run on their own thread and connection, never inside a commit on
        # a request thread (they stall for 10+ ms when they do, measured).
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpoint_interval = checkpoint_interval
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="wal-checkpoint", daemon=True
        )
        self._checkpointer.start()
        self._commits = GroupCommit(self._run_batch, self._commit_lock, max_batch)

    # ---- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            # Takes effect only when this creates the file (before WAL mode and the first
            # table): retention can then give freed pages back (.retention).
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
            # The WAL file shrinks back to this size whenever it restarts (after a complete
            # checkpoint), instead of keeping its largest size forever.
            conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the decision log at {self.path}: {exc}") from exc
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    def _checkpoint_loop(self) -> None:
        """Background WAL checkpoints, and the write probe while the log is not writable.

        A PASSIVE checkpoint never waits for the writer, but under steady load the writer
        appends frames while it runs, so it never catches up and the WAL would never restart
        (it grew to ~100 MB under load). So once the WAL holds more than
        ``wal_frames_limit`` frames, a second PASSIVE pass runs while holding the commit lock:
        with no writer it backfills the few frames the first pass missed (a short pause of the
        commits, not of request threads, which never wait on the disk), the next commit
        restarts the WAL at its start, and ``journal_size_limit`` truncates the file."""
        conn = self._connect()
        try:
            while not self._closed.wait(self._checkpoint_interval):
                try:
                    _busy, frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > self.wal_frames_limit:
                        with self._commit_lock:
                            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    _rate_log.warning("wal", "WAL checkpoint failed (%s); retrying", exc)
                if not self.writable:
                    self._probe()
        finally:
            conn.close()

    def _probe(self) -> None:
        """Try one small write on the writer's connection; the log is writable again when it
        commits."""
        with self._commit_lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('write_probe', ?)",
                    (repr(time.time()),),
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                _rate_log.warning("probe", "the decision log is still not writable: %s", exc)
                return
        self._set_writable(True)

    def _set_writable(self, ok: bool) -> None:
        if ok != self.writable:
            self.writable = ok
            if ok:
                log.warning("the decision log is writable again")
            else:
                log.error("the decision log cannot be written; health turns NOT_SERVING")

    def _migrate(self) -> None:
        conn = self._conn
        try:
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            if has_meta:
                found = schema_version_of(conn)
                if found == PMF_IN_HEAD_SCHEMA:
                    migrate_from_1(conn, self.path)
                elif found != SCHEMA_VERSION:
                    raise StorageError(
                        f"the decision log at {self.path} has schema version {found}; this "
                        f"offerbandit reads version {SCHEMA_VERSION} and has no migration from "
                        f"it. Export it with the offerbandit version that wrote it."
                    )
                add_void_columns(conn)
                add_contact_columns(conn)
                return
            conn.executescript("BEGIN;" + SCHEMA + CONTACT_SCHEMA + "COMMIT;")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot initialise the decision log at {self.path}: {exc}") from exc

    # ---- the writer: group commit (:mod:`.groupcommit`) --------------------------------------

    def submit(
        self,
        job: Job,
        *,
        single_write: bool = False,
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Pending:
        """Queue ``job``; :meth:`wait` on the result commits it (with whatever else waits).
        See :meth:`.groupcommit.GroupCommit.submit`."""
        return self._commits.submit(
            job, single_write=single_write, notify=notify, token=token, wake=wake
        )

    def wait(self, item: Pending) -> Any:
        """Until ``item`` is committed (leading the commit if nobody does); its value."""
        return self._commits.wait(item)

    def run(self, job: Job) -> Any:
        """Run ``job`` and wait until it is durable."""
        return self._commits.run(job)

    def commit_queued(self) -> bool:
        """Commit the queued jobs on the calling thread now, unless a commit is under way."""
        return self._commits.commit_queued()

    def exclusive(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer's connection, outside any transaction, while no batch
        commits (for what cannot run inside a batch's transaction: retention's
        ``incremental_vacuum``, :mod:`.retention`). Hold it briefly: commits wait."""
        with self._commit_lock:
            return fn(self._conn)

    def wake_writer(self) -> None:
        """Have the writer thread commit what is queued (jobs queued with ``wake=False``)."""
        self._commits.wake_writer()

    @property
    def commits_in_place(self) -> int:
        """Batches committed through :meth:`commit_queued` (for tests and diagnostics)."""
        return self._commits.commits_in_place

    def _run_batch(self, batch: list[Pending]) -> None:
        """Commit one batch (under the commit lock): new decisions with known catalogues as
        batched INSERTs, anything else job by job in one transaction."""
        conn = self._conn
        if self._decisions.insert_batched(conn, batch):
            if not self.writable:
                self._set_writable(True)
            return
        exc = run_jobs(conn, batch, self._decisions.rolled_back)
        if exc is not None:
            _rate_log.log(logging.ERROR, "commit", "decision log commit failed: %s", exc)
            self._set_writable(False)
            self._decisions.after_commit(False)
            err = StorageError(f"the decision log could not be written: {exc}")
            for item in batch:
                item.error = err
            return
        self._decisions.after_commit(True)
        if not self.writable:
            self._set_writable(True)

    def close(self) -> None:
        """Flush every queued write and stop the writer."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._commits.close()
        self._checkpointer.join()
        with self._commit_lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.warning("final WAL checkpoint failed", exc_info=True)
            self._conn.close()

    # ---- decisions (:mod:`.decisions`) -------------------------------------------------------

    def append(self, decision: Decision, request_hash: str = "") -> StoredDecision | None:
        """Log ``decision`` durably.

        With a request id already logged, nothing is written and the earlier decision is
        returned (or :class:`~bandit.errors.Conflict` raised when its request differed);
        otherwise ``None``.
        """
        found: StoredDecision | None = self.wait(self.submit_decision(decision, request_hash))
        return found

    def submit_decision(
        self,
        decision: Decision,
        request_hash: str = "",
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Pending:
        """Queue ``decision``'s insert (see :meth:`submit`); its result is what
        :meth:`append` returns."""
        job, row, catalogue = self._decisions.job(decision, request_hash)
        item = Pending(job, True, notify, token)
        if not decision.request_id:
            item.fast = (catalogue, row)
        return self._commits.enqueue(item, wake)

    def submit_decisions(
        self,
        decisions: Sequence[Decision],
        request_hashes: Sequence[str],
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Pending:
        """Queue ``decisions`` as one write (one transaction, multi-row INSERTs: a batch of
        Choose answers); its value has one entry per decision, ``None`` when written, else
        the decision to answer with (logged before under its request id) or the
        :class:`~bandit.errors.Conflict` of its request id."""
        job = self._decisions.batch_job(decisions, request_hashes)
        return self._commits.enqueue(Pending(job, False, notify, token), wake)

    def append_job(self, decision: Decision, request_hash: str) -> Job:
        return self._decisions.job(decision, request_hash)[0]

    def find_request(self, request_id: str, request_hash: str) -> StoredDecision | None:
        """The decision logged for ``request_id`` (read side, no write)."""
        return self._decisions.by_request_id(self._reader(), request_id, request_hash)

    def find_requests(
        self, requests: Sequence[tuple[str, str]]
    ) -> dict[str, StoredDecision | OfferBanditError]:
        """The logged ones of many (request id, request hash) pairs, in one query per 500
        ids: each its decision, or the :class:`~bandit.errors.Conflict` of a request id used
        for a different request (read side, no write)."""
        return self._decisions.by_request_ids(self._reader(), requests)

    def get(self, event_id: str) -> StoredDecision:
        return self._decisions.get(self._reader(), event_id)

    def count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def closed_after(self, position: int, limit: int) -> list[ClosedDecision]:
        """Closed decisions with ``closed_seq > position``, in learning order."""
        return self._decisions.closed_after(self._reader(), position, limit)

    def last_closed(self) -> int:
        row = self._reader().execute(LAST_CLOSED)
        return int(row.fetchone()[0])

    # ---- outcomes, activation, windows, voiding (:mod:`.attribution`) ------------------------

    def submit_activation(
        self,
        event_id: str,
        at: float,
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Pending:
        """Queue the activation of ``event_id`` at ``at`` (see :meth:`submit`); its value is
        the :class:`~bandit.records.Activation`. Activations queued together commit in one
        transaction, each refused one leaving nothing behind (its one write is its last
        statement: no savepoint needed)."""
        job = self._outcomes.activate_job(event_id, at)
        return self.submit(job, single_write=True, notify=notify, token=token, wake=wake)

    def submit_outcome(
        self,
        outcome: OutcomeInput,
        now: float,
        max_future_skew: float,
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Pending:
        """Queue ``outcome``'s write (see :meth:`submit`); its value is the outcome's result."""
        job = self.outcome_job(outcome, now, max_future_skew)
        return self.submit(job, notify=notify, token=token, wake=wake)

    def outcome_job(self, outcome: OutcomeInput, now: float, max_future_skew: float) -> Job:
        """A writer job that validates, deduplicates, attributes and stores one outcome."""
        return self._outcomes.outcome_job(outcome, now, max_future_skew)

    def close_due(self, now: float, limit: int = 5000) -> int:
        """Close every open window that has ended by ``now``; returns how many closed."""
        return int(self.run(self._outcomes.close_due_job(now, limit)))

    def next_window_close(self) -> float | None:
        row = (
            self._reader()
            .execute(
                "SELECT MIN(window_closes_at) FROM decisions WHERE closed_seq IS NULL"
                " AND window_closes_at IS NOT NULL"
            )
            .fetchone()
        )
        return None if row[0] is None else float(row[0])

    def void_decisions(
        self,
        now: float,
        event_ids: Sequence[str] = (),
        decided_between: tuple[float, float] | None = None,
    ) -> int:
        """Flag decisions as void (by event id, and/or decided within a time range): they
        stay in the log, and the learner never learns them (:meth:`closed_after` skips
        them). Returns how many were newly voided."""
        return int(self.run(self._outcomes.void_decisions_job(now, event_ids, decided_between)))

    def void_outcomes(
        self,
        now: float,
        outcome_ids: Sequence[str] = (),
        received_between: tuple[float, float] | None = None,
    ) -> int:
        """Flag outcomes as void (by id, and/or received within a time range): they stay in
        the log, flagged, and no longer count for their decision (a closed decision's reward
        is computed again from what remains). Returns how many were newly voided."""
        job = self._outcomes.void_outcomes_job(now, outcome_ids, received_between)
        return int(self.run(job))

    # ---- what contact policies read (:mod:`.contacts`) ---------------------------------------

    def contact_history(
        self,
        customer_id: str,
        contacts_since: float | None,
        negatives_since: float | None,
        negative_types: Collection[str],
    ) -> LoggedHistory:
        return contacts.customer_history(
            self._reader(), customer_id, contacts_since, negatives_since, negative_types
        )

    def customers_with_outcomes(self, types: Collection[str]) -> set[str]:
        return contacts.customers_with_outcomes(self._reader(), types)

    def customers_contacted_since(self, since: float, limit: int) -> set[str] | None:
        return contacts.customers_contacted_since(self._reader(), since, limit)

    def offer_counts(self, offers: Collection[str], since: float | None = None) -> dict[str, int]:
        return contacts.offer_counts(self._reader(), offers, since)

    def offer_spend(self, offers: Collection[str]) -> dict[str, float]:
        return contacts.offer_spend(self._reader(), offers)

    # ---- stats (:mod:`.stats`) ---------------------------------------------------------------

    def stats(self, now: float, recent_seconds: float) -> LogStats:
        return log_stats(self._reader(), now, recent_seconds, self._live)

    def removal_counts(self) -> dict[str, int]:
        return removal_counts(self._reader())


__all__ = ["SqliteDecisionLog"]
