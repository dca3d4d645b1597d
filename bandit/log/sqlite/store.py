"""The decision log on SQLite: WAL mode, one writing connection, group commit.

Every write (a decision, an outcome, an activation, closing windows) is a *job*. Jobs queue
up; the first waiting caller to take the commit lock runs every queued job, each inside its
own savepoint (a job that fails leaves nothing behind), commits once with
``synchronous=FULL``, and only then are the callers answered. Concurrent Choose calls
therefore share one fsync, and an answered call is durable.

Reads use one connection per reading thread (WAL readers never block the writer).

Log positions: ``seq`` orders decisions as they were logged; ``closed_seq`` orders them as
their attribution windows closed, which is the order the learner learns them in. A
checkpoint stores the last ``closed_seq`` it has learned.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bandit.errors import (
    Conflict,
    InvalidRequest,
    InvalidState,
    NotReady,
    StorageError,
    UnknownEvent,
    quote,
)
from bandit.log.sqlite.schema import SCHEMA, add_void_columns, migrate_from_1, schema_version_of
from bandit.logcodec import (
    PMF_IN_HEAD_SCHEMA,
    SCHEMA_VERSION,
    catalogue_digest,
    catalogue_json,
    decode_catalogue,
    decode_head,
    encode_head,
    pack_pmf,
)
from bandit.outcomes import (
    Costs,
    DecisionWindow,
    PriorOutcome,
    attribution_status,
    check_named_decision,
    closes_at_outcome,
    closing_reward,
    duplicate_of,
    outcome_time,
    recomputed_reward,
)
from bandit.ratelog import RateLimitedLog
from bandit.records import (
    ClosedDecision,
    Incremental,
    LogStats,
    OutcomeInput,
    OutcomeResult,
    OutcomeStatus,
    StoredDecision,
    Windows,
)
from bandit.rewards import RewardRule
from bandit.types import Decision, Treatment, TreatmentRef

log = logging.getLogger(__name__)
_rate_log = RateLimitedLog(log, interval=10.0)

_WAL_SIZE_LIMIT = 16 * 1024 * 1024
"""Bytes the WAL file is truncated to when it restarts."""


class AttributionRule(Protocol):
    """Finds the decision a customer-only outcome belongs to (a replaceable strategy)."""

    def find(self, conn: sqlite3.Connection, customer_id: str, occurred_at: float) -> int | None:
        """The ``seq`` of the decision to attribute to, or ``None``."""


class LastTouch:
    """:func:`bandit.outcomes.last_touch` in SQL: the customer's most recent *activated*
    decision whose window is open at ``occurred_at``.

    "Open at occurred_at" means ``activated_at <= occurred_at < window_closes_at``. Control
    decisions count too: an outcome after a control decision is control's revenue, which is
    what makes incremental revenue measurable. Ties on ``activated_at`` go to the later log
    position.
    """

    def find(self, conn: sqlite3.Connection, customer_id: str, occurred_at: float) -> int | None:
        row = conn.execute(
            "SELECT seq FROM decisions WHERE customer_id = ? AND activated_at IS NOT NULL"
            " AND activated_at <= ? AND window_closes_at > ?"
            " ORDER BY activated_at DESC, seq DESC LIMIT 1",
            (customer_id, occurred_at, occurred_at),
        ).fetchone()
        return None if row is None else int(row[0])


_Job = Callable[[sqlite3.Connection], Any]


class Pending:
    """A queued job and its outcome (fields guarded by the log's mutex).

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
        """A decision insert as (catalogue JSON, row): batched into one statement."""
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
        self._max_batch = max_batch
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._pending: list[Pending] = []
        self._leading = False  # a submitter is committing batches (guarded by _mutex)
        self._n_waiting = 0  # queued jobs whose submitter sleeps on its gate (guarded by _mutex)
        self._catalogue_ids: dict[str, int] = {}  # writer side, catalogue JSON → id
        self._uncommitted_catalogue = False
        self._catalogues: dict[int, tuple[Treatment, ...]] = {}  # read side, id → candidates
        self._mutex = threading.Lock()
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
        # Jobs submitted with ``notify`` have no waiting thread to lead their commit: this
        # thread does, whenever such jobs are queued and nobody leads.
        self._wake = threading.Event()
        self.commits_in_place = 0
        """Batches committed through :meth:`commit_queued` (for tests and diagnostics)."""
        self._writer = threading.Thread(target=self._writer_loop, name="log-writer", daemon=True)
        self._writer.start()

    # ---- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
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
                return
            conn.executescript("BEGIN;" + SCHEMA + "COMMIT;")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot initialise the decision log at {self.path}: {exc}") from exc

    # ---- the writer ----------------------------------------------------------------------

    def submit(
        self,
        job: _Job,
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
        return self._enqueue(Pending(job, single_write, notify, token), wake)

    def _enqueue(self, item: Pending, wake: bool = True) -> Pending:
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
        with self._commit_lock:
            with self._mutex:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
            self._run_batch(self._conn, batch)
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
            _notify_all(notified)

    def _writer_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._lead_if_free():
                pass
            if self._closed.is_set():
                return

    def run(self, job: _Job) -> Any:
        """Run ``job`` and wait until it is durable."""
        return self.wait(self.submit(job))

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Pending]) -> None:
        ids = self._catalogue_ids
        if all(it.fast is not None and it.fast[0] in ids for it in batch):
            # Only new decisions with known catalogues: one INSERT per 64 rows, and for up to
            # 64 rows that statement is its own transaction. The writer then takes the GIL
            # back once per commit instead of once per statement, which matters while the
            # request thread keeps the GIL busy.
            chunks = [batch[i : i + _FAST_MAX] for i in range(0, len(batch), _FAST_MAX)]
            try:
                if len(chunks) > 1:
                    conn.execute("BEGIN IMMEDIATE")
                for chunk in chunks:
                    params: list[Any] = []
                    for it in chunk:
                        catalogue, row = it.fast  # type: ignore[misc]
                        params += row
                        params.append(ids[catalogue])
                    conn.execute(_insert_decisions_sql(len(chunk)), params)
                if len(chunks) > 1:
                    conn.execute("COMMIT")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                log.debug("batched insert failed; running the jobs one by one", exc_info=True)
            else:
                for it in batch:
                    it.value = None
                if not self.writable:
                    self._set_writable(True)
                return
        self._run_jobs(conn, batch)

    def _run_jobs(self, conn: sqlite3.Connection, batch: list[Pending]) -> None:
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
                    if self._uncommitted_catalogue:
                        self._catalogue_ids.clear()  # its catalogue row may be gone too
                else:
                    conn.execute("RELEASE job")
                    results.append((True, value))
            conn.execute("COMMIT")
            self._uncommitted_catalogue = False
        except sqlite3.Error as exc:
            _rate_log.log(logging.ERROR, "commit", "decision log commit failed: %s", exc)
            self._set_writable(False)
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._catalogue_ids.clear()
            self._uncommitted_catalogue = False
            err = StorageError(f"the decision log could not be written: {exc}")
            for fut in batch:
                fut.error = err
            return
        if not self.writable:
            self._set_writable(True)
        for (ok, value), fut in zip(results, batch, strict=True):
            if ok:
                fut.value = value
            else:
                fut.error = value

    def close(self) -> None:
        """Flush every queued write and stop the writer."""
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
        self._checkpointer.join()
        with self._commit_lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.warning("final WAL checkpoint failed", exc_info=True)
            self._conn.close()

    # ---- decisions -----------------------------------------------------------------------

    def append(self, decision: Decision, request_hash: str = "") -> StoredDecision | None:
        """Log ``decision`` durably.

        With a request id already logged, nothing is written and the earlier decision is
        returned (or :class:`Conflict` raised when its request differed); otherwise ``None``.
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
        job, row, catalogue = self._decision_job(decision, request_hash)
        item = Pending(job, True, notify, token)
        if not decision.request_id:
            item.fast = (catalogue, row)
        return self._enqueue(item, wake)

    def append_job(self, decision: Decision, request_hash: str) -> _Job:
        return self._decision_job(decision, request_hash)[0]

    def _decision_job(
        self, decision: Decision, request_hash: str
    ) -> tuple[_Job, tuple[Any, ...], str]:
        """The insert job, its row (without the catalogue id) and the catalogue's JSON."""
        record = encode_head(decision)
        catalogue = catalogue_json(decision.treatments)
        chosen = decision.chosen_treatment
        deferred = decision.deferred
        activated_at = None if deferred else decision.decided_at
        window = None
        if activated_at is not None:
            cid = chosen.channel.id if chosen.channel is not None else ""
            window = activated_at + self.windows.for_channel(cid)
        row = (
            decision.event_id,
            decision.request_id or None,
            request_hash or None,
            decision.context.customer.id,
            decision.decided_at,
            int(deferred),
            activated_at,
            window,
            chosen.ref.offer_id,
            chosen.ref.channel_id,
            int(chosen.is_control),
            int(decision.holdout),
            decision.propensity,
            chosen.offer.fixed_cost if chosen.offer else 0.0,
            chosen.offer.discount_rate if chosen.offer else 0.0,
            chosen.channel.contact_cost if chosen.channel else 0.0,
            decision.model_version,
            decision.policy,
            record,
            pack_pmf(decision.pmf),
        )
        request_id = decision.request_id
        catalogue_ids = self._catalogue_ids

        def job(conn: sqlite3.Connection) -> StoredDecision | None:
            if request_id:
                existing = self._by_request_id(conn, request_id, request_hash)
                if existing is not None:
                    return existing
            cid = catalogue_ids.get(catalogue)
            if cid is None:
                # Content-addressed: a catalogue row written here stays valid even if the
                # decision insert below fails, so the job needs no savepoint.
                digest = catalogue_digest(catalogue)
                found = conn.execute(
                    "SELECT id FROM catalogues WHERE digest = ?", (digest,)
                ).fetchone()
                if found is None:
                    cur = conn.execute(
                        "INSERT INTO catalogues (digest, body) VALUES (?, ?)", (digest, catalogue)
                    )
                    cid = int(cur.lastrowid or 0)
                    self._uncommitted_catalogue = True
                else:
                    cid = int(found[0])
                if len(catalogue_ids) >= _CATALOGUE_IDS:
                    catalogue_ids.clear()
                catalogue_ids[catalogue] = cid
            conn.execute(_insert_decisions_sql(1), (*row, cid))
            return None

        return job, row, catalogue

    def _by_request_id(
        self, conn: sqlite3.Connection, request_id: str, request_hash: str
    ) -> StoredDecision | None:
        row = conn.execute(
            f"SELECT {_COLUMNS}, request_hash FROM decisions WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            return None
        if request_hash and row[-1] and row[-1] != request_hash:
            raise Conflict(
                "request_id",
                f"{quote(request_id)} was used before for a different request; "
                "a retry must resend the same request",
            )
        return _stored(row, self._catalogue(conn, row[8]))

    def find_request(self, request_id: str, request_hash: str) -> StoredDecision | None:
        """The decision logged for ``request_id`` (read side, no write)."""
        return self._by_request_id(self._reader(), request_id, request_hash)

    def get(self, event_id: str) -> StoredDecision:
        conn = self._reader()
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM decisions WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            raise UnknownEvent(event_id)
        return _stored(row, self._catalogue(conn, row[8]))

    def count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    # ---- activation ----------------------------------------------------------------------

    def activate(self, event_id: str, at: float) -> float:
        """Start a deferred decision's window at ``at``; returns when the window closes."""

        def job(conn: sqlite3.Connection) -> float:
            row = conn.execute(
                "SELECT deferred, activated_at, decided_at, chosen_channel, is_control"
                " FROM decisions"
                " WHERE event_id = ?",
                (event_id,),
            ).fetchone()
            if row is None:
                raise UnknownEvent(event_id)
            deferred, activated_at, decided_at, channel_id, is_control = row
            if not deferred:
                raise InvalidState("event_id", f"decision {quote(event_id)} was not deferred")
            if activated_at is not None:
                raise InvalidState("event_id", f"decision {quote(event_id)} is already activated")
            if at < decided_at:
                raise InvalidRequest("activated_at", "is before the decision was made")
            closes = at + self.windows.for_channel("" if is_control else channel_id)
            conn.execute(
                "UPDATE decisions SET activated_at = ?, window_closes_at = ? WHERE event_id = ?",
                (at, closes, event_id),
            )
            return closes

        return float(self.run(job))

    # ---- outcomes ------------------------------------------------------------------------

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

    def outcome_job(self, outcome: OutcomeInput, now: float, max_future_skew: float) -> _Job:
        """A writer job that validates, deduplicates, attributes and stores one outcome."""

        def job(conn: sqlite3.Connection) -> OutcomeResult:
            return self._record_outcome(conn, outcome, now, max_future_skew)

        return job

    def _record_outcome(
        self, conn: sqlite3.Connection, o: OutcomeInput, now: float, max_future_skew: float
    ) -> OutcomeResult:
        """Read what the outcome concerns, apply the rules (:mod:`bandit.outcomes`), write."""
        payload = o.payload_hash()
        prev = conn.execute(
            "SELECT payload_hash, event_id FROM outcomes WHERE outcome_id = ?", (o.outcome_id,)
        ).fetchone()
        prior = None if prev is None else PriorOutcome(prev[0], prev[1] or "")
        duplicate = duplicate_of(o, payload, prior)
        if duplicate is not None:
            return duplicate
        occurred = outcome_time(o, now, max_future_skew)
        status = OutcomeStatus.UNATTRIBUTED
        target: DecisionWindow | None = None
        if o.event_id:
            row = conn.execute(_DECISION_FOR_OUTCOME + "event_id = ?", (o.event_id,)).fetchone()
            target = None if row is None else _window(row)
            check_named_decision(o.event_id, target, occurred)
        elif o.customer_id:
            seq = self.attribution.find(conn, o.customer_id, occurred)
            if seq is not None:
                row = conn.execute(_DECISION_FOR_OUTCOME + "seq = ?", (seq,)).fetchone()
                target = None if row is None else _window(row)
        event_id = ""
        if target is not None:
            event_id = target.event_id
            status = attribution_status(target, o.customer_id, occurred)
            if status is OutcomeStatus.ATTRIBUTED:
                conn.execute(
                    "UPDATE decisions SET n_outcomes = n_outcomes + 1, revenue = revenue + ?"
                    " WHERE seq = ?",
                    (o.revenue, target.seq),
                )
                if closes_at_outcome(self.reward_rule, status):
                    self._close(conn, [target.seq], now)
        conn.execute(
            "INSERT INTO outcomes (outcome_id, event_id, customer_id, type, revenue, occurred_at,"
            " received_at, status, payload_hash) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                o.outcome_id,
                event_id or o.event_id or None,
                o.customer_id or None,
                o.type,
                o.revenue,
                occurred,
                now,
                status.value,
                payload,
            ),
        )
        return OutcomeResult(o.outcome_id, status, event_id)

    # ---- closing windows -----------------------------------------------------------------

    def close_due(self, now: float, limit: int = 5000) -> int:
        """Close every open window that has ended by ``now``; returns how many closed."""

        def job(conn: sqlite3.Connection) -> int:
            seqs = [
                int(r[0])
                for r in conn.execute(
                    "SELECT seq FROM decisions WHERE closed_seq IS NULL AND window_closes_at"
                    " IS NOT NULL AND window_closes_at <= ? ORDER BY window_closes_at, seq"
                    " LIMIT ?",
                    (now, limit),
                )
            ]
            self._close(conn, seqs, now)
            return len(seqs)

        return int(self.run(job))

    def _close(self, conn: sqlite3.Connection, seqs: Iterable[int], now: float) -> None:
        (last,) = conn.execute(_LAST_CLOSED).fetchone()
        rule = self.reward_rule
        for seq in seqs:
            revenue, n, is_control, fixed, rate, contact = conn.execute(
                "SELECT revenue, n_outcomes, is_control, fixed_cost, discount_rate, contact_cost"
                " FROM decisions WHERE seq = ?",
                (seq,),
            ).fetchone()
            reward = closing_reward(rule, revenue, n, Costs(bool(is_control), fixed, rate, contact))
            last += 1
            conn.execute(
                "UPDATE decisions SET closed_seq = ?, closed_at = ?, reward = ? WHERE seq = ?",
                (last, now, reward, seq),
            )

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

    # ---- learning side -------------------------------------------------------------------

    def closed_after(self, position: int, limit: int) -> list[ClosedDecision]:
        """Closed decisions with ``closed_seq > position``, in learning order."""
        conn = self._reader()
        rows = conn.execute(
            "SELECT closed_seq, record, reward, catalogue_id, pmf, revenue, n_outcomes"
            " FROM decisions WHERE closed_seq > ? AND voided_at IS NULL"
            " ORDER BY closed_seq LIMIT ?",
            (position, limit),
        ).fetchall()
        return [
            ClosedDecision(
                int(r[0]),
                decode_head(r[1], self._catalogue(conn, r[3]), r[4]),
                float(r[2]),
                float(r[5]),
                int(r[6]),
            )
            for r in rows
        ]

    # ---- voiding (recovery from a bad learn) ------------------------------------------------

    def void_decisions(
        self,
        now: float,
        event_ids: Sequence[str] = (),
        decided_between: tuple[float, float] | None = None,
    ) -> int:
        """Flag decisions as void (by event id, and/or decided within a time range): they
        stay in the log, and the learner never learns them (:meth:`closed_after` skips
        them). Returns how many were newly voided."""

        def job(conn: sqlite3.Connection) -> int:
            n = 0
            for event_id in event_ids:
                n += conn.execute(
                    "UPDATE decisions SET voided_at = ? WHERE event_id = ? AND voided_at IS NULL",
                    (now, event_id),
                ).rowcount
            if decided_between is not None:
                n += conn.execute(
                    "UPDATE decisions SET voided_at = ? WHERE decided_at >= ? AND decided_at <= ?"
                    " AND voided_at IS NULL",
                    (now, *decided_between),
                ).rowcount
            return n

        return int(self.run(job))

    def void_outcomes(
        self,
        now: float,
        outcome_ids: Sequence[str] = (),
        received_between: tuple[float, float] | None = None,
    ) -> int:
        """Flag outcomes as void (by id, and/or received within a time range): they stay in
        the log, flagged, and no longer count for their decision. An attributed outcome's
        revenue leaves its decision's ``revenue`` and ``n_outcomes``, and a closed decision's
        reward is computed again from what remains, so a learner rolled back before it
        learns the corrected reward. Returns how many were newly voided."""

        def job(conn: sqlite3.Connection) -> int:
            rows: list[tuple[str, str | None, str, float]] = []
            select = "SELECT outcome_id, event_id, status, revenue FROM outcomes WHERE "
            for oid in outcome_ids:
                rows += conn.execute(
                    select + "outcome_id = ? AND voided_at IS NULL", (oid,)
                ).fetchall()
            if received_between is not None:
                rows += conn.execute(
                    select + "received_at >= ? AND received_at <= ? AND voided_at IS NULL",
                    received_between,
                ).fetchall()
            seen: set[str] = set()
            for oid, event_id, status, revenue in rows:
                if oid in seen:
                    continue
                seen.add(oid)
                conn.execute("UPDATE outcomes SET voided_at = ? WHERE outcome_id = ?", (now, oid))
                if status != OutcomeStatus.ATTRIBUTED.value or not event_id:
                    continue
                conn.execute(
                    "UPDATE decisions SET n_outcomes = MAX(n_outcomes - 1, 0),"
                    " revenue = MAX(revenue - ?, 0) WHERE event_id = ?",
                    (revenue, event_id),
                )
                self._recompute_reward(conn, event_id)
            return len(seen)

        return int(self.run(job))

    def _recompute_reward(self, conn: sqlite3.Connection, event_id: str) -> None:
        row = conn.execute(
            "SELECT revenue, n_outcomes, is_control, fixed_cost, discount_rate, contact_cost,"
            " closed_seq FROM decisions WHERE event_id = ?",
            (event_id,),
        ).fetchone()
        if row is None or row[6] is None:
            return
        revenue, n, is_control, fixed, rate, contact, _ = row
        reward, revenue = recomputed_reward(
            self.reward_rule, revenue, n, Costs(bool(is_control), fixed, rate, contact)
        )
        conn.execute(
            "UPDATE decisions SET reward = ?, revenue = ? WHERE event_id = ?",
            (reward, revenue, event_id),
        )

    def _catalogue(self, conn: sqlite3.Connection, cid: int) -> tuple[Treatment, ...]:
        """Candidates by catalogue id, decoded once: the same tuple object every time, so
        the identity caches of the VW text encoders hit when the learner replays them."""
        found = self._catalogues.get(cid)
        if found is None:
            row = conn.execute("SELECT body FROM catalogues WHERE id = ?", (cid,)).fetchone()
            if row is None:
                raise StorageError(f"decision log is missing catalogue {cid}")
            found = decode_catalogue(row[0])
            if len(self._catalogues) >= 4096:
                self._catalogues.clear()
            self._catalogues[cid] = found
        return found

    def last_closed(self) -> int:
        row = self._reader().execute(_LAST_CLOSED)
        return int(row.fetchone()[0])

    # ---- stats ---------------------------------------------------------------------------

    def stats(self, now: float, recent_seconds: float) -> LogStats:
        c = self._reader()
        decisions, activations, pending_act, open_windows, closed = c.execute(
            "SELECT COUNT(*), COUNT(activated_at),"
            " SUM(CASE WHEN deferred = 1 AND activated_at IS NULL THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN closed_seq IS NULL AND activated_at IS NOT NULL THEN 1 ELSE 0 END),"
            " COUNT(closed_seq) FROM decisions"
        ).fetchone()
        outcomes = {
            str(s): int(n)
            for s, n in c.execute("SELECT status, COUNT(*) FROM outcomes GROUP BY status")
        }
        (revenue,) = c.execute(
            "SELECT COALESCE(SUM(revenue), 0) FROM outcomes WHERE status = 'attributed'"
        ).fetchone()
        recent = [
            (TreatmentRef(str(o), str(h)), int(n), float(m))
            for o, h, n, m in c.execute(
                "SELECT chosen_offer, chosen_channel, COUNT(*), AVG(reward) FROM decisions"
                " WHERE closed_at >= ? GROUP BY chosen_offer, chosen_channel"
                " ORDER BY AVG(reward) DESC",
                (now - recent_seconds,),
            )
        ]
        n, s1, s2 = c.execute(
            "SELECT COUNT(*), COALESCE(SUM(psi), 0), COALESCE(SUM(psi * psi), 0) FROM ("
            " SELECT CASE WHEN is_control = 1 THEN reward - reward / propensity ELSE reward END"
            " AS psi FROM decisions WHERE closed_at >= ? AND holdout = 0"
            " AND closed_seq IS NOT NULL)",
            (now - recent_seconds,),
        ).fetchone()
        return LogStats(
            incremental=Incremental.from_sums(int(n), float(s1), float(s2)),
            decisions=int(decisions),
            activations=int(activations),
            pending_activation=int(pending_act or 0),
            outcomes=outcomes,
            attributed_revenue=float(revenue),
            pending_windows=int(open_windows or 0),
            closed=int(closed),
            recent=recent,
        )


