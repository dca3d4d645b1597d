"""Attribution and reward rules as pure functions over records.

The decision log (:mod:`bandit.log.sqlite`) reads the records an outcome concerns, asks these
rules what to do, and writes the answer in one atomic read-modify-write; the rules never see
a database, so a test (or another backend) calls them directly.

The rules, in the order an outcome meets them:

1. **Deduplication** (:func:`duplicate_of`): an outcome id seen before with the same payload
   is a duplicate and changes nothing; with a different payload it is a conflict.
2. **Clock skew** (:func:`outcome_time`): an outcome without a time happened when it was
   received; one further in the future than the allowed skew is refused.
3. **The decision it names** (:func:`check_named_decision`): an outcome naming an event id
   needs that decision, and cannot have happened before it was made.
4. **Last touch** (:func:`last_touch`): an outcome naming only a customer belongs to the
   customer's most recent *activated* decision whose window is open when it happened.
5. **Status** (:func:`attribution_status`): attributed inside the window, late after it (or
   once the decision is closed: stored, never learned), unattributed before activation.
6. **First-outcome closing** (:func:`closes_at_outcome`): under
   :attr:`~bandit.types.RewardMode.FIRST_OUTCOME` an attributed outcome closes its decision.
7. **Rewards** (:func:`closing_reward`, :func:`recomputed_reward`): from the attributed
   revenue and the costs, by the :class:`~bandit.rewards.RewardRule`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bandit.errors import Conflict, InvalidRequest, UnknownEvent, quote
from bandit.records import OutcomeInput, OutcomeResult, OutcomeStatus
from bandit.rewards import RewardRule
from bandit.types import RewardMode


@dataclass(frozen=True, slots=True)
class DecisionWindow:
    """What attribution needs of a logged decision."""

    seq: int
    event_id: str
    customer_id: str
    decided_at: float
    activated_at: float | None
    window_closes_at: float | None
    closed_seq: int | None


@dataclass(frozen=True, slots=True)
class PriorOutcome:
    """An outcome already stored under the same outcome id."""

    payload_hash: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Costs:
    """What a closing decision's reward is computed from, besides its outcomes."""

    is_control: bool
    fixed_cost: float
    discount_rate: float
    contact_cost: float


def duplicate_of(
    outcome: OutcomeInput, payload_hash: str, prior: PriorOutcome | None
) -> OutcomeResult | None:
    """The result of a duplicate (nothing to write), or ``None`` for a new outcome id.

    >>> o = OutcomeInput("o1", "e1", "", "purchase", 80.0, None)
    >>> duplicate_of(o, "h", None) is None
    True
    >>> duplicate_of(o, "h", PriorOutcome("h", "e1")).status
    <OutcomeStatus.DUPLICATE: 'duplicate'>
    >>> duplicate_of(o, "h", PriorOutcome("other", "e1"))
    Traceback (most recent call last):
    ...
    bandit.errors.Conflict: outcome_id: 'o1' was recorded before with a different payload
    """
    if prior is None:
        return None
    if prior.payload_hash != payload_hash:
        raise Conflict(
            "outcome_id",
            f"{quote(outcome.outcome_id)} was recorded before with a different payload",
        )
    return OutcomeResult(outcome.outcome_id, OutcomeStatus.DUPLICATE, prior.event_id)


def outcome_time(outcome: OutcomeInput, now: float, max_future_skew: float) -> float:
    """When the outcome happened: its ``occurred_at``, or ``now`` without one; refused when
    more than ``max_future_skew`` seconds ahead of ``now``.

    >>> outcome_time(OutcomeInput("o", "e", "", "t", 0.0, None), 100.0, 5.0)
    100.0
    >>> outcome_time(OutcomeInput("o", "e", "", "t", 0.0, 106.0), 100.0, 5.0)
    Traceback (most recent call last):
    ...
    bandit.errors.InvalidRequest: occurred_at: is 6 s in the future (allowed skew 5 s)
    """
    occurred = now if outcome.occurred_at is None else outcome.occurred_at
    if occurred > now + max_future_skew:
        raise InvalidRequest(
            "occurred_at",
            f"is {occurred - now:.0f} s in the future (allowed skew {max_future_skew:.0f} s)",
        )
    return occurred


def check_named_decision(event_id: str, decision: DecisionWindow | None, occurred: float) -> None:
    """An outcome naming ``event_id`` needs that decision, made before the outcome."""
    if decision is None:
        raise UnknownEvent(event_id)
    if occurred < decision.decided_at:
        raise InvalidRequest("occurred_at", "is before the decision it names was made")


