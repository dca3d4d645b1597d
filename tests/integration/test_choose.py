"""Choose, GetDecision, retries, control share, re-derivation, health and reflection over gRPC."""

from __future__ import annotations

import math

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bandit.sampling import derive_seed, sample_index, uniform_from_seed
from bandit.types import TreatmentRef
from server.app import RunningServer
from server.client import OfferBanditClient
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import CHANNELS, OFFERS, ServerFactory, customer, trigger


@pytest.fixture
def server(log_url: str, make_server: ServerFactory) -> RunningServer:
    """A server on each log backend (SQLite, PostgreSQL; the schema outlives the server)."""
    return make_server(log=log_url)


def test_choose_answers_a_full_pmf_and_logs_it(client: OfferBanditClient) -> None:
    answer = client.choose(customer(), trigger(), OFFERS, CHANNELS)
    assert len(answer.event_id) == 32
    assert len(answer.ranking) == 1 + len(OFFERS) * len(CHANNELS)
    probs = [s.probability for s in answer.ranking]
    assert probs == sorted(probs, reverse=True)
    assert math.isclose(sum(probs), 1.0, abs_tol=1e-9)
    assert sum(s.control for s in answer.ranking) == 1
    chosen = [
        s
        for s in answer.ranking
        if s.treatment.offer_id == answer.chosen.offer_id
        and s.treatment.channel_id == answer.chosen.channel_id
    ]
    assert len(chosen) == 1
    assert chosen[0].probability == answer.propensity > 0
    assert answer.model_version == "v0"
    assert answer.policy.startswith("uplift:")  # the default live policy

    logged = client.get_decision(answer.event_id)
    assert logged.event_id == answer.event_id
    assert logged.customer.id == "c1"
    assert logged.customer.features["ltv"].number == 120.0
    assert logged.trigger.type == "cart_abandoned"
    assert len(logged.treatments) == len(answer.ranking)
    assert logged.treatments[0].control
    assert logged.propensity == answer.propensity == logged.pmf[logged.chosen_index]
    t = logged.treatments[logged.chosen_index]
    assert (t.offer.id, t.channel.id) == (answer.chosen.offer_id, answer.chosen.channel_id)
    assert logged.state == pb.DECISION_STATE_OPEN
    assert logged.schema_version == 2


def test_explicit_treatments_and_exclusions(client: OfferBanditClient) -> None:
    answer = client.choose(
        customer(),
        trigger(),
        OFFERS,
        CHANNELS,
        treatments=[TreatmentRef("discount_10", "sms"), TreatmentRef("content", "email")],
        excluded=[TreatmentRef("content", "email")],
    )
    keys = {(s.treatment.offer_id, s.treatment.channel_id) for s in answer.ranking}
    assert keys == {("", ""), ("discount_10", "sms")}


def test_channels_without_consent_are_not_candidates(client: OfferBanditClient) -> None:
    answer = client.choose(customer(consent_sms=False), trigger(), OFFERS, CHANNELS)
    assert {s.treatment.channel_id for s in answer.ranking} == {"", "email"}


def test_retry_with_request_id_returns_the_same_decision_logged_once(
    client: OfferBanditClient,
) -> None:
    first = client.choose(customer(), trigger(), OFFERS, CHANNELS, request_id="req-1")
    again = client.choose(customer(), trigger(), OFFERS, CHANNELS, request_id="req-1")
    assert again == first
    assert client.stats().decisions == 1
    with pytest.raises(grpc.RpcError) as err:
        client.choose(customer("c2"), trigger(), OFFERS, CHANNELS, request_id="req-1")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "request_id" in err.value.details()
    assert client.stats().decisions == 1


def test_control_share_is_a_floor_inside_the_logged_pmf(make_server: ServerFactory) -> None:
    running = make_server(control_share=0.3, policy="vw", exploration="--epsilon 0.05")
    n = 300
    with OfferBanditClient(running.address) as c:
        controls = 0
        for i in range(n):
            a = c.choose(customer(f"c{i}"), trigger(), OFFERS, CHANNELS)
            control = next(s for s in a.ranking if s.control)
            assert control.probability >= 0.3 - 1e-12
            controls += a.control
    # An untrained epsilon-greedy model has uniform scores: control gets exactly 0.3.
    # Binomial(300, 0.3): sd = sqrt(300 * 0.3 * 0.7) ≈ 7.9; allow 4 sd.
    assert abs(controls - 0.3 * n) <= 4 * math.sqrt(n * 0.3 * 0.7)


def test_a_decision_can_be_rederived_from_the_server_seed(make_server: ServerFactory) -> None:
    running = make_server(seed=1234)
    with OfferBanditClient(running.address) as c:
        for i in range(50):
            a = c.choose(customer(f"c{i}"), trigger(), OFFERS, CHANNELS)
            logged = c.get_decision(a.event_id)
            u = uniform_from_seed(derive_seed(1234, a.event_id))
            assert sample_index(list(logged.pmf), u) == logged.chosen_index


def test_get_decision_of_an_unknown_id_is_not_found(client: OfferBanditClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.get_decision("no-such-event")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "event_id" in err.value.details()


def test_health_serves_and_reflection_lists_the_service(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "offerbandit.v1.DecisionService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"offerbandit.v1.DecisionService", "grpc.health.v1.Health"} <= names


def test_health_is_not_serving_after_shutdown_starts(make_server: ServerFactory) -> None:
    running = make_server()
    with grpc.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        running.enter_graceful_shutdown()
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_decisions_survive_a_restart(make_server: ServerFactory, tmp_path: object) -> None:
    first = make_server(data_dir=str(tmp_path) + "/shared")
    with OfferBanditClient(first.address) as c:
        ids = [c.choose(customer(f"c{i}"), trigger(), OFFERS, CHANNELS).event_id for i in range(20)]
    first.stop(grace=1.0)
    second = make_server(data_dir=str(tmp_path) + "/shared")
    with OfferBanditClient(second.address) as c:
        assert [c.get_decision(e).event_id for e in ids] == ids
        assert c.stats().decisions == 20
