"""Retention for the SQLite decision log: closed decisions and their outcomes older than
``retention_days`` are deleted in small background batches, optionally exported to Parquet
first, and the space is given back to the file system.

**What may go.** A decision decided before the cutoff whose window has closed and whose
``closed_seq`` the learner's *oldest kept checkpoint* has learned (a rollback to any kept
checkpoint can still learn again what came after it), or a deferred decision never
activated; with it go its outcomes. Outcomes attributed to no decision (``event_id`` NULL)
go once received before the cutoff. The newest decision and the one with the highest
``closed_seq`` always stay: the next decision's ``seq`` and the next closing's
``closed_seq`` are counted on from them, and a reused number would confuse the learner.

**What the contact policies need** (:class:`Bounds`, worked out by the service from the
live policy before each pass):

* caps and repeats read contacts over their window: an activated non-control decision is
  kept while its activation is within the longest window (``contacts_since``);
* per-day budgets count today's decisions: nothing decided since the earliest start of
  "today" in the budgets' time zones goes (folded into ``cutoff``);
* count budgets count an offer's decisions ever: the non-control decisions deleted are
  added per offer to ``retired_offer_counts``, which :func:`.contacts.offer_counts` adds
  back, so deleting rows never hands out coupons again;
* suppressions read negative outcomes (for good, with ``days = 0``): an outcome of a type
  the policy's suppressions list is copied, as (customer, type, time, channel) and nothing
  more, into ``kept_negatives`` before it is deleted; :func:`.contacts.customer_history`
  reads that table too.

**Not stalling Choose.** The scan reads on its own connection (WAL readers never block the
writer); each batch's deletion is one job of the log's group commit (it waits its turn like
any write and holds the writer for a few milliseconds), and the driver pauses between
batches so that retention takes at most ``duty`` of the writer's time.

**Space.** A log created by this version has ``auto_vacuum = INCREMENTAL``: after each batch
the freed pages are given back (``PRAGMA incremental_vacuum``, between two commits of the
writer: :func:`give_back`), and the file shrinks at the next WAL checkpoint.
An older log (``auto_vacuum = NONE``) reuses the freed pages for new rows, so it stops
growing, but does not shrink until converted once with :func:`convert_to_incremental`
(``offerbandit vacuum``; a full rewrite of the file, best with the server stopped).

**Export** (``export_dir``): before a batch is deleted its rows are written as two Parquet
files, ``decisions-<first seq>-<last seq>.parquet`` and ``outcomes-…`` (the log's columns as
they are, docs/offline-data.md), written to a temporary name, fsynced and renamed. A crash
between the export and the deletion exports that batch again on the next pass: exports are
at least once, keyed by ``seq`` and ``outcome_id``.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

DAY = 86_400.0

RETENTION_SCHEMA = """
CREATE TABLE IF NOT EXISTS retired_offer_counts (
    offer_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kept_negatives (
    customer_id TEXT NOT NULL,
    type TEXT NOT NULL,
    occurred_at REAL NOT NULL,
    channel_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kept_negatives_customer ON kept_negatives (customer_id, type);
"""
"""What retention leaves for the contact policies: coupons counted from deleted decisions,
per offer, and the negative outcomes suppressions act on."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one pass may delete."""

    cutoff: float
    """Decisions decided (and unattributed outcomes received) before this may go."""
    learned: int
    """The highest ``closed_seq`` that may go (the oldest kept checkpoint's position)."""
    contacts_since: float = math.inf
    """An activated non-control decision activated at or after this stays (caps and
    repeats look back to it; ``inf``: none do)."""
    negative_types: frozenset[str] = frozenset()
    """Outcome types copied to ``kept_negatives`` before they are deleted (suppressions)."""


def bounds_for(
    days: float,
    now: float,
    learned: int,
    keeps: tuple[float, float, frozenset[str]] | None = None,
) -> Bounds:
    """The bounds of a pass at ``now``: ``days`` of retention, the oldest kept checkpoint's
    position ``learned``, and what the live contact policy ``keeps``
    (:meth:`bandit.contact.gate.ContactGate.keeps`: contacts since, today's start, negative
    outcome types; None without a policy).

    >>> b = bounds_for(30, 100 * DAY, 7, (95 * DAY, 99.5 * DAY, frozenset({"unsubscribe"})))
    >>> b.cutoff / DAY, b.learned, b.contacts_since / DAY
    (70.0, 7, 95.0)
    """
    contacts_since, today, types = keeps or (math.inf, math.inf, frozenset())
    return Bounds(min(now - days * DAY, today), learned, contacts_since, types)


@dataclass(slots=True)
class Totals:
    """What retention has done since it started."""

    decisions: int = 0
    outcomes: int = 0
    negatives_kept: int = 0
    batches: int = 0
    passes: int = 0
    exported_files: int = 0
    seconds_in_writer: float = 0.0


class Writer(Protocol):
    """The log's group commit (:class:`~bandit.log.sqlite.SqliteDecisionLog`)."""

    path: Path

    def run(self, job: Callable[[sqlite3.Connection], Any]) -> Any: ...

    def exclusive(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


def auto_vacuum_mode(conn: sqlite3.Connection) -> str:
    """``none``, ``full`` or ``incremental``."""
    (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    return {0: "none", 1: "full", 2: "incremental"}.get(int(mode), str(mode))


def convert_to_incremental(path: Path, wait_seconds: float = 30.0) -> tuple[int, int]:
    """Turn a log's ``auto_vacuum`` to INCREMENTAL: one ``VACUUM`` that rewrites the whole
    file (it needs room for a second copy, and holds the writer for its duration: stop the
    server first, or run it at a quiet time). Returns the file's size before and after."""
    before = path.stat().st_size
    conn = sqlite3.connect(path, timeout=wait_seconds, isolation_level=None)
    try:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return before, path.stat().st_size


def delete_job(
    seqs: Sequence[int], bounds: Bounds
) -> Callable[[sqlite3.Connection], tuple[int, int, int]]:
    """A writer job deleting those of ``seqs`` that may still go under ``bounds`` (checked
    again inside the write: the scan read them outside it) and their outcomes. Its value is
    (decisions, outcomes, negatives kept)."""

    def job(conn: sqlite3.Connection) -> tuple[int, int, int]:
        (max_seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM decisions").fetchone()
        (max_closed,) = conn.execute(
            "SELECT COALESCE((SELECT closed_seq FROM decisions WHERE closed_seq IS NOT NULL"
            " ORDER BY closed_seq DESC LIMIT 1), 0)"
        ).fetchone()
        marks = ",".join("?" * len(seqs))
        chosen = [
            int(r[0])
            for r in conn.execute(
                f"SELECT seq FROM decisions WHERE seq IN ({marks}) AND seq < ?"
                " AND decided_at < ?"
                " AND ((closed_seq IS NOT NULL AND closed_seq <= ? AND closed_seq < ?)"
                "      OR (deferred = 1 AND activated_at IS NULL))"
                " AND (activated_at IS NULL OR activated_at < ? OR is_control = 1)",
                (*seqs, max_seq, bounds.cutoff, bounds.learned, max_closed, _finite(bounds)),
            )
        ]
        if not chosen:
            return 0, 0, 0
        marks = ",".join("?" * len(chosen))
        kept = 0
        types = sorted(bounds.negative_types)
        if types:
            tmarks = ",".join("?" * len(types))
            kept = conn.execute(
                "INSERT INTO kept_negatives (customer_id, type, occurred_at, channel_id)"
                " SELECT COALESCE(o.customer_id, d.customer_id), o.type, o.occurred_at,"
                " d.chosen_channel FROM outcomes o JOIN decisions d ON d.event_id = o.event_id"
                f" WHERE d.seq IN ({marks}) AND o.type IN ({tmarks}) AND o.voided_at IS NULL",
                (*chosen, *types),
            ).rowcount
        conn.execute(
            "INSERT INTO retired_offer_counts (offer_id, count)"
            f" SELECT chosen_offer, COUNT(*) FROM decisions WHERE seq IN ({marks})"
            " AND is_control = 0 GROUP BY chosen_offer"
            " ON CONFLICT (offer_id) DO UPDATE SET count = count + excluded.count",
            chosen,
        )
        outcomes = conn.execute(
            "DELETE FROM outcomes WHERE event_id IN"
            f" (SELECT event_id FROM decisions WHERE seq IN ({marks}))",
            chosen,
        ).rowcount
        decisions = conn.execute(f"DELETE FROM decisions WHERE seq IN ({marks})", chosen).rowcount
        return decisions, outcomes, kept

    return job


def orphans_job(
    ids: Sequence[str], bounds: Bounds
) -> Callable[[sqlite3.Connection], tuple[int, int]]:
    """A writer job deleting those of the outcomes ``ids`` that are attributed to no
    decision and were received before the cutoff (negative ones copied first); its value is
    (deleted, negatives kept)."""

    def job(conn: sqlite3.Connection) -> tuple[int, int]:
        marks = ",".join("?" * len(ids))
        where = f"outcome_id IN ({marks}) AND event_id IS NULL AND received_at < ?"
        kept = 0
        types = sorted(bounds.negative_types)
        if types:
            tmarks = ",".join("?" * len(types))
            kept = conn.execute(
                "INSERT INTO kept_negatives (customer_id, type, occurred_at, channel_id)"
                f" SELECT customer_id, type, occurred_at, '' FROM outcomes WHERE {where}"
                f" AND customer_id IS NOT NULL AND type IN ({tmarks}) AND voided_at IS NULL",
                (*ids, bounds.cutoff, *types),
            ).rowcount
        deleted = conn.execute(
            f"DELETE FROM outcomes WHERE {where}", (*ids, bounds.cutoff)
        ).rowcount
        return deleted, kept

    return job


def give_back(conn: sqlite3.Connection, most: int = 8192) -> int:
    """Give up to ``most`` free pages back to the file system (``incremental_vacuum``; the
    file shrinks at the next WAL checkpoint); returns how many were free. Run outside a
    transaction (:meth:`~bandit.log.sqlite.SqliteDecisionLog.exclusive`): each step of this
    pragma frees one page, and ``executescript`` steps it to the end in one call (one
    release of the GIL), where ``execute`` would step it once per call."""
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    n = min(int(free), most)
    if n:
        conn.executescript(f"PRAGMA incremental_vacuum({n})")
    return n


def _finite(bounds: Bounds) -> float:
    return bounds.contacts_since if math.isfinite(bounds.contacts_since) else 1e300


def eligible(row: Sequence[Any], bounds: Bounds) -> bool:
    """Whether a scanned row ``(seq, decided_at, closed_seq, deferred, activated_at,
    is_control)`` may go (the job checks again, with the newest rows' guard).

    >>> b = Bounds(cutoff=100.0, learned=5)
    >>> eligible((1, 50.0, 5, 0, 50.0, 0), b), eligible((2, 50.0, 6, 0, 50.0, 0), b)
    (True, False)
    >>> eligible((3, 50.0, None, 1, None, 0), b), eligible((4, 150.0, 1, 0, 150.0, 0), b)
    (True, False)
    """
    _seq, decided_at, closed_seq, deferred, activated_at, is_control = row
    if decided_at >= bounds.cutoff:
        return False
    if closed_seq is None and not (deferred and activated_at is None):
        return False
    if closed_seq is not None and closed_seq > bounds.learned:
        return False
    return activated_at is None or is_control or activated_at < bounds.contacts_since


class Retention:
    """Deletes what may go, batch by batch (:meth:`run_pass`), every ``every`` seconds
    while :meth:`run` runs. ``bounds(now)`` says what may go (the service works it out from
    the retention setting, its checkpoints and its contact policy)."""

    def __init__(
        self,
        writer: Writer,
        bounds: Callable[[float], Bounds],
        now: Callable[[], float],
        *,
        batch: int = 256,
        duty: float = 0.1,
        export_dir: Path | None = None,
    ) -> None:
        if batch < 1 or not 0 < duty <= 1:
            raise ValueError("batch ≥ 1 and 0 < duty ≤ 1")
        self.writer = writer
        self.bounds = bounds
        self.now = now
        self.batch = batch
        self.duty = duty
        self.export_dir = export_dir
        self.totals = Totals()
        self._stop = threading.Event()
        """Set: the pass under way stops after its current batch (:meth:`run`'s ``stop``)."""
        self._conn = sqlite3.connect(writer.path, check_same_thread=False, timeout=30.0)
        self._conn.execute("PRAGMA query_only=ON")
        self.auto_vacuum = auto_vacuum_mode(self._conn)
        if self.auto_vacuum != "incremental":
            log.warning(
                "decision log %s has auto_vacuum=%s: retention frees pages for new rows but "
                "the file does not shrink until converted once (offerbandit vacuum)",
                writer.path,
                self.auto_vacuum,
            )
        if export_dir is not None:
            export_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self._conn.close()

    def run_pass(self, pause: bool = True) -> Totals:
        """One pass over the log from its oldest row to the cutoff; returns what it did.
        ``pause``: rest between batches (at most ``duty`` of the time in the writer)."""
        bounds = self.bounds(self.now())
        done = Totals(passes=1)
        vacuum = self.auto_vacuum == "incremental"
        after = 0
        while not self._stop.is_set():
            rows = self._conn.execute(
                "SELECT seq, decided_at, closed_seq, deferred, activated_at, is_control"
                " FROM decisions WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, self.batch),
            ).fetchall()
            if not rows:
                break
            after = int(rows[-1][0])
            seqs = [int(r[0]) for r in rows if eligible(r, bounds)]
            reached_cutoff = any(r[1] >= bounds.cutoff for r in rows)
            if seqs:
                if self.export_dir is not None:
                    done.exported_files += self._export(seqs)
                (n_dec, n_out, kept), spent = self._run(delete_job(seqs, bounds), done)
                spent += self._give_back(vacuum, done)
                done.decisions += n_dec
                done.outcomes += n_out
                done.negatives_kept += kept
                if pause:
                    self._stop.wait(spent * (1.0 / self.duty - 1.0))
            if reached_cutoff:
                break
        while not self._stop.is_set():
            ids = [
                str(r[0])
                for r in self._conn.execute(
                    "SELECT outcome_id FROM outcomes WHERE event_id IS NULL AND received_at < ?"
                    " LIMIT ?",
                    (bounds.cutoff, self.batch),
                )
            ]
            if not ids:
                break
            if self.export_dir is not None:
                done.exported_files += self._export_orphans(ids)
            (n_out, kept), spent = self._run(orphans_job(ids, bounds), done)
            spent += self._give_back(vacuum, done)
            done.outcomes += n_out
            done.negatives_kept += kept
            if not n_out:
                break
            if pause:
                self._stop.wait(spent * (1.0 / self.duty - 1.0))
        self._add(done)
        if done.decisions or done.outcomes:
            log.info(
                "retention: deleted %d decisions and %d outcomes decided before %.0f "
                "(kept %d negative outcomes for suppressions)",
                done.decisions,
                done.outcomes,
                bounds.cutoff,
                done.negatives_kept,
            )
        return done

    def _run(self, job: Callable[[sqlite3.Connection], T], done: Totals) -> tuple[T, float]:
        """Run ``job`` through the log's writer; its value and the seconds it held the
        writer (its own work, not the wait for its turn and the commit it shares)."""
        held = [0.0]

        def timed(conn: sqlite3.Connection) -> T:
            t0 = time.perf_counter()
            try:
                return job(conn)
            finally:
                held[0] = time.perf_counter() - t0

        value: T = self.writer.run(timed)
        done.batches += 1
        done.seconds_in_writer += held[0]
        return value, held[0]

    def _give_back(self, vacuum: bool, done: Totals) -> float:
        """The freed pages back to the file system (with ``auto_vacuum = INCREMENTAL``);
        the seconds it held the writer."""
        if not vacuum:
            return 0.0
        t0 = time.perf_counter()
        self.writer.exclusive(give_back)
        held = time.perf_counter() - t0
        done.seconds_in_writer += held
        return held

    def _add(self, d: Totals) -> None:
        t = self.totals
        t.decisions += d.decisions
        t.outcomes += d.outcomes
        t.negatives_kept += d.negatives_kept
        t.batches += d.batches
        t.passes += d.passes
        t.exported_files += d.exported_files
        t.seconds_in_writer += d.seconds_in_writer

    def _export(self, seqs: Sequence[int]) -> int:
        """Write the rows of ``seqs`` and their outcomes as Parquet; returns files written."""
        marks = ",".join("?" * len(seqs))
        tag = f"{min(seqs):012d}-{max(seqs):012d}"
        return self._write(
            f"decisions-{tag}",
            f"SELECT * FROM decisions WHERE seq IN ({marks}) ORDER BY seq",
            seqs,
        ) + self._write(
            f"outcomes-{tag}",
            "SELECT * FROM outcomes WHERE event_id IN"
            f" (SELECT event_id FROM decisions WHERE seq IN ({marks}))",
            seqs,
        )

    def _export_orphans(self, ids: Sequence[str]) -> int:
        marks = ",".join("?" * len(ids))
        stamp = f"{self.now():.0f}-{self.totals.batches + 1}"
        return self._write(
            f"outcomes-unattributed-{stamp}",
            f"SELECT * FROM outcomes WHERE outcome_id IN ({marks})",
            ids,
        )

    def _write(self, name: str, sql: str, args: Sequence[Any]) -> int:
        """The rows of ``sql`` as ``<export_dir>/<name>.parquet`` (0 files when none)."""
        import pyarrow as pa  # only with export_dir set
        import pyarrow.parquet as pq

        assert self.export_dir is not None
        cur = self._conn.execute(sql, list(args))
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
        if not rows:
            return 0
        table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
        path = self.export_dir / f"{name}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return 1

    def run(self, stop: threading.Event, every: float = 60.0) -> None:
        """A pass every ``every`` seconds until ``stop`` is set (a pass stops after its
        current batch; a failure is logged and retried at the next one)."""
        self._stop = stop
        while not stop.is_set():
            try:
                self.run_pass()
            except Exception:
                log.exception("retention pass failed; retrying at the next")
            stop.wait(every)


__all__ = [
    "RETENTION_SCHEMA",
    "Bounds",
    "Retention",
    "Totals",
    "auto_vacuum_mode",
    "bounds_for",
    "convert_to_incremental",
    "delete_job",
    "eligible",
    "give_back",
    "orphans_job",
]
