"""proto ↔ domain conversion round-trips, and every RPC goes through the error mapper."""

from __future__ import annotations

import math

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.catalogue import Catalogues
from bandit.errors import (
    AlreadyActivated,
    Conflict,
    InvalidRequest,
    InvalidState,
    NotDeferred,
    NotReady,
    StorageError,
    TooLarge,
    UnknownEvent,
)
from bandit.numbers import flush
from bandit.records import Activation, ActivationInput, OutcomeInput
from bandit.types import (
    CONTROL_TREATMENT,
    Channel,
    Context,
    Customer,
    Decision,
    Offer,
    Treatment,
    Trigger,
    freeze_features,
)
from server import converters as cv
from server.errors import status_of
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.servicer import DecisionServicer

names = st.text(min_size=1, max_size=20)
values = st.one_of(
    # numbers as the wire leaves them: tiny magnitudes flushed to 0 (bandit.numbers)
    st.floats(allow_nan=False, allow_infinity=False).map(flush),
    st.text(max_size=20),
    st.booleans(),
    st.lists(st.text(max_size=10), max_size=3).map(tuple),
)
feature_maps = st.dictionaries(names, values, max_size=6).map(freeze_features)


@given(st.text(max_size=30), feature_maps)
def test_customer_round_trip(cid: str, features: dict[str, object]) -> None:
    c = Customer(cid, features)  # type: ignore[arg-type]
    assert cv.customer_from_pb(cv.customer_to_pb(c)) == c


@given(names, feature_maps, st.floats(0, 100).map(flush), st.floats(0, 1).map(flush))
def test_offer_round_trip(oid: str, features: object, fixed: float, rate: float) -> None:
    o = Offer(oid, features, fixed, rate)  # type: ignore[arg-type]
    assert cv.offer_from_pb(cv.offer_to_pb(o), 0) == o


@given(st.floats(0, 4_000_000_000))
def test_timestamps_round_trip_to_the_microsecond(t: float) -> None:
    assert math.isclose(cv.seconds_from_pb(cv.seconds_to_pb(t)), t, abs_tol=1e-6)


def test_outcome_round_trip() -> None:
    o = OutcomeInput("o1", "e1", "c1", "purchase", 12.5, 1_700_000_000.25)
    assert cv.outcome_from_pb(cv.outcome_to_pb(o)) == o
    o2 = OutcomeInput("o1", "", "c1", "click", 0.0, None)
    assert cv.outcome_from_pb(cv.outcome_to_pb(o2)) == o2


def test_activation_round_trip() -> None:
    for a in (ActivationInput("e1", 1_700_000_000.25), ActivationInput("e2"), ActivationInput("")):
        assert cv.activation_from_pb(cv.activation_to_pb(a)) == a


@pytest.mark.parametrize(
    ("result", "status", "code"),
    [
        (AlreadyActivated("e"), pb.ACTIVATION_STATUS_ALREADY_ACTIVATED, "FAILED_PRECONDITION"),
        (NotDeferred("e"), pb.ACTIVATION_STATUS_NOT_DEFERRED, "FAILED_PRECONDITION"),
        (UnknownEvent("e"), pb.ACTIVATION_STATUS_UNKNOWN_EVENT, "NOT_FOUND"),
        (InvalidRequest("activated_at", "bad"), pb.ACTIVATION_STATUS_INVALID, "INVALID_ARGUMENT"),
        (StorageError("disk full"), pb.ACTIVATION_STATUS_FAILED, "UNAVAILABLE"),
        (InvalidState("event_id", "other"), pb.ACTIVATION_STATUS_FAILED, "FAILED_PRECONDITION"),
    ],
)
def test_a_refused_activation_carries_its_status_and_the_code_activate_answers(
    result: Exception, status: int, code: str
) -> None:
    r = cv.activation_result_to_pb(3, "e", result)  # type: ignore[arg-type]
    assert (r.index, r.event_id, r.status, r.error_code, r.error) == (
        3,
        "e",
        status,
        code,
        str(result),
    )
    assert not r.HasField("window_closes_at")


def test_an_activation_result_carries_its_window() -> None:
    r = cv.activation_result_to_pb(0, "e", Activation("e", "c", 10.0, 110.5))
    assert r.status == pb.ACTIVATION_STATUS_ACTIVATED
    assert cv.seconds_from_pb(r.window_closes_at) == 110.5
    assert (r.error_code, r.error) == ("", "")


