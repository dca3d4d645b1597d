"""Outcomes, activations, closing windows and voiding in the SQLite log: each a job that
reads the rows it concerns, applies the rules of :mod:`bandit.outcomes`, and writes the
result (the log runs it as one atomic read-modify-write, :mod:`.groupcommit`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from bandit.errors import (
    AlreadyActivated,
    InvalidRequest,
    NotDeferred,
    UnknownEvent,
)
from bandit.log.sqlite.contacts import charge
from bandit.log.sqlite.groupcommit import Job
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
from bandit.records import Activation, OutcomeInput, OutcomeResult, OutcomeStatus, Windows
from bandit.rewards import RewardRule


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


class OutcomeJobs:
    """The jobs that attribute outcomes and close windows, under one log's windows, reward
    rule and attribution rule."""

    def __init__(self, windows: Windows, reward_rule: RewardRule, rule: AttributionRule) -> None:
        self.windows = windows
        self.reward_rule = reward_rule
        self.rule = rule

    def outcome_job(self, outcome: OutcomeInput, now: float, max_future_skew: float) -> Job:
        """A job that validates, deduplicates, attributes and stores one outcome; its value is
        the outcome's :class:`~bandit.records.OutcomeResult`."""

        def job(conn: sqlite3.Connection) -> OutcomeResult:
            return self.record_outcome(conn, outcome, now, max_future_skew)

        return job

    def activate_job(self, event_id: str, at: float) -> Job:
        """A job starting deferred decision ``event_id``'s window at ``at``; its
        value is the :class:`~bandit.records.Activation`. It raises before it writes
        (:class:`~bandit.errors.UnknownEvent`, :class:`~bandit.errors.NotDeferred`,
        :class:`~bandit.errors.AlreadyActivated`, or :class:`~bandit.errors.InvalidRequest`
        for a time before the decision), so a refused activation leaves nothing behind; its one
        write is the UPDATE."""

        def job(conn: sqlite3.Connection) -> Activation:
            row = conn.execute(
                "SELECT deferred, activated_at, decided_at, chosen_channel, is_control, customer_id"
                " FROM decisions WHERE event_id = ?",
                (event_id,),
            ).fetchone()
            if row is None:
                raise UnknownEvent(event_id)
            deferred, activated_at, decided_at, channel_id, is_control, customer_id = row
            if not deferred:
                raise NotDeferred(event_id)
            if activated_at is not None:
                raise AlreadyActivated(event_id)
            if at < decided_at:
                raise InvalidRequest("activated_at", "is before the decision was made")
            closes = at + self.windows.for_channel("" if is_control else channel_id)
            conn.execute(
                "UPDATE decisions SET activated_at = ?, window_closes_at = ? WHERE event_id = ?",
                (at, closes, event_id),
            )
            return Activation(event_id, customer_id, at, closes)

        return job

    def record_outcome(
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
            seq = self.rule.find(conn, o.customer_id, occurred)
            if seq is not None:
                row = conn.execute(_DECISION_FOR_OUTCOME + "seq = ?", (seq,)).fetchone()
                target = None if row is None else _window(row)
        event_id = ""
        if target is not None:
            event_id = target.event_id
            status = attribution_status(target, o.customer_id, occurred)
            if status is OutcomeStatus.ATTRIBUTED:
                charge(conn, target.seq, o.revenue)
                conn.execute(
                    "UPDATE decisions SET n_outcomes = n_outcomes + 1, revenue = revenue + ?"
                    " WHERE seq = ?",
                    (o.revenue, target.seq),
                )
                value = self.reward_rule.value_of(o.type)
                if value:
                    conn.execute(
                        "UPDATE decisions SET outcome_value = COALESCE(outcome_value, 0) + ?"
                        " WHERE seq = ?",
                        (value, target.seq),
                    )
                if closes_at_outcome(self.reward_rule, status):
                    self.close(conn, [target.seq], now)
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

    def close_due_job(self, now: float, limit: int = 5000) -> Job:
        """A job closing every open window that has ended by ``now`` (up to ``limit``); its value
        is how many closed."""

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
            self.close(conn, seqs, now)
            return len(seqs)

        return job

    def close(self, conn: sqlite3.Connection, seqs: Iterable[int], now: float) -> None:
        (last,) = conn.execute(LAST_CLOSED).fetchone()
        rule = self.reward_rule
        for seq in seqs:
            revenue, n, is_control, fixed, rate, contact, value = conn.execute(
                "SELECT revenue, n_outcomes, is_control, fixed_cost, discount_rate, contact_cost,"
                " outcome_value FROM decisions WHERE seq = ?",
                (seq,),
            ).fetchone()
            reward = rule.with_outcomes(
                closing_reward(rule, revenue, n, Costs(bool(is_control), fixed, rate, contact)),
                value or 0.0,
            )
            last += 1
            conn.execute(
                "UPDATE decisions SET closed_seq = ?, closed_at = ?, reward = ? WHERE seq = ?",
                (last, now, reward, seq),
            )

    def void_decisions_job(
        self,
        now: float,
        event_ids: Sequence[str] = (),
        decided_between: tuple[float, float] | None = None,
    ) -> Job:
        """A job flagging decisions as void (by event id, and/or decided within a time
        range): they stay in the log, and the learner never learns them (``closed_after``
        skips them). Its value is how many were newly voided."""

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

        return job

    def void_outcomes_job(
        self,
        now: float,
        outcome_ids: Sequence[str] = (),
        received_between: tuple[float, float] | None = None,
    ) -> Job:
        """A job flagging outcomes as void (by id, and/or received within a time range): they
        stay in the log, flagged, and no longer count for their decision. An attributed outcome's
        revenue leaves its decision's ``revenue`` and ``n_outcomes``, and a closed decision's
        reward is computed again from what remains, so a learner rolled back before it
        learns the corrected reward. Its value is how many were newly voided."""

        def job(conn: sqlite3.Connection) -> int:
            rows: list[tuple[str, str | None, str, float, str]] = []
            select = "SELECT outcome_id, event_id, status, revenue, type FROM outcomes WHERE "
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
            for oid, event_id, status, revenue, kind in rows:
                if oid in seen:
                    continue
                seen.add(oid)
                conn.execute("UPDATE outcomes SET voided_at = ? WHERE outcome_id = ?", (now, oid))
                if status != OutcomeStatus.ATTRIBUTED.value or not event_id:
                    continue
                conn.execute(
                    "UPDATE decisions SET n_outcomes = MAX(n_outcomes - 1, 0),"
                    " revenue = MAX(revenue - ?, 0),"
                    " outcome_value = COALESCE(outcome_value, 0) - ? WHERE event_id = ?",
                    (revenue, self.reward_rule.value_of(kind), event_id),
                )
                self.recompute_reward(conn, event_id)
            return len(seen)

        return job

    def recompute_reward(self, conn: sqlite3.Connection, event_id: str) -> None:
        row = conn.execute(
            "SELECT revenue, n_outcomes, is_control, fixed_cost, discount_rate, contact_cost,"
            " closed_seq, outcome_value FROM decisions WHERE event_id = ?",
            (event_id,),
        ).fetchone()
        if row is None or row[6] is None:
            return
        revenue, n, is_control, fixed, rate, contact, _, value = row
        reward, revenue = recomputed_reward(
            self.reward_rule, revenue, n, Costs(bool(is_control), fixed, rate, contact)
        )
        reward = self.reward_rule.with_outcomes(reward, value or 0.0)
        conn.execute(
            "UPDATE decisions SET reward = ?, revenue = ? WHERE event_id = ?",
            (reward, revenue, event_id),
        )


LAST_CLOSED = (
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


__all__ = ["LAST_CLOSED", "AttributionRule", "LastTouch", "OutcomeJobs"]
