"""Candidates: checks, consent, and the per-catalogue caches that must never serve stale data."""

from __future__ import annotations

import pytest

from bandit.eligibility import ChooseInput, Limits, build_candidates
from bandit.errors import InvalidRequest, TooLarge
from bandit.types import CONTROL_TREATMENT, Channel, Customer, Offer, Trigger

OFFERS = (Offer("a", {"k": "x"}), Offer("b", discount_rate=0.1))
CHANNELS = (Channel("email"), Channel("sms", contact_cost=0.05))


def _req(customer: Customer, offers: object = OFFERS, channels: object = CHANNELS) -> ChooseInput:
    return ChooseInput(customer, Trigger("login"), offers, channels)  # type: ignore[arg-type]


def test_a_catalogue_tuple_gives_the_same_candidates_object_each_time() -> None:
    first = build_candidates(_req(Customer("c1")), Limits())
    again = build_candidates(_req(Customer("c2")), Limits())
    assert first.treatments is again.treatments  # crossed once per catalogue
    assert first.treatments[0] is CONTROL_TREATMENT
    assert [t.ref.key for t in first.treatments[1:]] == ["a@email", "a@sms", "b@email", "b@sms"]


def test_consent_filters_channels_without_touching_the_cached_crossing() -> None:
    no_sms = build_candidates(_req(Customer("c1", {"consent_sms": False})), Limits())
    assert [t.ref.key for t in no_sms.treatments[1:]] == ["a@email", "b@email"]
    everyone = build_candidates(_req(Customer("c2")), Limits())
    assert len(everyone.treatments) == 5


def test_lists_and_tuples_with_equal_content_give_equal_candidates() -> None:
    as_lists = build_candidates(_req(Customer("c"), list(OFFERS), list(CHANNELS)), Limits())
    as_tuples = build_candidates(_req(Customer("c")), Limits())
    assert as_lists.treatments == as_tuples.treatments


def test_a_checked_catalogue_is_checked_again_under_tighter_limits() -> None:
    build_candidates(_req(Customer("c")), Limits())
    with pytest.raises(TooLarge, match="has 1 features; the limit is 0"):
        build_candidates(_req(Customer("c")), Limits(max_features=0))


def test_a_changed_list_is_checked_again() -> None:
    offers = list(OFFERS)
    build_candidates(_req(Customer("c"), offers), Limits())
    offers.append(Offer("a"))  # the same list object, now with a duplicate id
    with pytest.raises(InvalidRequest, match="duplicate id"):
        build_candidates(_req(Customer("c"), offers), Limits())


def test_a_consent_filtered_catalogue_is_crossed_once() -> None:
    no_sms = Customer("c1", {"consent_sms": False})
    first = build_candidates(_req(no_sms), Limits())
    again = build_candidates(_req(Customer("c2", {"consent_sms": False})), Limits())
    assert first.treatments is again.treatments


def test_list_catalogues_from_in_process_callers_are_crossed_once() -> None:
    offers, channels = list(OFFERS), list(CHANNELS)
    first = build_candidates(_req(Customer("c"), offers, channels), Limits())
    again = build_candidates(_req(Customer("d"), list(OFFERS), list(CHANNELS)), Limits())
    assert first.treatments is again.treatments  # keyed by the (same) elements
