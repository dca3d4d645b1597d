"""The PostgreSQL log's statistics: the SQLite log's aggregates (:mod:`bandit.log.sqlite.stats`)
in PostgreSQL's dialect."""

from __future__ import annotations

from bandit.log.postgres.decisions import Conn
from bandit.records import Incremental, LogStats
from bandit.types import TreatmentRef


def log_stats(c: Conn, now: float, recent_seconds: float) -> LogStats:
    """Counts, attributed revenue, the recent mean reward per treatment and the incremental
    estimate's sums over the last ``recent_seconds`` (see
    :func:`bandit.log.sqlite.stats.log_stats`)."""
    row = c.execute(
        "SELECT COUNT(*), COUNT(activated_at),"
        " COUNT(*) FILTER (WHERE deferred AND activated_at IS NULL),"
        " COUNT(*) FILTER (WHERE closed_seq IS NULL AND activated_at IS NOT NULL),"
        " COUNT(closed_seq) FROM decisions"
    ).fetchone()
    assert row is not None
    decisions, activations, pending_act, open_windows, closed = row
    outcomes = {
        str(s): int(n)
        for s, n in c.execute("SELECT status, COUNT(*) FROM outcomes GROUP BY status")
    }
    found = c.execute(
        "SELECT COALESCE(SUM(revenue), 0) FROM outcomes WHERE status = 'attributed'"
    ).fetchone()
    revenue = found[0] if found else 0.0
    since = now - recent_seconds
    recent = [
        (TreatmentRef(str(o), str(h)), int(n), float(m))
        for o, h, n, m in c.execute(
            "SELECT chosen_offer, chosen_channel, COUNT(*), AVG(reward) FROM decisions"
            " WHERE closed_at >= %s GROUP BY chosen_offer, chosen_channel"
            " ORDER BY AVG(reward) DESC",
            (since,),
        )
    ]
    sums = c.execute(
        "SELECT COUNT(*), COALESCE(SUM(psi), 0), COALESCE(SUM(psi * psi), 0) FROM ("
        " SELECT CASE WHEN is_control THEN reward - reward / propensity ELSE reward END"
        " AS psi FROM decisions WHERE closed_at >= %s AND NOT holdout"
        " AND closed_seq IS NOT NULL) AS closed",
        (since,),
    ).fetchone()
    assert sums is not None
    n, s1, s2 = sums
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


def removal_counts(c: Conn) -> dict[str, int]:
    """Treatments removed by each contact-policy rule, over the whole log."""
    return {
        str(rule): int(n)
        for rule, n in c.execute(
            "SELECT e ->> 2, COUNT(*) FROM decisions d,"
            " jsonb_array_elements(d.removed::jsonb) e WHERE d.removed IS NOT NULL"
            " GROUP BY 1 ORDER BY 1"
        )
    }


__all__ = ["log_stats", "removal_counts"]
