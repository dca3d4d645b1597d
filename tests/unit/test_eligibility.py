"""Candidates: the checks and the eligibility rules (the catalogue object: test_catalogue)."""

from __future__ import annotations

import pytest

from bandit.eligibility import ChooseInput, Limits, build_candidates, consented, without_channels
from bandit.errors import InvalidRequest, TooLarge
from bandit.types import Channel, Customer, Offer, TreatmentRef, Trigger

OFFERS = (Offer("a", {"k": "x"}), Offer("b", discount_rate=0.1))
CHANNELS = (Channel("email"), Channel("sms", contact_cost=0.05))


def _req(customer: Customer, offers: object = OFFERS, channels: object = CHANNELS) -> ChooseInput:
    return ChooseInput(customer, Trigger("login"), offers, channels)  # type: ignore[arg-type]


def test_consent_filters_channels() -> None:
    no_sms = build_candidates(_req(Customer("c1", {"consent_sms": False})), Limits())
    assert [t.ref.key for t in no_sms.treatments[1:]] == ["a@email", "b@email"]
    everyone = build_candidates(_req(Customer("c2")), Limits())
    assert len(everyone.treatments) == 5


def test_lists_and_tuples_with_equal_content_give_equal_candidates() -> None:
    as_lists = build_candidates(_req(Customer("c"), list(OFFERS), list(CHANNELS)), Limits())
    as_tuples = build_candidates(_req(Customer("c")), Limits())
    assert as_lists.treatments == as_tuples.treatments


# ---- the rules themselves ------------------------------------------------------------------

EMAIL, SMS = CHANNELS
A, B = OFFERS


def _keys(req: ChooseInput) -> list[str]:
    return [t.ref.key for t in build_candidates(req, Limits()).treatments]


def test_candidates_are_control_then_every_offer_through_every_channel() -> None:
    assert _keys(_req(Customer("c"))) == ["control", "a@email", "a@sms", "b@email", "b@sms"]


def test_consent_false_removes_the_channel_and_anything_else_keeps_it() -> None:
    for value, kept in ((False, False), (True, True), ("false", True), (0, True)):
        keys = _keys(_req(Customer("c", {"consent_sms": value})))
        assert ("a@sms" in keys) is kept, value


def test_no_consent_at_all_leaves_control_only() -> None:
    c = Customer("c", {"consent_sms": False, "consent_email": False})
    assert _keys(_req(c)) == ["control"]


def test_exclusions_remove_treatments_and_keep_control() -> None:
    req = ChooseInput(
        Customer("c"), Trigger("t"), OFFERS, CHANNELS, excluded=[TreatmentRef("a", "sms")]
    )
    assert _keys(req) == ["control", "a@email", "b@email", "b@sms"]


def test_an_explicit_list_is_kept_in_order_without_duplicates_and_with_consent() -> None:
    refs = [TreatmentRef("b", "sms"), TreatmentRef("a", "email"), TreatmentRef("b", "sms")]
    req = ChooseInput(Customer("c"), Trigger("t"), OFFERS, CHANNELS, treatments=refs)
    assert _keys(req) == ["control", "b@sms", "a@email"]
    no_sms = ChooseInput(
        Customer("c", {"consent_sms": False}), Trigger("t"), OFFERS, CHANNELS, treatments=refs
    )
    assert _keys(no_sms) == ["control", "a@email"]


@pytest.mark.parametrize(
    ("req", "error", "match"),
    [
        (
            ChooseInput(None, Trigger("t"), OFFERS, CHANNELS),
            InvalidRequest,
            "^customer: is required",
        ),
        (
            ChooseInput(Customer("c"), None, OFFERS, CHANNELS),
            InvalidRequest,
            "^trigger: is required",
        ),
        (
            ChooseInput(Customer("c"), Trigger("t"), (), CHANNELS),
            InvalidRequest,
            "^offers: at least one offer",
        ),
        (
            ChooseInput(Customer("c"), Trigger("t"), OFFERS, ()),
            InvalidRequest,
            "^channels: at least one channel",
        ),
        (
            ChooseInput(
                Customer("c"), Trigger("t"), OFFERS, CHANNELS, excluded=[TreatmentRef("", "")]
            ),
            InvalidRequest,
            r"^excluded\[0\]: control cannot be excluded",
        ),
        (
            ChooseInput(
                Customer("c"), Trigger("t"), OFFERS, CHANNELS, treatments=[TreatmentRef("z", "sms")]
            ),
            InvalidRequest,
            r"^treatments\[0\]\.offer_id: names unknown offer",
        ),
        (
            ChooseInput(
                Customer("c"),
                Trigger("t"),
                OFFERS,
                CHANNELS,
                treatments=[TreatmentRef("a", "sms")],
                excluded=[TreatmentRef("a", "sms")],
            ),
            InvalidRequest,
            "^excluded: every treatment is excluded",
        ),
    ],
)
def test_bad_requests_name_the_field(req: ChooseInput, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build_candidates(req, Limits())


def test_too_many_treatments_is_too_large() -> None:
    with pytest.raises(TooLarge, match="2 offers × 2 channels make 4 treatments; the limit is 3"):
        build_candidates(_req(Customer("c")), Limits(max_treatments=3))


@pytest.mark.parametrize(
    "customer",
    [Customer("c"), Customer("c", {"consent_sms": False}), Customer("c", {"consent_email": False})],
)
@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"excluded": [TreatmentRef("b", "email")]},
        {"treatments": [TreatmentRef("b", "sms"), TreatmentRef("a", "email")]},
    ],
)
def test_consent_as_a_later_step_gives_the_same_candidates(
    customer: Customer, shape: dict[str, list[TreatmentRef]]
) -> None:
    req = ChooseInput(customer, Trigger("t"), OFFERS, list(CHANNELS), **shape)  # type: ignore[arg-type]
    at_once = build_candidates(req, Limits()).treatments
    later = build_candidates(req, Limits(), consent=False).treatments
    declined = [c.id for c in CHANNELS if not consented(customer, c.id)]
    if declined:
        later = without_channels(req, later, declined)
    assert later == at_once
