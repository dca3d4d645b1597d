"""The SQLite log's statistics: aggregate queries for GetStats."""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

import numpy as np

from bandit.log.sqlite.live import LiveIncremental, Row
from bandit.records import Incremental, LogStats
from bandit.types import TreatmentRef

DR_METHOD = "doubly-robust (baseline fitted on earlier control decisions), normal 95%"
MAX_ROWS = 50_000
"""Most decisions one GetStats scores (40–70 µs each); with more to score since the last call
(a first call on a busy log's period, or calls far apart) it gives the plain estimate."""


class LiveState:
    """The incremental estimate's running state for one log: the closed decisions are scored
    once each, in closing order (:class:`~bandit.log.sqlite.live.LiveIncremental`), and their
    scores kept with their closing times for as long as the widest period asked for.

    A service (re)started on a log scores the decisions of the first period asked for, so
    its baseline starts from them (a wider period asked later is scored again from its
    start); a reward corrected after it was scored keeps its score."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._est = LiveIncremental()
        self._seq: int | None = None
        """The last closing position scored (None: nothing read yet)."""
        self._at: list[np.ndarray[Any, Any]] = []
        self._psi: list[np.ndarray[Any, Any]] = []
        self._keep = 0.0
        self._from = 0.0
        """The start of the period scored (the first period asked for)."""

    def estimate(self, c: sqlite3.Connection, now: float, recent_seconds: float) -> Incremental:
        """The doubly robust estimate over the decisions closed in the last
        ``recent_seconds``."""
        since = now - recent_seconds
        with self._lock:
            if self._seq is not None and since < self._from:
                # A wider period than any read so far: score it from its start.
                self._reset()
            if self._backlog(c, since) > MAX_ROWS:
                # Too many to score within one call: the plain estimate, and a fresh start
                # next time.
                self._reset()
                return _plain(c, since)
            self._keep = max(self._keep, recent_seconds)
            self._read(c, since)
            while self._at and len(self._at[0]) and self._at[0][-1] < now - self._keep:
                del self._at[0], self._psi[0]
            n, s1, s2 = 0, 0.0, 0.0
            for at, psi in zip(self._at, self._psi, strict=True):
                x = psi[at >= since]
                n += len(x)
                s1 += float(x.sum())
                s2 += float(np.dot(x, x))
        e = Incremental.from_sums(n, s1, s2)
        return Incremental(e.decisions, e.per_decision, e.ci_low, e.ci_high, DR_METHOD)

    def _backlog(self, c: sqlite3.Connection, since: float) -> int:
        """How many decisions the next :meth:`_read` would score."""
        if self._seq is None:
            q = "SELECT COUNT(*) FROM decisions WHERE closed_at >= ? AND closed_seq IS NOT NULL"
            return int(c.execute(q, (since,)).fetchone()[0])
        q = "SELECT COUNT(*) FROM decisions WHERE closed_seq > ?"
        return int(c.execute(q, (self._seq,)).fetchone()[0])

    def _read(self, c: sqlite3.Connection, since: float) -> None:
        cols = "closed_seq, closed_at, is_control, propensity, reward, record"
        if self._seq is None:
            cur = c.execute(
                f"SELECT {cols} FROM decisions WHERE closed_at >= ? AND holdout = 0"
                " AND closed_seq IS NOT NULL ORDER BY closed_seq",
                (since,),
            )
            self._seq = 0
            self._from = since
        else:
            cur = c.execute(
                f"SELECT {cols} FROM decisions WHERE closed_seq > ? AND holdout = 0"
                " ORDER BY closed_seq",
                (self._seq,),
            )
        while batch := cur.fetchmany(4096):
            rows, at = [], []
            for seq, closed_at, control, propensity, reward, record in batch:
                head = json.loads(record)
                trigger = head["trigger"]
                rows.append(
                    Row(
                        head["customer"]["features"],
                        trigger["type"],
                        trigger["features"],
                        float(reward or 0.0),
                        bool(control),
                        float(propensity),
                    )
                )
                at.append(float(closed_at))
                self._seq = max(self._seq, int(seq))
            self._psi.append(np.array(self._est.add(rows)))
            self._at.append(np.array(at))


def log_stats(
    c: sqlite3.Connection, now: float, recent_seconds: float, live: LiveState | None = None
) -> LogStats:
    """Counts, attributed revenue, the recent mean reward per treatment, and the
    incremental estimate over the last ``recent_seconds``
    (:class:`~bandit.records.Incremental`): with ``live``, its doubly robust scores
    (bandit/log/sqlite/live.py); without, the plain ones, per closed, non-holdout decision
    ``ψ = r − 1{control}·r / μ(control)``."""
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
    if live is not None:
        incremental = live.estimate(c, now, recent_seconds)
    else:
        incremental = _plain(c, now - recent_seconds)
    return LogStats(
        incremental=incremental,
        decisions=int(decisions),
        activations=int(activations),
        pending_activation=int(pending_act or 0),
        outcomes=outcomes,
        attributed_revenue=float(revenue),
        pending_windows=int(open_windows or 0),
        closed=int(closed),
        recent=recent,
    )


def _plain(c: sqlite3.Connection, since: float) -> Incremental:
    """The plain estimate: per decision ``ψ = r − 1{control}·r / μ(control)``."""
    n, s1, s2 = c.execute(
        "SELECT COUNT(*), COALESCE(SUM(psi), 0), COALESCE(SUM(psi * psi), 0) FROM ("
        " SELECT CASE WHEN is_control = 1 THEN reward - reward / propensity ELSE reward END"
        " AS psi FROM decisions WHERE closed_at >= ? AND holdout = 0"
        " AND closed_seq IS NOT NULL)",
        (since,),
    ).fetchone()
    return Incremental.from_sums(int(n), float(s1), float(s2))


def removal_counts(c: sqlite3.Connection) -> dict[str, int]:
    """Treatments removed by each contact-policy rule, over the whole log (a scan of the
    decisions, as GetStats' other counts)."""
    return {
        str(rule): int(n)
        for rule, n in c.execute(
            "SELECT json_extract(j.value, '$[2]'), COUNT(*) FROM decisions d,"
            " json_each(d.removed) j WHERE d.removed IS NOT NULL GROUP BY 1 ORDER BY 1"
        )
    }


__all__ = ["DR_METHOD", "MAX_ROWS", "LiveState", "log_stats", "removal_counts"]
