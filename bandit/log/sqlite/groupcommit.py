"""Group commit: jobs queue up, one thread commits them all in one transaction, and only
then are their submitters answered.

Every write of the SQLite log (a decision, an outcome, an activation, closing windows) is a
*job*, a function of the writing connection. The first waiting submitter to find no leader
commits every queued job (up to ``max_batch``), each inside its own savepoint
(:func:`run_jobs`: a job that fails leaves nothing behind), with one commit — one fsync
with ``synchronous=FULL`` — and hands the leadership on. Concurrent Choose calls therefore
share one fsync, and an answered call is durable. Jobs nobody waits for (submitted with
``notify``) are committed by the engine's writer thread.

:class:`GroupCommit` knows nothing of the schema: the log gives it the function that runs
a batch on its connection.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from bandit.errors import NotReady

log = logging.getLogger(__name__)

Job = Callable[[sqlite3.Connection], Any]
"""One write: a function of the writing connection; its return value is the job's value."""


class Pending:
    """A queued job and its outcome (fields guarded by the engine's mutex).

    ``gate`` is a lock that a waiting submitter sleeps on until its job is committed or it is
    handed the leadership: the cheapest wake-up CPython has, one per job.

    A job submitted with ``notify`` has no thread waiting for it (an asyncio handler, say):
    the log's writer thread commits it, and ``notify`` is called once per committed batch with
    the batch's jobs that named it. ``token`` is the submitter's (its future, for example).
    """

    __slots__ = (
        "done",
        "error",
        "fast",
        "gate",
        "handed",
        "job",
        "notify",
        "single_write",
        "token",
        "value",
        "waiting",
    )

    def __init__(
        self,
        job: Callable[[sqlite3.Connection], Any],
        single_write: bool,
        notify: Notify | None = None,
        token: Any = None,
    ) -> None:
        self.job = job
        self.single_write = single_write
        self.notify = notify
        self.token = token
        self.fast: tuple[str, tuple[Any, ...]] | None = None
        """What the log's batch runner may write for this job in one statement with others
        (the SQLite log's new decisions: their catalogue JSON and row); ``None``: run the job."""
        self.done = False
        self.waiting = False
        self.handed = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.gate = threading.Lock()
        self.gate.acquire()

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


Notify = Callable[[list[Pending]], None]
"""Called on the writer's thread with committed jobs; must be quick and must not block."""


