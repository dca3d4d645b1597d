"""The number policy, bounded rewards, the learner's label guard and the score fallback."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.eligibility import ChooseInput, Limits, check_features
from bandit.errors import InvalidRequest
from bandit.learner import VWPolicy, vw_arguments
from bandit.numbers import MAX_MAGNITUDE, TINY, check_number, flush, in_range
from bandit.records import OutcomeInput, Windows
from bandit.rewards import RewardRule
from bandit.service import FALLBACK_POLICY, DecisionService, ManualClock, ServiceConfig, learnable
from bandit.types import Channel, Context, Customer, Offer, Treatment, Trigger
from bandit.vwformat import format_number

BAD = [
    (math.nan, "finite"),
    (math.inf, "finite"),
    (1e300, "within"),
    (-1e16, "within"),
    (1e-31, "at least"),
    (10**400, "within"),
]


@pytest.mark.parametrize(("value", "problem"), BAD)
def test_check_number_rejects_naming_the_field(value: float, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=rf"^x\.y: .*{problem}"):
        check_number(value, "x.y")


@pytest.mark.parametrize("value", [0.0, 1.0, -MAX_MAGNITUDE, MAX_MAGNITUDE, TINY, -3.5e-20])
def test_check_number_accepts_the_range(value: float) -> None:
    check_number(value, "x")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_flushed_number_in_range_survives_vw(value: float) -> None:
    """What passes the policy predicts finite pmfs through VW's text parser and float32."""
    x = flush(value)
    if not in_range(x):
        return
    p = VWPolicy(vw_arguments("--squarecb", ["co"], seed=0))
    shared = f"shared |c a:{format_number(x)} |t @type=t"
    actions = ["|o @control |h @control", f"|o @id=a b:{format_number(x)} |h @id=e"]
    p.learn(shared, actions, 1, -1.0, 0.5)
    pmf = p.predict(shared, actions)
    assert all(math.isfinite(q) for q in pmf)
    assert math.isclose(sum(pmf), 1.0, rel_tol=1e-5)


def test_check_features_applies_the_policy() -> None:
    with pytest.raises(InvalidRequest, match=r"^customer\.features\['ltv'\]: must be within"):
        check_features({"ltv": 1e20}, "customer", Limits())


def test_reward_clip() -> None:
    rule = RewardRule(max_learned_revenue=100.0)
    assert rule.clip(50.0) == 50.0
    assert rule.clip(1e300) == 100.0
    assert rule.reward(revenue=1e300, n_outcomes=1, is_control=False, discount_rate=0.5) == 50.0
    # costs beyond the bound leave the reward at −bound, never −1e15
    assert rule.reward(revenue=0.0, n_outcomes=0, is_control=False, contact_cost=1e15) == -100.0
    with pytest.raises(ValueError, match="max_learned_revenue"):
        RewardRule(max_learned_revenue=math.inf)


def test_learnable_guards_labels_vw_cannot_hold() -> None:
    rule = RewardRule()
    assert learnable(10.0, 10.0, 0.5, rule)
    assert not learnable(math.nan, 0.0, 0.5, rule)
    assert not learnable(1e300, 0.0, 0.5, rule)
    assert not learnable(1.0, 0.0, math.nan, rule)


class _Broken:
    """A policy whose model went bad: NaN scores."""

    def __init__(self, value: float) -> None:
        self.args = ["--cb_explore_adf"]
        self.learned = 0
        self.value = value

    def scores(self, context: Context, treatments: tuple[Treatment, ...]) -> Sequence[float]:
        return [self.value] * len(treatments)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0.0])
def test_unusable_scores_never_reach_the_pmf(tmp_path: Path, value: float) -> None:
    cfg = ServiceConfig(data_dir=tmp_path, background=False, control_share=0.1)
    svc = DecisionService(cfg, ManualClock())
    svc.start()
    try:
        svc.decider.publish(_Broken(value), svc.model_version)  # type: ignore[arg-type]
        req = ChooseInput(
            Customer("c1", {"ltv": 1.0}),
            Trigger("login"),
            offers=[Offer("a"), Offer("b")],
            channels=[Channel("email")],
        )
        d = svc.choose(req)
        assert d.policy == FALLBACK_POLICY
        assert d.pmf == pytest.approx((1 / 3, 1 / 3, 1 / 3))
        assert svc.stats().score_fallbacks == 1
        assert svc.get_decision(d.event_id).decision == d
    finally:
        svc.stop()


def test_outcome_revenue_cap(tmp_path: Path) -> None:
    cfg = ServiceConfig(
        data_dir=tmp_path, background=False, max_revenue_per_outcome=1000.0, windows=Windows()
    )
    svc = DecisionService(cfg, ManualClock())
    svc.start()
    try:
        with pytest.raises(InvalidRequest, match=r"^revenue: is 1001; one outcome may carry"):
            svc.record_outcome(OutcomeInput("o1", "", "c1", "purchase", 1001.0, None))
        svc.record_outcome(OutcomeInput("o2", "", "c1", "purchase", 1000.0, None))
    finally:
        svc.stop()
