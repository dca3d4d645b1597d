"""Every bad Choose gets a clear status naming the field, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.client import OfferBanditClient, choose_request
from server.converters import offer_to_pb
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import CHANNELS, OFFERS, ServerFactory, customer, trigger

Mutator = Callable[[pb.ChooseRequest], None]


def _good() -> pb.ChooseRequest:
    return choose_request(customer(), trigger(), OFFERS, CHANNELS)


def _set_number(path: str, value: float) -> Mutator:
    def mutate(r: pb.ChooseRequest) -> None:
        if path == "customer":
            r.customer.features["ltv"].number = value
        elif path == "trigger":
            r.trigger.features["cart_value"].number = value
        elif path == "offer":
            r.offers[0].features["weight"].number = value

    return mutate


def _many_offers(n: int) -> Mutator:
    def mutate(r: pb.ChooseRequest) -> None:
        del r.offers[:]
        for i in range(n):
            r.offers.append(pb.Offer(id=f"o{i}"))

    return mutate


def _many_features(r: pb.ChooseRequest) -> None:
    for i in range(201):
        r.customer.features[f"f{i}"].number = i


def _excluded_all(r: pb.ChooseRequest) -> None:
    for o in OFFERS:
        for c in CHANNELS:
            r.excluded.append(pb.TreatmentRef(offer_id=o.id, channel_id=c.id))


INVALID: list[tuple[str, Mutator, str]] = [
    ("no customer", lambda r: r.ClearField("customer"), "customer"),
    ("empty customer id", lambda r: setattr(r.customer, "id", ""), "customer.id"),
    ("no trigger", lambda r: r.ClearField("trigger"), "trigger"),
    ("empty trigger type", lambda r: setattr(r.trigger, "type", ""), "trigger.type"),
    ("no offers", lambda r: r.ClearField("offers"), "offers"),
    ("no channels", lambda r: r.ClearField("channels"), "channels"),
    ("duplicate offer", lambda r: r.offers.append(offer_to_pb(OFFERS[0])), "offers[3].id"),
    ("duplicate channel", lambda r: r.channels.append(pb.Channel(id="sms")), "channels[2].id"),
    ("empty offer id", lambda r: r.offers.append(pb.Offer(id="")), "offers[3].id"),
    (
        "explicit unknown offer",
        lambda r: r.treatments.append(pb.TreatmentRef(offer_id="nope", channel_id="sms")),
        "treatments[0].offer_id",
    ),
    (
        "explicit unknown channel",
        lambda r: r.treatments.append(pb.TreatmentRef(offer_id="content", channel_id="fax")),
        "treatments[0].channel_id",
    ),
    (
        "excluded unknown offer",
        lambda r: r.excluded.append(pb.TreatmentRef(offer_id="nope", channel_id="sms")),
        "excluded[0].offer_id",
    ),
    ("every treatment excluded", _excluded_all, "excluded"),
    (
        "holdout share above 1",
        lambda r: (setattr(r, "campaign_id", "x"), setattr(r, "campaign_holdout_share", 1.5)),
        "campaign_holdout_share",
    ),
    (
        "NaN holdout share",
        lambda r: (
            setattr(r, "campaign_id", "x"),
            setattr(r, "campaign_holdout_share", float("nan")),
        ),
        "campaign_holdout_share",
    ),
    (
        "holdout share without a campaign",
        lambda r: setattr(r, "campaign_holdout_share", 0.1),
        "campaign_id",
    ),
    (
        "campaign feature differing from campaign_id",
        lambda r: (
            setattr(r, "campaign_id", "x"),
            r.trigger.features["campaign"].CopyFrom(pb.FeatureValue(text="y")),
        ),
        "trigger.features.campaign",
    ),
    ("NaN customer feature", _set_number("customer", float("nan")), "customer.features['ltv']"),
    ("infinite trigger feature", _set_number("trigger", float("inf")), "trigger.features"),
    ("-inf offer feature", _set_number("offer", float("-inf")), "offers[0].features['weight']"),
    ("negative fixed cost", lambda r: setattr(r.offers[1], "fixed_cost", -1.0), "offers[1]"),
    (
        "NaN fixed cost",
        lambda r: setattr(r.offers[1], "fixed_cost", float("nan")),
        "offers[1].fixed_cost",
    ),
    (
        "negative contact cost",
        lambda r: setattr(r.channels[0], "contact_cost", -0.5),
        "channels[0].contact_cost",
    ),
    (
        "discount above 1",
        lambda r: setattr(r.offers[0], "discount_rate", 1.5),
        "offers[0].discount_rate",
    ),
    (
        "negative discount",
        lambda r: setattr(r.offers[0], "discount_rate", -0.1),
        "offers[0].discount_rate",
    ),
    (
        "empty feature name",
        lambda r: r.customer.features[""].CopyFrom(pb.FeatureValue(number=1)),
        "customer.features",
    ),
    (
        "over-long feature name",
        lambda r: r.customer.features["x" * 200].CopyFrom(pb.FeatureValue(number=1)),
        "customer.features",
    ),
    (
        "feature without a value",
        lambda r: r.customer.features["empty"].CopyFrom(pb.FeatureValue()),
        "customer.features['empty']",
    ),
    ("too many features", _many_features, "customer.features"),
    ("too many treatments", _many_offers(501), "offers"),
    ("over-long request id", lambda r: setattr(r, "request_id", "r" * 300), "request_id"),
]


@pytest.mark.parametrize(("case", "mutate", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_bad_choose_is_invalid_argument_naming_the_field(
    client: OfferBanditClient, case: str, mutate: Mutator, field: str
) -> None:
    request = _good()
    mutate(request)
    with pytest.raises(grpc.RpcError) as err:
        client.stub.Choose(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert field in err.value.details()
    status = rpc_status.from_call(err.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert field in bad.field_violations[0].field + ": " + bad.field_violations[0].description
    assert client.stats().decisions == 0


def test_a_request_over_the_message_limit_is_resource_exhausted(
    make_server: ServerFactory,
) -> None:
    running = make_server(max_message_bytes=64 * 1024)
    with OfferBanditClient(running.address) as c:
        request = _good()
        request.customer.features["blob"].text = "x" * (100 * 1024)
        with pytest.raises(grpc.RpcError) as err:
            c.stub.Choose(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "message" in err.value.details().lower()
        assert c.stats().decisions == 0


def test_hostile_feature_text_cannot_break_the_example(client: OfferBanditClient) -> None:
    request = _good()
    for i, text in enumerate(["a|b", "x:1", " spaced out ", "new\nline", "'quote\"", "€✓", ""]):
        request.customer.features[f"f{i}|:"].text = text
    answer = client.stub.Choose(request, timeout=10)
    logged = client.get_decision(answer.event_id)
    assert logged.customer.features["f3|:"].text == "new\nline"
    assert logged.customer.features["f6|:"].text == ""