def test_choose_response_ranks_like_the_plain_construction() -> None:
    treatments = (
        CONTROL_TREATMENT,
        Treatment(Offer("a"), Channel("x")),
        Treatment(Offer("b"), Channel("x")),
        Treatment(Offer("c"), Channel("y")),
    )
    d = Decision(
        "e",
        Context(Customer("c"), Trigger("t")),
        treatments,
        (0.1, 0.4, 0.1, 0.4),
        3,
        "v1",
        "p",
        0.0,
    )
    r = cv.choose_to_pb(d)
    order = sorted(range(4), key=lambda i: (-d.pmf[i], i))
    assert [(s.treatment.offer_id, s.probability, s.control) for s in r.ranking] == [
        (treatments[i].ref.offer_id, d.pmf[i], treatments[i].is_control) for i in order
    ]
    assert (r.chosen.offer_id, r.chosen.channel_id, r.propensity) == ("c", "y", 0.4)
    assert cv.choose_to_pb(d) == r  # the cached template gives the same answer again


pmfs = st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.25, 1 / 3, 0.5]), min_size=4, max_size=4)


@given(pmfs, st.integers(0, 3), st.text(max_size=40), st.text(max_size=12))
def test_the_wire_response_is_the_plain_response(
    weights: list[float], chosen: int, event_id: str, version: str
) -> None:
    treatments = (
        CONTROL_TREATMENT,
        Treatment(Offer("a"), Channel("x")),
        Treatment(Offer("b€"), Channel("x")),
        Treatment(Offer("c" * 200), Channel("y")),
    )
    weights[chosen] += 0.1  # the chosen treatment has mass
    total = sum(weights)
    d = Decision(
        event_id,
        Context(Customer("c"), Trigger("t")),
        treatments,
        tuple(w / total for w in weights),
        chosen,
        version,
        "vw:--squarecb",
        0.0,
    )
    assert pb.ChooseResponse.FromString(cv.choose_to_wire(d)) == cv.choose_to_pb(d)


def test_the_wire_request_converts_like_the_plain_request() -> None:
    offers = [pb.Offer(id=f"o{i}", fixed_cost=i, discount_rate=0.1) for i in range(3)]
    offers[0].features["kind"].text = "discount"
    offers[0].features["value"].number = 10.0
    channels = [pb.Channel(id="email", contact_cost=0.01), pb.Channel(id="sms")]
    req = pb.ChooseRequest(
        customer=pb.Customer(id="c1"),
        trigger=pb.Trigger(type="login"),
        offers=offers,
        channels=channels,
        excluded=[pb.TreatmentRef(offer_id="o1", channel_id="sms")],
        request_id="r1",
        defer_activation=True,
    )
    req.customer.features["ltv"].number = 12.5
    raw = req.SerializeToString()
    catalogues = Catalogues()
    first = cv.choose_from_wire(raw, catalogues)
    assert first == cv.choose_from_pb(req)
    again = cv.choose_from_wire(raw, catalogues)
    assert again.catalogue is first.catalogue is not None  # interned whole
    # Another catalogue (a feature changed) is converted afresh, not served from the cache;
    # the offer that did not change is the same object.
    req.offers[0].features["value"].number = 11.0
    changed = cv.choose_from_wire(req.SerializeToString(), catalogues)
    assert changed.catalogue is not first.catalogue
    assert changed.offers[0].features["value"] == 11.0
    assert changed.offers[1] is first.offers[1]
    assert changed == cv.choose_from_pb(req)
    assert len(catalogues) == 2


def test_every_rpc_is_error_mapped() -> None:
    rpcs = pb.DESCRIPTOR.services_by_name["DecisionService"].methods_by_name
    for name in rpcs:
        method = getattr(DecisionServicer, name)
        assert getattr(method, "__offerbandit_mapped__", False), name


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequest("f", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (TooLarge("f", "big"), grpc.StatusCode.INVALID_ARGUMENT),
        (UnknownEvent("e"), grpc.StatusCode.NOT_FOUND),
        (Conflict("f", "x"), grpc.StatusCode.ALREADY_EXISTS),
        (InvalidState("f", "x"), grpc.StatusCode.FAILED_PRECONDITION),
        (NotReady("x"), grpc.StatusCode.UNAVAILABLE),
        (StorageError("x"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_error_table(error: Exception, code: grpc.StatusCode) -> None:
    assert status_of(error) == code  # type: ignore[arg-type]