# The last closed_seq, found by a descending walk of the partial index (O(log n)).
_LAST_CLOSED = (
    "SELECT COALESCE((SELECT closed_seq FROM decisions WHERE closed_seq IS NOT NULL"
    " ORDER BY closed_seq DESC LIMIT 1), 0)"
)

_DECISION_FOR_OUTCOME = (
    "SELECT seq, decided_at, event_id, activated_at, window_closes_at, closed_seq, customer_id"
    " FROM decisions WHERE "
)


def _window(row: Sequence[Any]) -> DecisionWindow:
    seq, decided, event_id, activated_at, closes, closed_seq, customer_id = row
    return DecisionWindow(seq, event_id, customer_id, decided, activated_at, closes, closed_seq)


_COLUMNS = (
    "record, seq, activated_at, window_closes_at, closed_seq, reward, n_outcomes, revenue,"
    " catalogue_id, pmf"
)


_CATALOGUE_IDS = 4096
"""Most catalogue ids the writer remembers (by the catalogue's JSON; cleared when full)."""

_FAST_MAX = 64
"""Most decisions one batched INSERT carries (one cached statement per row count)."""

_DECISION_COLUMNS = (
    "event_id, request_id, request_hash, customer_id, decided_at, deferred, activated_at,"
    " window_closes_at, chosen_offer, chosen_channel, is_control, holdout, propensity,"
    " fixed_cost, discount_rate, contact_cost, model_version, policy, record, pmf,"
    " catalogue_id"
)


@functools.cache
def _insert_decisions_sql(n: int) -> str:
    """``INSERT INTO decisions`` of ``n`` rows.

    >>> _insert_decisions_sql(2).count("(?,")
    2
    """
    one = "(" + ",".join("?" * (_DECISION_COLUMNS.count(",") + 1)) + ")"
    return f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES " + ",".join([one] * n)


def _notify_all(items: list[Pending]) -> None:
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


def _stored(row: Sequence[Any], treatments: tuple[Treatment, ...]) -> StoredDecision:
    return StoredDecision(
        decision=decode_head(row[0], treatments, row[9]),
        seq=int(row[1]),
        activated_at=row[2],
        window_closes_at=row[3],
        closed_seq=row[4],
        reward=row[5],
        n_outcomes=int(row[6]),
        revenue=float(row[7]),
    )