class GroupCommit:
    """The queue, the leadership and the writer thread of one log's writes.

    ``run_batch(batch)`` commits a batch (every item's ``value`` or ``error`` set) and is
    called while holding ``commit_lock``, which the log shares with whatever else must not
    run during a commit (its WAL checkpoints).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Pending]], None],
        commit_lock: threading.Lock,
        max_batch: int = 512,
    ) -> None:
        self._run_batch = run_batch
        self.commit_lock = commit_lock
        self._max_batch = max_batch
        self._pending: list[Pending] = []
        self._leading = False  # a submitter is committing batches (guarded by _mutex)
        self._n_waiting = 0  # queued jobs whose submitter sleeps on its gate (guarded by _mutex)
        self._mutex = threading.Lock()
        self._closed = threading.Event()
        # Jobs submitted with ``notify`` have no waiting thread to lead their commit: this
        # thread does, whenever such jobs are queued and nobody leads.
        self._wake = threading.Event()
        self.commits_in_place = 0
        """Batches committed through :meth:`commit_queued` (for tests and diagnostics)."""
        self._writer = threading.Thread(target=self._writer_loop, name="log-writer", daemon=True)
        self._writer.start()

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

        ``single_write``: the job changes the database with at most one statement that can
        fail (others only read, or are idempotent), so it needs no savepoint of its own.

        ``notify``: nobody will wait; the writer thread commits the job and calls
        ``notify([job, ...])`` once it is durable (see :class:`Pending`).

        ``wake=False``: do not wake the writer thread; the submitter means to call
        :meth:`commit_queued` itself right away.
        """
        return self.enqueue(Pending(job, single_write, notify, token), wake)

    def enqueue(self, item: Pending, wake: bool = True) -> Pending:
        if self._closed.is_set():
            raise NotReady("the decision log is closed")
        with self._mutex:
            self._pending.append(item)
            wake = wake and item.notify is not None and not self._leading
        if wake:
            self._wake.set()
        return item

    def wake_writer(self) -> None:
        """Have the writer thread commit what is queued (jobs queued with ``wake=False``)."""
        self._wake.set()

    def commit_queued(self) -> bool:
        """Commit the queued jobs on the calling thread now, unless a commit is under way.

        For a server with one request in flight: committing where the request runs saves two
        thread hand-offs. Returns False when another thread leads; that leader (or the writer
        thread it wakes) commits what is queued, and ``notify`` reports it as usual.
        """
        led = self._lead_if_free()
        if led:
            self.commits_in_place += 1
        return led

    def _lead_if_free(self) -> bool:
        """Lead one batch here if jobs are queued and nobody leads."""
        with self._mutex:
            if self._leading or not self._pending:
                return False
            self._leading = True
        self._lead()
        return True

    def wait(self, item: Pending) -> Any:
        """Group commit with leader hand-off.

        A waiter that finds no leader becomes one: it commits the queued jobs (up to
        ``max_batch``) in one transaction, wakes their waiting submitters, and hands the
        leadership to the oldest queued job whose submitter is waiting (or steps down).
        Everyone else sleeps on its own gate. No thread hand-off at low load; one fsync for
        many jobs at high load (SQLite releases the GIL while it writes); no lock convoy, and
        no leader stuck serving others forever.
        """
        while True:
            with self._mutex:
                if item.done:
                    break
                lead = not self._leading
                if lead:
                    self._leading = True
                else:
                    item.waiting = True
                    self._n_waiting += 1
            if not lead:
                item.gate.acquire()
                with self._mutex:
                    lead, item.handed = item.handed, False
            if lead:
                self._lead()
        return item.result()

    def _lead(self) -> None:
        """Commit one batch as the leader, then hand the leadership on or step down."""
        with self.commit_lock:
            with self._mutex:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
            self._run_batch(batch)
        notified: list[Pending] = []
        with self._mutex:
            for it in batch:
                it.done = True
                if it.notify is not None:
                    notified.append(it)
                if it.waiting:
                    it.waiting = False
                    self._n_waiting -= 1
                    it.gate.release()
            nxt = None
            if self._n_waiting:
                nxt = next((it for it in self._pending if it.waiting), None)
            if nxt is None:
                self._leading = False
                wake = bool(self._pending)  # only jobs nobody waits for: the writer leads
            else:
                wake = False
                nxt.waiting = False
                self._n_waiting -= 1
                nxt.handed = True
                nxt.gate.release()
        if wake:
            self._wake.set()
        if notified:
            notify_all(notified)

    def _writer_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._lead_if_free():
                pass
            if self._closed.is_set():
                return

    def run(self, job: Job) -> Any:
        """Run ``job`` and wait until it is durable."""
        return self.wait(self.submit(job))

    def close(self) -> None:
        """Commit every queued job and stop the writer thread (jobs submitted later are
        refused with :class:`~bandit.errors.NotReady`)."""
        if self._closed.is_set():
            return
        self._closed.set()
        while True:
            with self._mutex:
                if not self._pending and not self._leading:
                    self._leading = True  # nobody leads again
                    break
                lead = not self._leading
                if lead:
                    self._leading = True
            if lead:
                self._lead()
            else:
                time.sleep(0.001)  # a leader is finishing a batch
        self._wake.set()
        self._writer.join()


def run_jobs(
    conn: sqlite3.Connection,
    batch: list[Pending],
    rolled_back: Callable[[], None] | None = None,
) -> sqlite3.Error | None:
    """Run ``batch`` in one transaction, each job in its own savepoint (a job that fails
    leaves nothing behind and gets its exception as its ``error``; ``rolled_back()`` is then
    called, before the next job runs), and commit; returns the error when the transaction
    could not be committed (nothing of it was written, and every item's ``error`` is then
    left for the caller to set)."""
    results: list[tuple[bool, Any]] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for item in batch:
            job = item.job
            if item.single_write:
                # One write statement: SQLite undoes a failed statement by itself, so no
                # savepoint (two fewer round trips through the GIL per decision).
                try:
                    results.append((True, job(conn)))
                except BaseException as exc:
                    results.append((False, exc))
                continue
            conn.execute("SAVEPOINT job")
            try:
                value = job(conn)
            except BaseException as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((False, exc))
                if rolled_back is not None:
                    rolled_back()
            else:
                conn.execute("RELEASE job")
                results.append((True, value))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        return exc
    for (ok, value), item in zip(results, batch, strict=True):
        if ok:
            item.value = value
        else:
            item.error = value
    return None


def notify_all(items: list[Pending]) -> None:
    """Call each distinct ``notify`` once with its jobs (one wake-up per batch, not per job)."""
    groups: dict[int, list[Pending]] = {}
    for it in items:
        groups.setdefault(id(it.notify), []).append(it)
    for group in groups.values():
        notify = group[0].notify
        assert notify is not None
        try:
            notify(group)
        except Exception:
            log.exception("a commit notification failed")


__all__ = ["GroupCommit", "Job", "Notify", "Pending", "notify_all", "run_jobs"]
