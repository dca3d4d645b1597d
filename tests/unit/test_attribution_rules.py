"""The attribution and reward rules, called directly: no database, no service."""

from __future__ import annotations

import random
import sqlite3

import pytest

from bandit.errors import Conflict, InvalidRequest, UnknownEvent
from bandit.log.sqlite import LastTouch
from bandit.outcomes import (
    Costs,
    DecisionWindow,
    PriorOutcome,
    attribution_status,
    check_named_decision,
    closes_at_outcome,
    closing_reward,
    duplicate_of,
    last_touch,
    outcome_time,
    recomputed_reward,
)
from bandit.records import OutcomeInput, OutcomeStatus
from bandit.rewards import RewardRule
from bandit.types import RewardMode

S = OutcomeStatus


def _o(
    occurred_at: float | None = None, customer_id: str = "", revenue: float = 10.0
) -> OutcomeInput:
    return OutcomeInput("o1", "e1", customer_id, "purchase", revenue, occurred_at)


def _d(
    seq: int = 1,
    customer: str = "c",
    decided: float = 0.0,
    activated: float | None = 10.0,
    closes: float | None = 20.0,
    closed_seq: int | None = None,
) -> DecisionWindow:
    return DecisionWindow(seq, f"e{seq}", customer, decided, activated, closes, closed_seq)


def test_a_repeated_outcome_is_a_duplicate_only_with_the_same_payload() -> None:
    o = _o()
    assert duplicate_of(o, "h", None) is None
    dup = duplicate_of(o, "h", PriorOutcome("h", "e7"))
    assert dup is not None
    assert (dup.status, dup.event_id) == (S.DUPLICATE, "e7")
    with pytest.raises(Conflict, match=r"^outcome_id: 'o1' was recorded before"):
        duplicate_of(o, "h2", PriorOutcome("h", "e7"))


@pytest.mark.parametrize(("occurred_at", "expected"), [(None, 100.0), (40.0, 40.0), (105.0, 105.0)])
def test_outcome_time_is_its_own_or_now_within_the_skew(
    occurred_at: float | None, expected: float
) -> None:
    assert outcome_time(_o(occurred_at), now=100.0, max_future_skew=5.0) == expected


def test_an_outcome_too_far_in_the_future_is_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"^occurred_at: is 6 s in the future"):
        outcome_time(_o(106.0), now=100.0, max_future_skew=5.0)


def test_a_named_decision_must_exist_and_precede_the_outcome() -> None:
    check_named_decision("e1", _d(decided=5.0), 5.0)
    with pytest.raises(UnknownEvent):
        check_named_decision("e1", None, 5.0)
    with pytest.raises(InvalidRequest, match=r"^occurred_at: is before the decision"):
        check_named_decision("e1", _d(decided=5.0), 4.9)


@pytest.mark.parametrize(
    ("decision", "occurred", "status"),
    [
        (_d(activated=None), 15.0, S.UNATTRIBUTED),  # never activated
        (_d(), 9.9, S.UNATTRIBUTED),  # before activation
        (_d(), 10.0, S.ATTRIBUTED),  # the window includes its start
        (_d(), 19.9, S.ATTRIBUTED),
        (_d(), 20.0, S.LATE),  # … and excludes its end
        (_d(closed_seq=3), 15.0, S.LATE),  # closed already (first-outcome mode, say)
    ],
)
def test_attribution_status(decision: DecisionWindow, occurred: float, status: S) -> None:
    assert attribution_status(decision, "", occurred) is status
    assert attribution_status(decision, "c", occurred) is status


def test_an_outcome_for_another_customer_is_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"^customer_id: does not match"):
        attribution_status(_d(), "someone-else", 15.0)


def test_last_touch_takes_the_latest_activated_open_decision_of_the_customer() -> None:
    ds = [
        _d(1, activated=10.0, closes=50.0),
        _d(2, activated=20.0, closes=30.0),
        _d(3, customer="other", activated=25.0, closes=90.0),
        _d(4, activated=None, closes=None),  # deferred, never activated
    ]
    assert last_touch(ds, "c", 25.0) == ds[1]
    assert last_touch(ds, "c", 30.0) == ds[0]  # the later one's window has ended
    assert last_touch(ds, "c", 5.0) is None
    tie = [_d(5, activated=20.0, closes=40.0), _d(6, activated=20.0, closes=40.0)]
    assert last_touch(tie, "c", 21.0) == tie[1]  # ties go to the later log position


def test_the_sql_last_touch_is_the_same_rule() -> None:
    rng = random.Random(7)
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE decisions (seq INTEGER PRIMARY KEY, customer_id TEXT,"
        " activated_at REAL, window_closes_at REAL)"
    )
    ds = []
    for seq in range(1, 400):
        at = None if rng.random() < 0.2 else float(rng.randrange(100))
        closes = None if at is None else at + rng.choice([1.0, 5.0, 30.0])
        d = _d(seq, customer=f"c{rng.randrange(5)}", activated=at, closes=closes)
        ds.append(d)
        conn.execute("INSERT INTO decisions VALUES (?,?,?,?)", (seq, d.customer_id, at, closes))
    rule = LastTouch()
    for _ in range(500):
        customer, occurred = f"c{rng.randrange(6)}", float(rng.randrange(140))
        pure = last_touch(ds, customer, occurred)
        assert rule.find(conn, customer, occurred) == (None if pure is None else pure.seq)


def test_only_an_attributed_outcome_closes_in_first_outcome_mode() -> None:
    first = RewardRule(mode=RewardMode.FIRST_OUTCOME)
    assert closes_at_outcome(first, S.ATTRIBUTED)
    assert not closes_at_outcome(first, S.LATE)
    assert not closes_at_outcome(RewardRule(), S.ATTRIBUTED)


def test_rewards_are_revenue_less_costs_and_revoided_revenue_is_zero() -> None:
    rule = RewardRule()
    costs = Costs(is_control=False, fixed_cost=5.0, discount_rate=0.0, contact_cost=0.5)
    reward = closing_reward(rule, 80.0, 1, costs)
    assert reward == rule.reward(
        revenue=80.0,
        n_outcomes=1,
        is_control=False,
        fixed_cost=5.0,
        discount_rate=0.0,
        contact_cost=0.5,
    )
    assert recomputed_reward(rule, 1e-12, 0, costs) == (closing_reward(rule, 0.0, 0, costs), 0.0)
    assert recomputed_reward(rule, 80.0, 1, costs) == (reward, 80.0)
