"""ChooseStream over real gRPC: many decisions on one stream, in order, each durable before
its result, a bad request refused alone."""

from __future__ import annotations

import math
import queue
from collections.abc import Iterator
from typing import Any

import grpc

from server.client import OfferBanditClient, choose_request
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import CHANNELS, OFFERS, customer, trigger

METHOD = "/offerbandit.v1.DecisionService/ChooseStream"


def _raw_stream(address: str) -> tuple[grpc.Channel, Any]:
    ch = grpc.insecure_channel(address)
    return ch, ch.stream_stream(METHOD, None, pb.ChooseStreamResult.FromString)


def test_a_stream_of_decisions_in_order_with_bad_requests_refused_alone(server: Any) -> None:
    good = [
        choose_request(customer(f"s{i}"), trigger(), OFFERS, CHANNELS).SerializeToString()
        for i in range(60)
    ]
    no_customer = choose_request(customer(""), trigger(), OFFERS, CHANNELS).SerializeToString()
    items = [*good[:10], b"\x0a\x02\xff\xfe", *good[10:40], no_customer, *good[40:]]
    ch, call = _raw_stream(server.address)
    with ch:
        results = list(call(iter(items), timeout=60))
    assert [r.index for r in results] == list(range(len(items)))
    refused = {r.index: r for r in results if r.error_code}
    assert sorted(refused) == [10, 41]
    assert refused[10].error.startswith("request: malformed ChooseRequest")
    assert refused[41].error.startswith("customer.id")
    assert all(r.error_code == "INVALID_ARGUMENT" for r in refused.values())
    decided = [r.decision for r in results if not r.error_code]
    assert len(decided) == 60
    assert len({d.event_id for d in decided}) == 60
    with OfferBanditClient(server.address) as c:
        for d, i in zip(decided, range(60), strict=True):
            assert 0 < d.propensity <= 1
            assert math.isclose(sum(t.probability for t in d.ranking), 1.0, rel_tol=1e-9)
            logged = c.get_decision(d.event_id)  # durable before its result was sent
            assert logged.customer.id == f"s{i}"
            assert logged.propensity == d.propensity
        assert c.stats().decisions == 60


def test_each_result_comes_before_the_next_request_is_sent(server: Any) -> None:
    answered: queue.Queue[int] = queue.Queue()
    sent: list[int] = []

    def items() -> Iterator[pb.ChooseRequest]:
        for k in range(5):
            sent.append(k)
            yield choose_request(customer(f"i{k}"), trigger(), OFFERS, CHANNELS)
            try:
                if answered.get(timeout=30) != k:
                    return
            except queue.Empty:
                return

    with OfferBanditClient(server.address) as c:
        for r in c.choose_stream(items(), timeout=60):
            answered.put(r.index)
    assert sent == [0, 1, 2, 3, 4]


def test_a_retried_request_id_answers_with_the_logged_decision(client: OfferBanditClient) -> None:
    req = choose_request(customer("r1"), trigger(), OFFERS, CHANNELS, request_id="camp-1:r1")
    first = client.choose_stream([req], timeout=30)
    (a,) = list(first)
    (b,) = list(client.choose_stream([req, req], timeout=30))[:1]
    assert a.decision.event_id == b.decision.event_id
    assert client.stats().decisions == 1
