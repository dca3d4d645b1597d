"""Outcome types with money values (an unsubscribe worth −20) reach the learned reward, and
leave it again when the outcome is voided."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandit.eligibility import ChooseInput
from bandit.records import OutcomeInput, Windows
from bandit.rewards import RewardRule
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, TreatmentRef, Trigger

RULE = RewardRule(outcome_values=(("complaint", -50.0), ("unsubscribe", -20.0)))


def test_a_negative_outcome_is_worth_its_value_in_the_reward(tmp_path: Path, log_url: str) -> None:
    clock = ManualClock(1_800_000_000.0)
    svc = DecisionService(
        ServiceConfig(
            data_dir=tmp_path,
            log=log_url,
            policy="vw",
            exploration="--epsilon 0.5",
            background=False,
            event_id_prefix="00000000000000f1",
            reward_rule=RULE,
            windows=Windows(default=3600.0),
        ),
        clock,
    )
    svc.start()
    try:
        req = ChooseInput(
            Customer("c1"),
            Trigger("login"),
            (Offer("a"),),
            (Channel("email", contact_cost=0.5),),
            treatments=(TreatmentRef("a", "email"),),
        )
        picked = [svc.choose(req) for _ in range(30)]
        treated = [d for d in picked if not d.is_control][:2]
        assert len(treated) == 2
        annoyed, bought = treated
        for i, (d, kind, revenue) in enumerate(
            [(annoyed, "unsubscribe", 0.0), (annoyed, "complaint", 0.0), (bought, "purchase", 30.0)]
        ):
            svc.record_outcome(OutcomeInput(f"o{i}", d.event_id, "", kind, revenue, None))
        clock.advance(7200.0)
        svc.close_due_windows()
        assert svc.get_decision(annoyed.event_id).reward == pytest.approx(0.0 - 0.5 - 70.0)
        assert svc.get_decision(bought.event_id).reward == pytest.approx(30.0 - 0.5)
        svc.log.void_outcomes(clock.now(), ["o1"])  # type: ignore[attr-defined]
        assert svc.get_decision(annoyed.event_id).reward == pytest.approx(-0.5 - 20.0)
    finally:
        svc.stop()


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ((("unsubscribe", float("nan")),), r"outcome_values\['unsubscribe'\]"),
        ((("unsubscribe", -1e9),), "max_learned_revenue"),
        ((("", -1.0),), r"outcome_values\[''\]"),
    ],
)
def test_bad_outcome_values_are_refused(values: tuple[tuple[str, float], ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RewardRule(outcome_values=values)
