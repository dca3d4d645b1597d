"""The SQLite log's statistics: aggregate queries for GetStats."""

from __future__ import annotations

import sqlite3

from bandit.records import Incremental, LogStats
from bandit.types import TreatmentRef


def log_stats(c: sqlite3.Connection, now: float, recent_seconds: float) -> LogStats:
    """Counts, attributed revenue, the recent mean reward per treatment, and the
    incremental estimate's sums (:class:`~bandit.records.Incremental`: per closed,
    non-holdout decision ``ψ = r − 1{control}·r / μ(control)``) over the last
    ``recent_seconds``."""
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


__all__ = ["log_stats", "removal_counts"]