def is_open_at(decision: DecisionWindow, occurred: float) -> bool:
    """Activated, and ``activated_at <= occurred < window_closes_at``."""
    return (
        decision.activated_at is not None
        and decision.window_closes_at is not None
        and decision.activated_at <= occurred < decision.window_closes_at
    )


def last_touch(
    decisions: Iterable[DecisionWindow], customer_id: str, occurred: float
) -> DecisionWindow | None:
    """The customer's most recent *activated* decision whose window is open at ``occurred``.

    Control decisions count too: an outcome after a control decision is control's revenue,
    which is what makes incremental revenue measurable. Ties on ``activated_at`` go to the
    later log position. (:class:`bandit.log.sqlite.LastTouch` is this rule in SQL.)

    >>> w = lambda seq, at, closes: DecisionWindow(seq, f"e{seq}", "c", at, at, closes, None)
    >>> last_touch([w(1, 10.0, 50.0), w(2, 20.0, 30.0), w(3, 20.0, 60.0)], "c", 25.0).seq
    3
    >>> last_touch([w(1, 10.0, 50.0), w(2, 20.0, 30.0)], "c", 35.0).seq
    1
    >>> last_touch([w(1, 10.0, 50.0)], "c", 50.0) is None
    True
    """
    best: DecisionWindow | None = None
    for d in decisions:
        if d.customer_id != customer_id or not is_open_at(d, occurred):
            continue
        assert d.activated_at is not None
        if best is None or (d.activated_at, d.seq) > (best.activated_at or 0.0, best.seq):
            best = d
    return best


def attribution_status(
    decision: DecisionWindow, customer_id: str, occurred: float
) -> OutcomeStatus:
    """What an outcome that happened at ``occurred`` is to ``decision``.

    A ``customer_id`` given with the outcome must be the decision's. Before activation (or
    never activated) the decision was not shown yet: unattributed. At or after the window's
    end, or once the decision is closed: late (stored, never learned). Otherwise attributed.

    >>> d = DecisionWindow(1, "e1", "c", 0.0, 10.0, 20.0, None)
    >>> [attribution_status(d, "c", t).value for t in (5.0, 10.0, 19.9, 20.0)]
    ['unattributed', 'attributed', 'attributed', 'late']
    >>> attribution_status(d, "other", 15.0)
    Traceback (most recent call last):
    ...
    bandit.errors.InvalidRequest: customer_id: does not match the customer of decision 'e1'
    """
    if customer_id and customer_id != decision.customer_id:
        raise InvalidRequest(
            "customer_id", f"does not match the customer of decision {quote(decision.event_id)}"
        )
    if decision.activated_at is None or occurred < decision.activated_at:
        return OutcomeStatus.UNATTRIBUTED  # never shown (yet): not its effect
    if decision.closed_seq is not None or occurred >= (decision.window_closes_at or 0.0):
        return OutcomeStatus.LATE
    return OutcomeStatus.ATTRIBUTED


def closes_at_outcome(rule: RewardRule, status: OutcomeStatus) -> bool:
    """Whether this outcome closes its decision at once (first-outcome mode, attributed)."""
    return status is OutcomeStatus.ATTRIBUTED and rule.mode is RewardMode.FIRST_OUTCOME


def closing_reward(rule: RewardRule, revenue: float, n_outcomes: int, costs: Costs) -> float:
    """The reward a decision closes with: its attributed revenue and outcome count, less its
    costs, by ``rule``."""
    return rule.reward(
        revenue=revenue,
        n_outcomes=n_outcomes,
        is_control=costs.is_control,
        fixed_cost=costs.fixed_cost,
        discount_rate=costs.discount_rate,
        contact_cost=costs.contact_cost,
    )


def recomputed_reward(
    rule: RewardRule, revenue: float, n_outcomes: int, costs: Costs
) -> tuple[float, float]:
    """A closed decision's reward and revenue again, after outcomes were voided: with no
    outcome left its revenue is 0 (whatever rounding left of the removed sums)."""
    if n_outcomes == 0:
        revenue = 0.0
    return closing_reward(rule, revenue, n_outcomes, costs), revenue


__all__ = [
    "Costs",
    "DecisionWindow",
    "PriorOutcome",
    "attribution_status",
    "check_named_decision",
    "closes_at_outcome",
    "closing_reward",
    "duplicate_of",
    "is_open_at",
    "last_touch",
    "outcome_time",
    "recomputed_reward",
]
