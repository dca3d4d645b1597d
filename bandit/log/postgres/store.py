"""The decision log on PostgreSQL (:class:`bandit.log.DecisionLog`): any number of processes
— deciders, a trainer, offline readers — share one log.

The log is put together as the SQLite log is, one module per concept: decisions and their
catalogues (:mod:`.decisions`), outcomes, activations, closing and voiding
(:mod:`.attribution`), what contact policies read and the hold that makes them atomic across
processes (:mod:`.contacts`), statistics (:mod:`.stats`) and the versioned migrations
(:mod:`.schema`). This module owns the connections and the group commit.

**Group commit.** Writes are queued as jobs and committed in batches by the engine the
SQLite log uses (:class:`bandit.log.sqlite.groupcommit.GroupCommit`): one transaction per
batch, plain decisions in multi-row INSERTs, every other job in its own savepoint (a job
that fails leaves nothing behind and spares its batch), and a submitter is answered only
once the batch's COMMIT has returned — with ``synchronous_commit = on``, set on every
connection, that is once PostgreSQL has flushed its WAL. A batch that loses a
deadlock or a serialization check against another process is run again whole (its jobs read
before they write, so running one again is safe); a batch that fails otherwise fails every
job in it with :class:`~bandit.errors.StorageError`, and the log reports itself not writable
until a commit succeeds again.

A durable COMMIT costs ~10 ms of WAL flush on this machine's disk. ``writers`` > 1 gives the
log several writer connections ("lanes", taken in turn), each with its own batches, so that
several batches are in flight and PostgreSQL can flush their commits together; on this
loaded two-core machine 1 and 4 lanes measured within noise of each other (docs/scale-out.md),
so the default is one.

**Reads** use one autocommit connection per reading thread; each read sees what was
committed, by any process, when it ran.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from bandit.contact.history import LoggedHistory
from bandit.errors import NotReady, OfferBanditError, StorageError
from bandit.log.postgres import contacts
from bandit.log.postgres.attribution import LAST_CLOSED, OutcomeJobs
from bandit.log.postgres.decisions import FAST_MAX, Conn, DecisionRows
from bandit.log.postgres.schema import migrate
from bandit.log.postgres.stats import log_stats, removal_counts
from bandit.log.sqlite.groupcommit import GroupCommit, Notify, Pending, notify_all
from bandit.ratelog import RateLimitedLog
from bandit.records import ClosedDecision, LogStats, OutcomeInput, StoredDecision, Windows
from bandit.rewards import RewardRule
from bandit.types import Decision

log = logging.getLogger(__name__)
_rate_log = RateLimitedLog(log, interval=10.0)

_RETRIES = 8
"""Times a batch that lost a deadlock or serialization check is run again."""

_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


def connect(dsn: str, *, application: str = "offerbandit") -> Conn:
    """An autocommit connection whose commits are durable (``synchronous_commit = on``),
    raising :class:`~bandit.errors.StorageError` naming what failed (never the password)."""
    try:
        conn = psycopg.connect(dsn, autocommit=True, application_name=application)
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to the decision log's database: {exc}") from exc
    conn.execute("SET synchronous_commit = on")
    # Deadlocks between two processes' batches are resolved (one runs again) sooner than
    # the server's default second; only a superuser may change it.
    with contextlib.suppress(psycopg.Error):
        conn.execute("SET deadlock_timeout = '50ms'")
    return conn


class PostgresDecisionLog:
    """The PostgreSQL decision log (:class:`bandit.log.DecisionLog`). One instance per
    process; any number of processes on one database (and schema)."""

    def __init__(
        self,
        dsn: str,
        *,
        windows: Windows | None = None,
        reward_rule: RewardRule | None = None,
        max_batch: int = 512,
        writers: int = 1,
    ) -> None:
        """``writers``: writer connections ("lanes"), each committing its own batches (see
        the module's docstring)."""
        if writers < 1:
            raise ValueError("writers must be at least 1")
        self.dsn = dsn
        self.windows = windows or Windows()
        self.reward_rule = reward_rule or RewardRule()
        self._decisions = DecisionRows(self.windows)
        self._outcomes = OutcomeJobs(self.windows, self.reward_rule)
        self._local = threading.local()
        self._readers: list[Conn] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.writable = True
        """False since a commit failed until one succeeds (the server reports health)."""
        first = connect(dsn, application="offerbandit-writer")
        try:
            self.schema_version = migrate(first)
        except BaseException:
            first.close()
            raise
        self._hold_conn: Conn | None = None
        self._hold_lock = threading.Lock()
        self._hold_thread: int | None = None
        self._hold_item: Pending | None = None
        self._lanes = [_Lane(self, first if k == 0 else None, max_batch) for k in range(writers)]
        self._next_lane = itertools.cycle(self._lanes)

    # ---- connections ---------------------------------------------------------------------

    def _reader(self) -> Conn:
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = connect(self.dsn, application="offerbandit-reader")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read(self) -> Conn:
        """The connection a read runs on: the contact hold's inside one, else the thread's."""
        if self._hold_thread is not None and self._hold_thread == threading.get_ident():
            assert self._hold_conn is not None
            return self._hold_conn
        return self._reader()

    def _set_writable(self, ok: bool) -> None:
        if ok != self.writable:
            self.writable = ok
            if ok:
                log.warning("the decision log is writable again")
            else:
                log.error("the decision log cannot be written; health turns NOT_SERVING")

    # ---- the writer: group commit --------------------------------------------------------

    def _run_batch(self, lane: _Lane, batch: list[Pending]) -> None:
        """Commit one batch on ``lane`` (under its commit lock), running it again after a
        deadlock."""
        for attempt in range(_RETRIES + 1):
            try:
                results = self._try_batch(lane.writer(), batch)
            except _RETRYABLE as exc:
                if attempt == _RETRIES:
                    self._fail(batch, exc)
                    return
                log.debug("batch of %d lost a lock race (%s); again", len(batch), exc)
                time.sleep(0.002 * (attempt + 1))
                continue
            except psycopg.Error as exc:
                self._fail(batch, exc)
                lane.drop_if_broken()
                return
            for item, (ok, value) in zip(batch, results, strict=True):
                if ok:
                    item.value = value
                else:
                    item.error = value
            if not self.writable:
                self._set_writable(True)
            return

    def _fail(self, batch: list[Pending], exc: BaseException) -> None:
        _rate_log.log(logging.ERROR, "commit", "decision log commit failed: %s", exc)
        self._set_writable(False)
        err = StorageError(f"the decision log could not be written: {exc}")
        for item in batch:
            item.error = err

    def _try_batch(self, conn: Conn, batch: list[Pending]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = [(True, None)] * len(batch)
        fast = [i for i, it in enumerate(batch) if it.fast is not None]
        slow = [i for i, it in enumerate(batch) if it.fast is None]
        rows = [batch[i].fast[1] for i in fast]  # type: ignore[index]
        if fast and not slow and len(rows) <= FAST_MAX:
            # Only new decisions, few enough for one INSERT: in autocommit mode that
            # statement is its own durable transaction, one round trip for the batch.
            try:
                DecisionRows.insert_many(conn, rows)
                return results
            except psycopg.errors.IntegrityError:  # nothing written: one by one below
                log.debug("batched insert failed; one by one", exc_info=True)
                fast, slow = [], list(range(len(batch)))
        with conn.transaction():
            if fast:
                try:
                    with conn.transaction():
                        DecisionRows.insert_many(conn, rows)
                except _RETRYABLE:
                    raise
                except psycopg.errors.IntegrityError:
                    log.debug("batched insert failed; one by one", exc_info=True)
                    slow = sorted(fast + slow)
            for i in slow:
                job: Any = batch[i].job  # typed for SQLite's connection; any log's jobs fit
                try:
                    with conn.transaction():
                        results[i] = (True, job(conn))
                except (*_RETRYABLE, psycopg.OperationalError):
                    raise
                except Exception as exc:
                    results[i] = (False, exc)
        return results

    def submit(
        self, job: Any, *, notify: Notify | None = None, token: Any = None, wake: bool = True
    ) -> Pending:
        """Queue ``job`` (a function of the writing connection)."""
        return self._enqueue(_Item(job, False, notify, token), wake)

    def _enqueue(self, item: _Item, wake: bool) -> Pending:
        item.lane = lane = next(self._next_lane)
        return lane.commits.enqueue(item, wake)

    def wait(self, item: Pending) -> Any:
        lane = getattr(item, "lane", None)
        if lane is None:  # a held decision: committed with its hold
            return item.result()
        return lane.commits.wait(item)

    def run(self, job: Any) -> Any:
        """Run ``job`` and wait until it is durable."""
        return self.wait(self.submit(job))

    def commit_queued(self) -> bool:
        led = False
        for lane in self._lanes:
            led = lane.commits.commit_queued() or led
        return led

    def wake_writer(self) -> None:
        for lane in self._lanes:
            lane.commits.wake_writer()

    def close(self) -> None:
        """Flush every queued write and close the connections."""
        if self._closed:
            return
        self._closed = True
        for lane in self._lanes:
            lane.close()
        if self._hold_conn is not None:
            self._hold_conn.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # ---- decisions -----------------------------------------------------------------------

    def append(self, decision: Decision, request_hash: str = "") -> StoredDecision | None:
        """Log ``decision`` durably (see :meth:`submit_decision`)."""
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
        """Queue ``decision``'s insert; its value is ``None`` or the decision logged before
        under the same request id. Inside a contact hold on this thread the insert runs in
        the hold's transaction instead, committed when the hold is released."""
        if self._closed:
            raise NotReady("the decision log is closed")
        try:
            cid = self._decisions.prepare(self._reader(), decision)
        except psycopg.Error as exc:
            raise StorageError(f"the decision log could not be written: {exc}") from exc
        row = self._decisions.row(decision, request_hash, cid)
        job = self._decisions.insert_job(row, decision.request_id, request_hash)
        item = _Item(job, True, notify, token)
        if self._hold_thread == threading.get_ident() and self._hold_item is None:
            conn = self._hold_conn
            assert conn is not None
            self._hold_item = item
            try:
                with conn.transaction():
                    item.value = job(conn)
            except Exception as exc:
                item.error = exc
            return item
        if not decision.request_id:
            item.fast = ("", row)
        return self._enqueue(item, wake)

    def submit_decisions(
        self,
        decisions: Sequence[Decision],
        request_hashes: Sequence[str],
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Pending:
        """Queue ``decisions`` as one write (one transaction; see
        :meth:`bandit.log.DecisionLog.submit_decisions`). Not inside a contact hold: the
        batch path decides customer by customer on a log that holds."""
        if self._closed:
            raise NotReady("the decision log is closed")
        try:
            reader = self._reader()
            rows = [
                self._decisions.row(d, h, self._decisions.prepare(reader, d))
                for d, h in zip(decisions, request_hashes, strict=True)
            ]
        except psycopg.Error as exc:
            raise StorageError(f"the decision log could not be written: {exc}") from exc
        job = self._decisions.batch_job(rows, [d.request_id for d in decisions], request_hashes)
        return self._enqueue(_Item(job, False, notify, token), wake)

    def find_request(self, request_id: str, request_hash: str) -> StoredDecision | None:
        return self._decisions.by_request_id(self._reader(), request_id, request_hash)

    def find_requests(
        self, requests: Sequence[tuple[str, str]]
    ) -> dict[str, StoredDecision | OfferBanditError]:
        """The logged ones of many (request id, request hash) pairs, in one query."""
        return self._decisions.by_request_ids(self._reader(), requests)

    def get(self, event_id: str) -> StoredDecision:
        return self._decisions.get(self._reader(), event_id)

    def count(self) -> int:
        row = self._reader().execute("SELECT COUNT(*) FROM decisions").fetchone()
        return int(row[0]) if row else 0

    def closed_after(self, position: int, limit: int) -> list[ClosedDecision]:
        return self._decisions.closed_after(self._reader(), position, limit)

    def last_closed(self) -> int:
        row = self._reader().execute(LAST_CLOSED).fetchone()
        return int(row[0]) if row else 0

    # ---- outcomes, activation, windows, voiding ------------------------------------------

    def submit_outcome(
        self,
        outcome: OutcomeInput,
        now: float,
        max_future_skew: float,
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Pending:
        job = self._outcomes.outcome_job(outcome, now, max_future_skew)
        return self.submit(job, notify=notify, token=token, wake=wake)

    def submit_activation(
        self,
        event_id: str,
        at: float,
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Pending:
        """Queue the activation of ``event_id`` at ``at``; its value is the
        :class:`~bandit.records.Activation`. Activations queued together on a lane commit in
        one transaction, each in its own savepoint (a refused one leaves nothing behind)."""
        job = self._outcomes.activate_job(event_id, at)
        return self.submit(job, notify=notify, token=token, wake=wake)

    def close_due(self, now: float, limit: int = 5000) -> int:
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
        return None if row is None or row[0] is None else float(row[0])

    def void_decisions(
        self,
        now: float,
        event_ids: Sequence[str] = (),
        decided_between: tuple[float, float] | None = None,
    ) -> int:
        return int(self.run(self._outcomes.void_decisions_job(now, event_ids, decided_between)))

    def void_outcomes(
        self,
        now: float,
        outcome_ids: Sequence[str] = (),
        received_between: tuple[float, float] | None = None,
    ) -> int:
        job = self._outcomes.void_outcomes_job(now, outcome_ids, received_between)
        return int(self.run(job))

    # ---- contact policies (:mod:`.contacts`) ---------------------------------------------

    def hold_contacts(self, customer_id: str, offers: Collection[str]) -> None:
        """Hold ``customer_id``'s contacts and ``offers``' budgets against every other
        process until :meth:`release_contacts` (on the same thread): reads on this thread
        run in the hold's transaction, and the next decision queued on this thread is
        inserted in it. One hold at a time per log (a second waits)."""
        self._hold_lock.acquire()
        try:
            if self._hold_conn is None or self._hold_conn.closed:
                self._hold_conn = connect(self.dsn, application="offerbandit-contacts")
            conn = self._hold_conn
            conn.execute("BEGIN")
            contacts.lock_hold(conn, customer_id, offers)
        except BaseException as exc:
            self._abandon_hold()
            self._hold_lock.release()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"cannot hold the customer's contacts: {exc}") from exc
            raise
        self._hold_thread = threading.get_ident()
        self._hold_item = None

    def release_contacts(self) -> None:
        """Commit the hold's transaction (the decision it took, if any, is then durable and
        its submitter notified) and let the next hold in."""
        item, self._hold_item = self._hold_item, None
        self._hold_thread = None
        conn = self._hold_conn
        try:
            assert conn is not None
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._abandon_hold()
            if item is not None and item.error is None:
                item.error = StorageError(f"the decision log could not be written: {exc}")
                item.value = None
        finally:
            self._hold_lock.release()
        if item is not None:
            item.done = True
            if item.notify is not None:
                notify_all([item])

    def _abandon_hold(self) -> None:
        conn = self._hold_conn
        if conn is None:
            return
        try:
            if (
                not conn.closed
                and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            ):
                conn.execute("ROLLBACK")
        except psycopg.Error:
            conn.close()
        if conn.closed or conn.broken:
            self._hold_conn = None

    def contact_history(
        self,
        customer_id: str,
        contacts_since: float | None,
        negatives_since: float | None,
        negative_types: Collection[str],
    ) -> LoggedHistory:
        return contacts.customer_history(
            self._read(), customer_id, contacts_since, negatives_since, negative_types
        )

    def customers_with_outcomes(self, types: Collection[str]) -> set[str]:
        return contacts.customers_with_outcomes(self._read(), types)

    def customers_contacted_since(self, since: float, limit: int) -> set[str] | None:
        """Always None ("too many to keep"): a shared log has other writers, so no process
        may cache who was contacted; every Choose under a policy reads the log."""
        return None

    def offer_counts(self, offers: Collection[str], since: float | None = None) -> dict[str, int]:
        return contacts.offer_counts(self._read(), offers, since)

    def offer_spend(self, offers: Collection[str]) -> dict[str, float]:
        return contacts.offer_spend(self._read(), offers)

    # ---- stats (:mod:`.stats`) -----------------------------------------------------------

    def stats(self, now: float, recent_seconds: float) -> LogStats:
        return log_stats(self._reader(), now, recent_seconds)

    def removal_counts(self) -> dict[str, int]:
        return removal_counts(self._reader())


class _Item(Pending):
    """A queued job and the lane it was queued on."""

    __slots__ = ("lane",)

    def __init__(self, job: Any, single_write: bool, notify: Notify | None, token: Any) -> None:
        super().__init__(job, single_write, notify, token)
        self.lane: _Lane | None = None


class _Lane:
    """One writer connection with its group commit (its own queue, leader and thread)."""

    def __init__(self, log: PostgresDecisionLog, conn: Conn | None, max_batch: int) -> None:
        self.dsn = log.dsn
        self.conn = conn
        self.lock = threading.Lock()
        self.commits = GroupCommit(functools.partial(log._run_batch, self), self.lock, max_batch)

    def writer(self) -> Conn:
        if self.conn is None or self.conn.closed:
            self.conn = connect(self.dsn, application="offerbandit-writer")
        return self.conn

    def drop_if_broken(self) -> None:
        if self.conn is not None and self.conn.broken:
            self.conn = None  # reconnect at the next batch

    def close(self) -> None:
        self.commits.close()
        with self.lock:
            if self.conn is not None:
                self.conn.close()


__all__ = ["PostgresDecisionLog", "connect"]
