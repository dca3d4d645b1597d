"""Outcomes, activations, closing windows and voiding in the PostgreSQL log: each a job run
inside the writer's transaction (:mod:`.store`), applying the rules of :mod:`bandit.outcomes`.

Several processes write the same log, so each job takes what it must hold before it reads:

* an outcome first **claims its id** (``INSERT … ON CONFLICT DO NOTHING``): a second
  process recording the same outcome id waits for the first to commit and then finds it, a
  duplicate — the id is idempotent across deciders, whatever each remembers;
* the decision an outcome, an activation or a closing touches is **locked** (``SELECT …
  FOR UPDATE``) before its window and counters are read, so an outcome and the closing of
  its window never interleave, and two outcomes of one decision add up;
* closing takes the next ``closed_seq`` values from ``log_counters`` under its row lock,
  held until commit: closings commit in ``closed_seq`` order, so a learner reading
  ``closed_seq > position`` never skips one that commits later. The window closer passes
  over decisions another process has locked (``SKIP LOCKED``) and closes them next time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bandit.errors import (
    AlreadyActivated,
    InvalidRequest,
    NotDeferred,
    StorageError,
    UnknownEvent,
    quote,
)
from bandit.log.postgres.contacts import charge
from bandit.log.postgres.decisions import Conn
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

_WINDOW = (
    "SELECT seq, decided_at, event_id, activated_at, window_closes_at, closed_seq, customer_id"
    " FROM decisions WHERE "
)

LAST_CLOSED = "SELECT value FROM log_counters WHERE name = 'closed_seq'"


def last_touch(conn: Conn, customer_id: str, occurred_at: float) -> int | None:
    """:func:`bandit.outcomes.last_touch` in SQL: the ``seq`` of the customer's most recent
    activated decision whose window is open at ``occurred_at`` (ties: the later ``seq``)."""
    row = conn.execute(
        "SELECT seq FROM decisions WHERE customer_id = %s AND activated_at IS NOT NULL"
        " AND activated_at <= %s AND window_closes_at > %s"
        " ORDER BY activated_at DESC, seq DESC LIMIT 1",
        (customer_id, occurred_at, occurred_at),
    ).fetchone()
    return None if row is None else int(row[0])


class OutcomeJobs:
    """The jobs that attribute outcomes and close windows, under one log's windows and
    reward rule."""

    def __init__(self, windows: Windows, reward_rule: RewardRule) -> None:
        self.windows = windows
        self.reward_rule = reward_rule

    def outcome_job(self, outcome: OutcomeInput, now: float, max_future_skew: float) -> Any:
        def job(conn: Conn) -> OutcomeResult:
            return self.record_outcome(conn, outcome, now, max_future_skew)

        return job

    def activate_job(self, event_id: str, at: float) -> Any:
        """A job starting deferred decision ``event_id``'s window at ``at`` (its row locked
        first); its value is the :class:`~bandit.records.Activation`. It raises before it writes
        (:class:`~bandit.errors.UnknownEvent`, :class:`~bandit.errors.NotDeferred`,
        :class:`~bandit.errors.AlreadyActivated`, or :class:`~bandit.errors.InvalidRequest`
        for a time before the decision), so a refused activation leaves nothing behind; its one
        write is the UPDATE."""

        def job(conn: Conn) -> Activation:
            row = conn.execute(
                "SELECT deferred, activated_at, decided_at, chosen_channel, is_control, customer_id"
                " FROM decisions WHERE event_id = %s FOR UPDATE",
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
                "UPDATE decisions SET activated_at = %s, window_closes_at = %s WHERE event_id = %s",
                (at, closes, event_id),
            )
            return Activation(event_id, customer_id, at, closes)

        return job

    def record_outcome(
        self, conn: Conn, o: OutcomeInput, now: float, max_future_skew: float
    ) -> OutcomeResult:
        """Claim the id, read what the outcome concerns (locked), apply the rules, write."""
        payload = o.payload_hash()
        occurred = outcome_time(o, now, max_future_skew)
        claimed = conn.execute(
            "INSERT INTO outcomes (outcome_id, event_id, customer_id, type, revenue,"
            " occurred_at, received_at, status, payload_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (outcome_id) DO NOTHING RETURNING arrival",
            (
                o.outcome_id,
                o.event_id or None,
                o.customer_id or None,
                o.type,
                o.revenue,
                occurred,
                now,
                OutcomeStatus.UNATTRIBUTED.value,
                payload,
            ),
        ).fetchone()
        if claimed is None:
            prev = conn.execute(
                "SELECT payload_hash, event_id FROM outcomes WHERE outcome_id = %s",
                (o.outcome_id,),
            ).fetchone()
            if prev is None:
                raise StorageError(f"outcome {quote(o.outcome_id)} is neither new nor stored")
            duplicate = duplicate_of(o, payload, PriorOutcome(prev[0], prev[1] or ""))
            assert duplicate is not None
            return duplicate
        target: DecisionWindow | None = None
        if o.event_id:
            row = conn.execute(_WINDOW + "event_id = %s FOR UPDATE", (o.event_id,)).fetchone()
            target = None if row is None else DecisionWindow(*_window(row))
            check_named_decision(o.event_id, target, occurred)
        elif o.customer_id:
            seq = last_touch(conn, o.customer_id, occurred)
            if seq is not None:
                row = conn.execute(_WINDOW + "seq = %s FOR UPDATE", (seq,)).fetchone()
                target = None if row is None else DecisionWindow(*_window(row))
        if target is None:
            return OutcomeResult(o.outcome_id, OutcomeStatus.UNATTRIBUTED, "")
        status = attribution_status(target, o.customer_id, occurred)
        if status is OutcomeStatus.ATTRIBUTED:
            charge(conn, target.seq, o.revenue)
            value = self.reward_rule.value_of(o.type)
            conn.execute(
                "UPDATE decisions SET n_outcomes = n_outcomes + 1, revenue = revenue + %s,"
                " outcome_value = CASE WHEN %s = 0 THEN outcome_value"
                " ELSE COALESCE(outcome_value, 0) + %s END WHERE seq = %s",
                (o.revenue, value, value, target.seq),
            )
            if closes_at_outcome(self.reward_rule, status):
                self.close(conn, [target.seq], now)
        conn.execute(
            "UPDATE outcomes SET event_id = %s, status = %s WHERE outcome_id = %s",
            (target.event_id, status.value, o.outcome_id),
        )
        return OutcomeResult(o.outcome_id, status, target.event_id)

    # ---- closing windows -----------------------------------------------------------------

    def close_due_job(self, now: float, limit: int = 5000) -> Any:
        def job(conn: Conn) -> int:
            seqs = [
                int(r[0])
                for r in conn.execute(
                    "SELECT seq FROM decisions WHERE closed_seq IS NULL AND window_closes_at"
                    " IS NOT NULL AND window_closes_at <= %s ORDER BY window_closes_at, seq"
                    " LIMIT %s FOR UPDATE SKIP LOCKED",
                    (now, limit),
                )
            ]
            self.close(conn, seqs, now)
            return len(seqs)

        return job

    def close(self, conn: Conn, seqs: Iterable[int], now: float) -> None:
        """Close the (locked) decisions ``seqs`` in this order."""
        seqs = list(seqs)
        if not seqs:
            return
        row = conn.execute(
            "UPDATE log_counters SET value = value + %s WHERE name = 'closed_seq' RETURNING value",
            (len(seqs),),
        ).fetchone()
        if row is None:
            raise StorageError("the decision log has no closed_seq counter")
        last = int(row[0]) - len(seqs)
        rule = self.reward_rule
        for seq in seqs:
            found = conn.execute(
                "SELECT revenue, n_outcomes, is_control, fixed_cost, discount_rate, contact_cost,"
                " outcome_value FROM decisions WHERE seq = %s",
                (seq,),
            ).fetchone()
            assert found is not None
            revenue, n, is_control, fixed, rate, contact, value = found
            reward = rule.with_outcomes(
                closing_reward(rule, revenue, n, Costs(bool(is_control), fixed, rate, contact)),
                value or 0.0,
            )
            last += 1
            conn.execute(
                "UPDATE decisions SET closed_seq = %s, closed_at = %s, reward = %s WHERE seq = %s",
                (last, now, reward, seq),
            )

    # ---- voiding -------------------------------------------------------------------------

    def void_decisions_job(
        self,
        now: float,
        event_ids: Sequence[str] = (),
        decided_between: tuple[float, float] | None = None,
    ) -> Any:
        def job(conn: Conn) -> int:
            n = 0
            for event_id in event_ids:
                n += conn.execute(
                    "UPDATE decisions SET voided_at = %s WHERE event_id = %s AND voided_at IS NULL",
                    (now, event_id),
                ).rowcount
            if decided_between is not None:
                n += conn.execute(
                    "UPDATE decisions SET voided_at = %s WHERE decided_at >= %s"
                    " AND decided_at <= %s AND voided_at IS NULL",
                    (now, *decided_between),
                ).rowcount
            return n

        return job

    def void_outcomes_job(
        self,
        now: float,
        outcome_ids: Sequence[str] = (),
        received_between: tuple[float, float] | None = None,
    ) -> Any:
        def job(conn: Conn) -> int:
            rows: list[tuple[Any, ...]] = []
            select = "SELECT outcome_id, event_id, status, revenue, type FROM outcomes WHERE "
            for oid in outcome_ids:
                rows += conn.execute(
                    select + "outcome_id = %s AND voided_at IS NULL FOR UPDATE", (oid,)
                ).fetchall()
            if received_between is not None:
                rows += conn.execute(
                    select + "received_at >= %s AND received_at <= %s AND voided_at IS NULL"
                    " FOR UPDATE",
                    received_between,
                ).fetchall()
            seen: set[str] = set()
            for oid, event_id, status, revenue, kind in rows:
                if oid in seen:
                    continue
                seen.add(oid)
                conn.execute("UPDATE outcomes SET voided_at = %s WHERE outcome_id = %s", (now, oid))
                if status != OutcomeStatus.ATTRIBUTED.value or not event_id:
                    continue
                conn.execute(
                    "UPDATE decisions SET n_outcomes = GREATEST(n_outcomes - 1, 0),"
                    " revenue = GREATEST(revenue - %s, 0),"
                    " outcome_value = COALESCE(outcome_value, 0) - %s WHERE event_id = %s",
                    (revenue, self.reward_rule.value_of(kind), event_id),
                )
                self.recompute_reward(conn, event_id)
            return len(seen)

        return job

    def recompute_reward(self, conn: Conn, event_id: str) -> None:
        row = conn.execute(
            "SELECT revenue, n_outcomes, is_control, fixed_cost, discount_rate, contact_cost,"
            " closed_seq, outcome_value FROM decisions WHERE event_id = %s",
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
            "UPDATE decisions SET reward = %s, revenue = %s WHERE event_id = %s",
            (reward, revenue, event_id),
        )


def _window(row: Sequence[Any]) -> tuple[Any, ...]:
    seq, decided, event_id, activated_at, closes, closed_seq, customer_id = row
    return (seq, event_id, customer_id, decided, activated_at, closes, closed_seq)


__all__ = ["LAST_CLOSED", "OutcomeJobs", "last_touch"]
