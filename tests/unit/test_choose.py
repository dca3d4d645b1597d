"""The Choose path as a list of steps: its order, and a new rule as one more element."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bandit.choose import (
    CandidatesStep,
    ConsentStep,
    ControlFloorStep,
    Draft,
    EventIds,
    HoldoutStep,
    LogStep,
    Pipeline,
    RetryStep,
    SampleStep,
    ScoreStep,
)
from bandit.eligibility import ChooseInput
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, Trigger

REQ = ChooseInput(
    Customer("c1", {"consent_sms": False}),
    Trigger("login"),
    offers=[Offer("a"), Offer("b")],
    channels=[Channel("email"), Channel("sms")],
)


PREFIX = "00000000000000c1"
"""The service's event-id key: fixed, so every run draws the same ids."""


@pytest.fixture
def svc(tmp_path: Path, log_url: str) -> Iterator[DecisionService]:
    config = ServiceConfig(data_dir=tmp_path, background=False, event_id_prefix=PREFIX, log=log_url)
    service = DecisionService(config, ManualClock())
    service.start()
    yield service
    service.stop()


def test_the_service_runs_the_steps_in_order(svc: DecisionService) -> None:
    assert [type(s) for s in svc.choose_pipeline.steps] == [
        CandidatesStep,
        ConsentStep,
        RetryStep,
        HoldoutStep,
        ScoreStep,
        ControlFloorStep,
        SampleStep,
        LogStep,
    ]


class NoOfferB:
    """A stand-in contact policy: offer ``b`` is suppressed for everyone."""

    def __call__(self, draft: Draft) -> None:
        draft.candidates = tuple(
            t for t in draft.candidates if t.offer is None or t.offer.id != "b"
        )


def test_a_new_rule_is_one_more_step(svc: DecisionService) -> None:
    steps = list(svc.choose_pipeline.steps)
    steps.insert(steps.index(next(s for s in steps if isinstance(s, ConsentStep))) + 1, NoOfferB())
    svc.choose_pipeline = Pipeline(steps)
    d = svc.choose(REQ)
    assert [t.ref.key for t in d.treatments] == ["control", "a@email"]  # consent, then the rule
    assert sum(d.pmf) == pytest.approx(1.0)
    assert svc.get_decision(d.event_id).decision == d


def test_a_logged_request_id_answers_before_anything_is_decided(svc: DecisionService) -> None:
    req = ChooseInput(REQ.customer, REQ.trigger, REQ.offers, REQ.channels, request_id="r1")
    first = svc.choose(req)
    decision, commit = svc.submit_choice(req)
    assert commit is None
    assert decision == first
    ids = EventIds(PREFIX)  # the service's key: the same ids, in the same order
    assert svc.choose(REQ).event_id == [ids.next(), ids.next()][1]  # the retry drew no id
