"""proto ↔ domain conversion round-trips, and every RPC goes through the error mapper."""

from __future__ import annotations

import math

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.catalogue import Catalogues
from bandit.choose_batch import BatchCustomer
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


# ---- ChooseBatchStream on the wire -------------------------------------------------------


@given(
    st.text(max_size=12),
    st.dictionaries(
        names,
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(10**6), 10**6),
            st.text(max_size=10),
            st.booleans(),
            st.lists(st.text(max_size=5), max_size=3).map(tuple),
        ),
        max_size=6,
    ),
)
def test_a_customer_written_as_bytes_parses_as_its_message(
    cid: str, features: dict[str, object]
) -> None:
    c = Customer(cid, freeze_features(features))  # type: ignore[arg-type]
    assert pb.Customer.FromString(cv.customer_to_wire(c)) == cv.customer_to_pb(c)
    # and an in-process batch reads it as a server does
    assert cv.customer_as_sent(c) == cv.customer_from_pb(cv.customer_to_pb(c))


def test_a_batch_written_as_bytes_reads_back_with_its_template_and_refusals() -> None:
    catalogues = Catalogues()
    template = cv.batch_template_to_pb(
        Trigger("t", {"a": 1.0}), [Offer("o")], [Channel("email")], defer_activation=True
    )
    people = [(Customer("c1", {"x": 1.0}), "r1"), (Customer("c2", {}), "")]
    raw = cv.batch_to_wire(template, people)
    assert pb.ChooseBatch.FromString(raw) == pb.ChooseBatch(
        template=template,
        customers=[
            pb.BatchCustomer(customer=cv.customer_to_pb(c), request_id=r) for c, r in people
        ],
    )
    tpl, customers = cv.batch_from_wire(raw, catalogues)
    assert tpl is not None
    assert tpl.customer is None
    assert tpl.trigger == Trigger("t", {"a": 1.0})
    assert tpl.defer_activation
    assert [(c.customer, c.request_id) for c in customers] == [
        (Customer("c1", {"x": 1.0}), "r1"),
        (Customer("c2", {}), ""),
    ]
    again, _ = cv.batch_from_wire(raw, catalogues)
    assert again is not None
    assert again.catalogue is tpl.catalogue  # interned by its wire bytes
    later, more = cv.batch_from_wire(cv.batch_to_wire(None, people[:1]), catalogues)
    assert later is None
    assert len(more) == 1
    bad = pb.ChooseBatch(
        customers=[
            pb.BatchCustomer(
                customer=pb.Customer(id="c", features={"x": pb.FeatureValue(number=math.inf)})
            ),
            pb.BatchCustomer(request_id="r"),
        ]
    ).SerializeToString()
    _, refused = cv.batch_from_wire(bad, catalogues)
    assert refused[0].customer is None
    assert str(refused[0].refused) == "customer.features['x']: must be a finite number, not inf"
    assert refused[1] == BatchCustomer(None, "r")
    with_customer = pb.ChooseBatch(template=pb.ChooseRequest(customer=pb.Customer(id="c")))
    with pytest.raises(InvalidRequest, match=r"template\.customer"):
        cv.batch_from_wire(with_customer.SerializeToString(), catalogues)
    with_id = pb.ChooseBatch(template=pb.ChooseRequest(request_id="x"))
    with pytest.raises(InvalidRequest, match=r"template\.request_id"):
        cv.batch_from_wire(with_id.SerializeToString(), catalogues)
    with pytest.raises(InvalidRequest, match="malformed ChooseBatch"):
        cv.batch_from_wire(b"\x0a\x05\xff", catalogues)


def test_batch_results_as_bytes_parse_as_their_messages() -> None:
    ctx = Context(Customer("c"), Trigger("t"))
    ts = (CONTROL_TREATMENT, Treatment(Offer("o"), Channel("h")))
    d = Decision("e1", ctx, ts, (0.25, 0.75), 1, "v1", "uplift:x", 0.0)
    rankings: dict[tuple[int, tuple[float, ...]], bytes] = {}
    raw = cv.batch_result_to_wire(
        [
            cv.stream_result_to_wire(0, d, rankings),
            cv.stream_error_to_wire(1, "INVALID_ARGUMENT", "customer: is required"),
            cv.stream_result_to_wire(2, d, rankings),
        ]
    )
    assert len(rankings) == 1
    assert pb.ChooseBatchResult.FromString(raw) == pb.ChooseBatchResult(
        results=[
            pb.ChooseStreamResult(index=0, decision=cv.choose_to_pb(d)),
            pb.ChooseStreamResult(
                index=1, error_code="INVALID_ARGUMENT", error="customer: is required"
            ),
            pb.ChooseStreamResult(index=2, decision=cv.choose_to_pb(d)),
        ]
    )
