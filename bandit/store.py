"""The decision log: SQLite in WAL mode, one writer thread, group commit.

Every write (a decision, an outcome, an activation, closing windows) is a *job* run by the
single writer thread. The writer takes every job waiting, runs each inside its own
savepoint (a job that fails leaves nothing behind), commits once with
``synchronous=FULL``, and only then answers the callers. Concurrent Choose calls therefore
share one fsync, and an answered call is durable.

Reads use one connection per reading thread (WAL readers never block the writer).

Log positions: ``seq`` orders decisions as they were logged; ``closed_seq`` orders them as
their attribution windows closed, which is the order the learner learns them in. A
checkpoint stores the last ``closed_seq`` it has learned.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from bandit.errors import (
    Conflict,
    InvalidRequest,
    InvalidState,
    NotReady,
    StorageError,
    UnknownEvent,
)
from bandit.logcodec import SCHEMA_VERSION, decode_record, encode_record
from bandit.rewards import RewardRule
from bandit.types import Decision, RewardMode, TreatmentRef

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    request_id TEXT UNIQUE,
    request_hash TEXT,
    customer_id TEXT NOT NULL,
    decided_at REAL NOT NULL,
    deferred INTEGER NOT NULL,
    activated_at REAL,
    window_closes_at REAL,
    chosen_offer TEXT NOT NULL,
    chosen_channel TEXT NOT NULL,
    is_control INTEGER NOT NULL,
    propensity REAL NOT NULL,
    fixed_cost REAL NOT NULL,
    discount_rate REAL NOT NULL,
    contact_cost REAL NOT NULL,
    model_version TEXT NOT NULL,
    policy TEXT NOT NULL,
    record TEXT NOT NULL,
    n_outcomes INTEGER NOT NULL DEFAULT 0,
    revenue REAL NOT NULL DEFAULT 0,
    closed_seq INTEGER UNIQUE,
    closed_at REAL,
    reward REAL
);
CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, activated_at);
CREATE INDEX IF NOT EXISTS decisions_open ON decisions (window_closes_at)
    WHERE closed_seq IS NULL AND window_closes_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS decisions_closed_at ON decisions (closed_at);
CREATE TABLE IF NOT EXISTS outcomes (
    outcome_id TEXT PRIMARY KEY,
    event_id TEXT,
    customer_id TEXT,
    type TEXT NOT NULL,
    revenue REAL NOT NULL,
    occurred_at REAL NOT NULL,
    received_at REAL NOT NULL,
    status TEXT NOT NULL,
    payload_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_event ON outcomes (event_id);
"""


class OutcomeStatus(StrEnum):
    ATTRIBUTED = "attributed"
    UNATTRIBUTED = "unattributed"
    LATE = "late"
    DUPLICATE = "duplicate"


class DecisionState(StrEnum):
    PENDING_ACTIVATION = "pending_activation"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A logged decision with its attribution and learning state."""

    decision: Decision
    seq: int
    activated_at: float | None
    window_closes_at: float | None
    closed_seq: int | None
    reward: float | None
    n_outcomes: int
    revenue: float

    @property
    def state(self) -> DecisionState:
        if self.closed_seq is not None:
            return DecisionState.CLOSED
        if self.activated_at is None:
            return DecisionState.PENDING_ACTIVATION
        return DecisionState.OPEN


@dataclass(frozen=True, slots=True)
class OutcomeInput:
    """An outcome as reported, in domain terms. ``occurred_at`` None means now."""

    outcome_id: str
    event_id: str
    customer_id: str
    type: str
    revenue: float
    occurred_at: float | None

    def payload_hash(self) -> str:
        raw = "\x1f".join(
            [
                self.event_id,
                self.customer_id,
                self.type,
                repr(float(self.revenue)),
                "" if self.occurred_at is None else repr(float(self.occurred_at)),
            ]
        )
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    outcome_id: str
    status: OutcomeStatus
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class ClosedDecision:
    """What the learner needs: the decision as logged and its final reward."""

    closed_seq: int
    decision: Decision
    reward: float


@dataclass(frozen=True, slots=True)
class LogStats:
    decisions: int
    activations: int
    pending_activation: int
    outcomes: dict[str, int]
    attributed_revenue: float
    pending_windows: int
    closed: int
    recent: list[tuple[TreatmentRef, int, float]]
    """(treatment, closed decisions, mean reward) over the recent period, best first."""


class AttributionRule(Protocol):
    """Finds the decision a customer-only outcome belongs to (a replaceable strategy)."""

    def find(self, conn: sqlite3.Connection, customer_id: str, occurred_at: float) -> int | None:
        """The ``seq`` of the decision to attribute to, or ``None``."""


class LastTouch:
    """The customer's most recent *activated* decision whose window is open at ``occurred_at``.

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


