"""The catalogue object: interned by content, checked and crossed once, never stale."""

from __future__ import annotations

import pytest

from bandit.catalogue import Catalogue, Catalogues
from bandit.eligibility import ChooseInput, Limits, build_candidates, check_catalogue
from bandit.errors import InvalidRequest, TooLarge
from bandit.types import CONTROL_TREATMENT, Channel, Customer, Offer, Trigger

OFFERS = (Offer("a", {"k": "x"}), Offer("b", discount_rate=0.1))
CHANNELS = (Channel("email"), Channel("sms", contact_cost=0.05))


def _req(customer: Customer, cat: Catalogue) -> ChooseInput:
    return ChooseInput(customer, Trigger("login"), catalogue=cat)


def test_a_catalogue_is_crossed_once() -> None:
    cat = Catalogue(OFFERS, CHANNELS)
    first = build_candidates(_req(Customer("c1"), cat), Limits())
    again = build_candidates(_req(Customer("c2"), cat), Limits())
    assert first.treatments is again.treatments is cat.treatments
    assert first.treatments[0] is CONTROL_TREATMENT
    assert [t.ref.key for t in first.treatments[1:]] == ["a@email", "a@sms", "b@email", "b@sms"]


def test_a_consent_filtered_crossing_is_made_once_per_catalogue() -> None:
    cat = Catalogue(OFFERS, CHANNELS)
    first = build_candidates(_req(Customer("c1", {"consent_sms": False}), cat), Limits())
    again = build_candidates(_req(Customer("c2", {"consent_sms": False}), cat), Limits())
    assert first.treatments is again.treatments
    assert [t.ref.key for t in first.treatments] == ["control", "a@email", "b@email"]
    assert len(build_candidates(_req(Customer("c3"), cat), Limits()).treatments) == 5


def test_equal_content_is_one_catalogue_whatever_the_objects() -> None:
    table = Catalogues()
    one = table.of(OFFERS, CHANNELS)
    copies = [Offer("a", {"k": "x"}), Offer("b", discount_rate=0.1)]
    assert table.of(copies, [Channel("email"), Channel("sms", contact_cost=0.05)]) is one
    assert table.of(list(OFFERS), list(CHANNELS)) is one
    assert len(table) == 1


@pytest.mark.parametrize(
    "offers",
    [
        (Offer("a", {"k": "y"}), OFFERS[1]),  # a feature's value
        (Offer("a", {"k": True}), OFFERS[1]),  # True is not "x"
        (Offer("a", {"k": "x"}, fixed_cost=-0.0), OFFERS[1]),  # -0.0 == 0.0, encoded apart
        (OFFERS[1], OFFERS[0]),  # the order
        (OFFERS[0],),  # one fewer
    ],
)
def test_other_content_is_another_catalogue(offers: tuple[Offer, ...]) -> None:
    table = Catalogues()
    one = table.of(OFFERS, CHANNELS)
    other = table.of(offers, CHANNELS)
    assert other is not one
    assert other.offers == offers


def test_numbers_of_different_types_are_different_content() -> None:
    table = Catalogues()
    ints = table.of([Offer("a", {"n": 1})], [Channel("e")])
    assert table.of([Offer("a", {"n": 1.0})], [Channel("e")]) is not ints
    assert table.of([Offer("a", {"n": True})], [Channel("e")]) is not ints


def test_an_unhashable_value_gives_a_catalogue_of_its_own() -> None:
    table = Catalogues()
    tags = Offer("a", {"t": ["x"]})  # type: ignore[dict-item]
    cat = table.of([tags], [Channel("e")])
    assert cat.offers == (tags,)
    assert len(table) == 0


def test_a_wire_key_interns_once_and_the_table_is_bounded() -> None:
    table = Catalogues(size=2)
    made: list[str] = []

    def make(name: str) -> tuple[list[Offer], list[Channel]]:
        made.append(name)
        return [Offer(name)], [Channel("e")]

    first = table.get(b"one", lambda: make("one"))
    assert table.get(b"one", lambda: make("one")) is first
    table.get(b"two", lambda: make("two"))
    table.get(b"three", lambda: make("three"))  # full: cleared
    assert table.get(b"one", lambda: make("one")) is not first
    assert made == ["one", "two", "three", "one"]
    assert len(table) <= 2


def test_entities_are_interned_by_key() -> None:
    table = Catalogues()
    offer = table.entity(("offer", b"a"), lambda: Offer("a"))
    assert table.entity(("offer", b"a"), lambda: Offer("other")) is offer


def test_a_checked_catalogue_is_checked_again_under_tighter_limits() -> None:
    cat = Catalogue(OFFERS, CHANNELS)
    check_catalogue(cat, Limits())
    assert cat.checked_under == Limits()
    with pytest.raises(TooLarge, match="has 1 features; the limit is 0"):
        check_catalogue(cat, Limits(max_features=0))


def test_a_changed_list_is_another_catalogue_and_checked_again() -> None:
    table = Catalogues()
    offers = list(OFFERS)
    check_catalogue(table.of(offers, CHANNELS), Limits())
    offers.append(Offer("a"))  # the same list object, now with a duplicate id
    with pytest.raises(InvalidRequest, match="duplicate id"):
        check_catalogue(table.of(offers, CHANNELS), Limits())


def test_a_bad_catalogue_fails_every_time() -> None:
    cat = Catalogue((Offer("a", fixed_cost=-1.0),), CHANNELS)
    for _ in range(2):
        with pytest.raises(InvalidRequest, match=r"offers\[0\].fixed_cost"):
            check_catalogue(cat, Limits())


def test_a_request_with_a_catalogue_takes_its_offers_and_channels() -> None:
    cat = Catalogue(OFFERS, CHANNELS)
    req = _req(Customer("c"), cat)
    assert req.offers is cat.offers
    assert req.channels is cat.channels
    assert req == ChooseInput(Customer("c"), Trigger("login"), OFFERS, CHANNELS)
    with pytest.raises(ValueError, match="takes its offers"):
        ChooseInput(Customer("c"), Trigger("login"), [Offer("z")], catalogue=cat)


def test_the_service_interns_in_process_lists_by_value(tmp_path: object) -> None:
    from pathlib import Path

    from bandit.service import DecisionService, ManualClock, ServiceConfig

    svc = DecisionService(
        ServiceConfig(data_dir=Path(str(tmp_path)), background=False, policy="vw"), ManualClock()
    )
    svc.start()
    try:
        first = svc.choose(ChooseInput(Customer("c1"), Trigger("t"), list(OFFERS), list(CHANNELS)))
        copies = [Offer("a", {"k": "x"}), Offer("b", discount_rate=0.1)]
        again = svc.choose(ChooseInput(Customer("c2"), Trigger("t"), copies, list(CHANNELS)))
        assert first.treatments is again.treatments  # one catalogue, crossed once
        assert len(svc.catalogues) == 1
    finally:
        svc.stop()