@dataclass(frozen=True, slots=True)
class Windows:
    """Attribution windows in seconds, per channel id, with a default (also used for control)."""

    default: float = 7 * 24 * 3600.0
    per_channel: tuple[tuple[str, float], ...] = ()

    def for_channel(self, channel_id: str) -> float:
        for cid, seconds in self.per_channel:
            if cid == channel_id:
                return seconds
        return self.default


_Job = Callable[[sqlite3.Connection], Any]


class DecisionLog:
    """The SQLite decision log. One instance per process owns the writer thread."""

    def __init__(
        self,
        path: Path,
        *,
        windows: Windows | None = None,
        reward_rule: RewardRule | None = None,
        attribution: AttributionRule | None = None,
        max_batch: int = 512,
        durable: bool = True,
    ) -> None:
        self.path = path
        self._synchronous = "FULL" if durable else "OFF"
        self.windows = windows or Windows()
        self.reward_rule = reward_rule or RewardRule()
        self.attribution: AttributionRule = attribution or LastTouch()
        self._max_batch = max_batch
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._queue: queue.SimpleQueue[tuple[_Job, Future[Any]] | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._conn = self._connect()
        self._migrate()
        self._writer = threading.Thread(target=self._write_loop, name="log-writer", daemon=True)
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

    def _migrate(self) -> None:
        conn = self._conn
        try:
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            if has_meta:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                found = int(row[0]) if row else 0
                if found != SCHEMA_VERSION:
                    raise StorageError(
                        f"the decision log at {self.path} has schema version {found}; this "
                        f"offerbandit reads version {SCHEMA_VERSION} and has no migration from "
                        f"it. Export it with the offerbandit version that wrote it."
                    )
                return
            conn.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot initialise the decision log at {self.path}: {exc}") from exc

    # ---- the writer ----------------------------------------------------------------------

    def submit(self, job: _Job) -> Future[Any]:
        """Queue ``job`` for the writer; its future resolves once its batch is committed."""
        if self._closed.is_set():
            raise NotReady("the decision log is closed")
        fut: Future[Any] = Future()
        self._queue.put((job, fut))
        return fut

    def run(self, job: _Job) -> Any:
        """Run ``job`` in the writer and wait until it is durable."""
        return self.submit(job).result()

    def _write_loop(self) -> None:
        conn = self._conn
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._run_batch(conn, batch)
            if stop:
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[tuple[_Job, Future[Any]]]) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, _ in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = job(conn)
                except BaseException as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((False, exc))
                else:
                    conn.execute("RELEASE job")
                    results.append((True, value))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("decision log commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = StorageError(f"the decision log could not be written: {exc}")
            for _, fut in batch:
                fut.set_exception(err)
            return
        for (ok, value), (_, fut) in zip(results, batch, strict=True):
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def close(self) -> None:
        """Flush every queued write and stop the writer."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(None)
        self._writer.join()
        self._conn.close()

    # ---- decisions -----------------------------------------------------------------------

    def append(self, decision: Decision, request_hash: str = "") -> StoredDecision | None:
        """Log ``decision`` durably.

        With a request id already logged, nothing is written and the earlier decision is
        returned (or :class:`Conflict` raised when its request differed); otherwise ``None``.
        """
        found: StoredDecision | None = self.run(self.append_job(decision, request_hash))
        return found

    def append_job(self, decision: Decision, request_hash: str) -> _Job:
        record = encode_record(decision)
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
            decision.propensity,
            chosen.offer.fixed_cost if chosen.offer else 0.0,
            chosen.offer.discount_rate if chosen.offer else 0.0,
            chosen.channel.contact_cost if chosen.channel else 0.0,
            decision.model_version,
            decision.policy,
            record,
        )
        request_id = decision.request_id

        def job(conn: sqlite3.Connection) -> StoredDecision | None:
            if request_id:
                existing = self._by_request_id(conn, request_id, request_hash)
                if existing is not None:
                    return existing
            conn.execute(
                "INSERT INTO decisions (event_id, request_id, request_hash, customer_id,"
                " decided_at, deferred, activated_at, window_closes_at, chosen_offer,"
                " chosen_channel, is_control, propensity, fixed_cost, discount_rate,"
                " contact_cost, model_version, policy, record)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            return None

        return job

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
                f"{request_id!r} was used before for a different request; "
                "a retry must resend the same request",
            )
        return _stored(row)

    def find_request(self, request_id: str, request_hash: str) -> StoredDecision | None:
        """The decision logged for ``request_id`` (read side, no write)."""
        return self._by_request_id(self._reader(), request_id, request_hash)

    def get(self, event_id: str) -> StoredDecision:
        row = (
            self._reader()
            .execute(f"SELECT {_COLUMNS} FROM decisions WHERE event_id = ?", (event_id,))
            .fetchone()
        )
        if row is None:
            raise UnknownEvent(event_id)
        return _stored(row)

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
                raise InvalidState("event_id", f"decision {event_id!r} was not deferred")
            if activated_at is not None:
                raise InvalidState("event_id", f"decision {event_id!r} is already activated")
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

    def outcome_job(self, outcome: OutcomeInput, now: float, max_future_skew: float) -> _Job:
        """A writer job that validates, deduplicates, attributes and stores one outcome."""

        def job(conn: sqlite3.Connection) -> OutcomeResult:
            return self._record_outcome(conn, outcome, now, max_future_skew)

        return job

    def _record_outcome(
        self, conn: sqlite3.Connection, o: OutcomeInput, now: float, max_future_skew: float
    ) -> OutcomeResult:
        payload = o.payload_hash()
        prev = conn.execute(
            "SELECT payload_hash, event_id FROM outcomes WHERE outcome_id = ?", (o.outcome_id,)
        ).fetchone()
        if prev is not None:
            if prev[0] != payload:
                raise Conflict(
                    "outcome_id",
                    f"{o.outcome_id!r} was recorded before with a different payload",
                )
            return OutcomeResult(o.outcome_id, OutcomeStatus.DUPLICATE, prev[1] or "")
        occurred = now if o.occurred_at is None else o.occurred_at
        if occurred > now + max_future_skew:
            raise InvalidRequest(
                "occurred_at",
                f"is {occurred - now:.0f} s in the future (allowed skew {max_future_skew:.0f} s)",
            )
        status = OutcomeStatus.UNATTRIBUTED
        seq: int | None = None
        if o.event_id:
            row = conn.execute(
                "SELECT seq, decided_at FROM decisions WHERE event_id = ?", (o.event_id,)
            ).fetchone()
            if row is None:
                raise UnknownEvent(o.event_id)
            if occurred < row[1]:
                raise InvalidRequest("occurred_at", "is before the decision it names was made")
            seq = int(row[0])
        elif o.customer_id:
            seq = self.attribution.find(conn, o.customer_id, occurred)
        event_id = ""
        if seq is not None:
            event_id, activated_at, closes, closed_seq, customer_id = conn.execute(
                "SELECT event_id, activated_at, window_closes_at, closed_seq, customer_id"
                " FROM decisions WHERE seq = ?",
                (seq,),
            ).fetchone()
            if o.customer_id and o.customer_id != customer_id:
                raise InvalidRequest(
                    "customer_id", f"does not match the customer of decision {event_id!r}"
                )
            if activated_at is None or occurred < activated_at:
                status = OutcomeStatus.UNATTRIBUTED  # never shown (yet): not its effect
            elif closed_seq is not None or occurred >= closes:
                status = OutcomeStatus.LATE
            else:
                status = OutcomeStatus.ATTRIBUTED
                conn.execute(
                    "UPDATE decisions SET n_outcomes = n_outcomes + 1, revenue = revenue + ?"
                    " WHERE seq = ?",
                    (o.revenue, seq),
                )
                if self.reward_rule.mode is RewardMode.FIRST_OUTCOME:
                    self._close(conn, [seq], now)
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
        (last,) = conn.execute("SELECT COALESCE(MAX(closed_seq), 0) FROM decisions").fetchone()
        rule = self.reward_rule
        for seq in seqs:
            revenue, n, is_control, fixed, rate, contact = conn.execute(
                "SELECT revenue, n_outcomes, is_control, fixed_cost, discount_rate, contact_cost"
                " FROM decisions WHERE seq = ?",
                (seq,),
            ).fetchone()
            reward = rule.reward(
                revenue=revenue,
                n_outcomes=n,
                is_control=bool(is_control),
                fixed_cost=fixed,
                discount_rate=rate,
                contact_cost=contact,
            )
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
        rows = (
            self._reader()
            .execute(
                "SELECT closed_seq, record, reward FROM decisions WHERE closed_seq > ?"
                " ORDER BY closed_seq LIMIT ?",
                (position, limit),
            )
            .fetchall()
        )
        return [ClosedDecision(int(r[0]), decode_record(r[1]), float(r[2])) for r in rows]

    def last_closed(self) -> int:
        row = self._reader().execute("SELECT COALESCE(MAX(closed_seq), 0) FROM decisions")
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
        return LogStats(
            decisions=int(decisions),
            activations=int(activations),
            pending_activation=int(pending_act or 0),
            outcomes=outcomes,
            attributed_revenue=float(revenue),
            pending_windows=int(open_windows or 0),
            closed=int(closed),
            recent=recent,
        )


_COLUMNS = "record, seq, activated_at, window_closes_at, closed_seq, reward, n_outcomes, revenue"


def _stored(row: Sequence[Any]) -> StoredDecision:
    return StoredDecision(
        decision=decode_record(row[0]),
        seq=int(row[1]),
        activated_at=row[2],
        window_closes_at=row[3],
        closed_seq=row[4],
        reward=row[5],
        n_outcomes=int(row[6]),
        revenue=float(row[7]),
    )
