"""Outcomes, streams, activation and stats over real gRPC, with their error statuses."""

from __future__ import annotations

import time

import grpc
import pytest

from bandit.records import OutcomeInput
from server.app import RunningServer
from server.client import OfferBanditClient
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import CHANNELS, OFFERS, ServerFactory, customer, trigger


@pytest.fixture
def server(log_url: str, make_server: ServerFactory) -> RunningServer:
    """A server on each log backend (SQLite, PostgreSQL; the schema outlives the server)."""
    return make_server(log=log_url)


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    return err.value.code(), err.value.details()


def test_record_outcome_statuses(client: OfferBanditClient) -> None:
    a = client.choose(customer(), trigger(), OFFERS, CHANNELS)
    r = client.record_outcome("o1", event_id=a.event_id, revenue=25.0)
    assert (r.status, r.event_id) == (pb.OUTCOME_STATUS_ATTRIBUTED, a.event_id)
    r = client.record_outcome("o1", event_id=a.event_id, revenue=25.0)
    assert r.status == pb.OUTCOME_STATUS_DUPLICATE
    code, details = _code(lambda: client.record_outcome("o1", event_id=a.event_id, revenue=26))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "outcome_id" in details
    r = client.record_outcome("o2", customer_id="c1", revenue=5.0)
    assert (r.status, r.event_id) == (pb.OUTCOME_STATUS_ATTRIBUTED, a.event_id)
    r = client.record_outcome("o3", customer_id="stranger", revenue=5.0)
    assert r.status == pb.OUTCOME_STATUS_UNATTRIBUTED
    stats = client.stats()
    assert (stats.outcomes_attributed, stats.outcomes_unattributed) == (2, 1)
    assert stats.outcomes_duplicate == 1
    assert stats.attributed_revenue == 30.0
    assert stats.decisions == 1


INVALID = grpc.StatusCode.INVALID_ARGUMENT
BAD = [
    (OutcomeInput("", "", "c1", "purchase", 1.0, None), INVALID, "outcome_id"),
    (OutcomeInput("x", "", "", "purchase", 1.0, None), INVALID, "event_id"),
    (OutcomeInput("x", "nope", "", "purchase", 1.0, None), grpc.StatusCode.NOT_FOUND, "event_id"),
    (OutcomeInput("x", "", "c1", "purchase", -3.0, None), INVALID, "revenue"),
    (OutcomeInput("x", "", "c1", "p", float("nan"), None), INVALID, "revenue"),
    (OutcomeInput("x", "", "c1", "p", float("inf"), None), INVALID, "revenue"),
    (OutcomeInput("x", "", "c1", "purchase", 1.0, time.time() + 86_400), INVALID, "occurred_at"),
]


@pytest.mark.parametrize(
    ("outcome", "code", "field"), BAD, ids=[b[2] + str(i) for i, b in enumerate(BAD)]
)
def test_bad_outcomes_get_a_status_naming_the_field(
    client: OfferBanditClient, outcome: OutcomeInput, code: grpc.StatusCode, field: str
) -> None:
    from server.converters import outcome_to_pb

    got, details = _code(lambda: client.stub.RecordOutcome(outcome_to_pb(outcome), timeout=5))
    assert got == code
    assert field in details
    s = client.stats()
    assert s.outcomes_attributed + s.outcomes_unattributed + s.outcomes_late == 0


def test_outcome_before_its_decision_is_invalid(client: OfferBanditClient) -> None:
    a = client.choose(customer(), trigger(), OFFERS, CHANNELS)
    code, details = _code(
        lambda: client.record_outcome("x", event_id=a.event_id, occurred_at=time.time() - 3600)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "occurred_at" in details


def test_a_stream_reports_per_item_and_keeps_the_good_ones(client: OfferBanditClient) -> None:
    a = client.choose(customer(), trigger(), OFFERS, CHANNELS)
    items = [
        OutcomeInput("s1", a.event_id, "", "purchase", 10.0, None),
        OutcomeInput("s2", "nope", "", "purchase", 10.0, None),
        OutcomeInput("s3", a.event_id, "", "purchase", -1.0, None),
        OutcomeInput("s1", a.event_id, "", "purchase", 10.0, None),
        OutcomeInput("s4", "", "c1", "click", 0.0, None),
    ]
    reply = client.record_outcomes(items)
    assert (reply.accepted, reply.rejected) == (3, 2)
    assert [r.status for r in reply.results] == [
        pb.OUTCOME_STATUS_ATTRIBUTED,
        pb.OUTCOME_STATUS_REJECTED,
        pb.OUTCOME_STATUS_REJECTED,
        pb.OUTCOME_STATUS_DUPLICATE,
        pb.OUTCOME_STATUS_ATTRIBUTED,
    ]
    assert [r.index for r in reply.results] == [0, 1, 2, 3, 4]
    assert reply.results[1].error_code == "NOT_FOUND"
    assert "event_id" in reply.results[1].error
    assert reply.results[2].error_code == "INVALID_ARGUMENT"
    assert "revenue" in reply.results[2].error
    assert client.stats().outcomes_attributed == 2


def test_an_over_long_stream_is_refused_where_it_overflows(make_server: ServerFactory) -> None:
    # The stream is processed as it arrives (memory independent of its length), so the
    # outcomes before the limit are recorded; resending them is safe (idempotent ids).
    running = make_server(max_stream_outcomes=5)
    with OfferBanditClient(running.address) as c:
        items = [OutcomeInput(f"s{i}", "", "c1", "purchase", 1.0, None) for i in range(6)]
        code, details = _code(lambda: c.record_outcomes(items))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "more than 5 outcomes; the first 5 were recorded" in details
        assert c.stats().outcomes_unattributed == 5
        again = c.record_outcomes(items[:5])
        assert again.accepted == 5
        assert {r.status for r in again.results} == {pb.OUTCOME_STATUS_DUPLICATE}
        assert c.stats().outcomes_unattributed == 5


def test_activation_over_grpc(make_server: ServerFactory) -> None:
    running = make_server(attribution_window_seconds=0.5, close_interval_seconds=0.05)
    with OfferBanditClient(running.address) as c:
        deferred = c.choose(customer(), trigger(), OFFERS, CHANNELS, defer_activation=True)
        logged = c.get_decision(deferred.event_id)
        assert logged.state == pb.DECISION_STATE_PENDING_ACTIVATION
        assert c.stats().pending_activation == 1
        reply = c.activate(deferred.event_id)
        assert reply.window_closes_at.seconds > 0
        code, details = _code(lambda: c.activate(deferred.event_id))
        assert (code, "already activated" in details) == (grpc.StatusCode.FAILED_PRECONDITION, True)
        plain = c.choose(customer("c2"), trigger(), OFFERS, CHANNELS)
        code, _ = _code(lambda: c.activate(plain.event_id))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        code, _ = _code(lambda: c.activate("nope"))
        assert code == grpc.StatusCode.NOT_FOUND
        code, _ = _code(lambda: c.activate(""))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        never = c.choose(customer("c3"), trigger(), OFFERS, CHANNELS, defer_activation=True)
        deadline = time.monotonic() + 10
        while c.stats().learned_decisions < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = c.stats()
        assert stats.learned_decisions == 2  # the activated one and the plain one
        assert c.get_decision(deferred.event_id).state == pb.DECISION_STATE_CLOSED
        assert c.get_decision(never.event_id).state == pb.DECISION_STATE_PENDING_ACTIVATION
        assert stats.incremental.decisions == 2
        inc = stats.incremental  # the gain it could tell from none: 2.80 standard errors
        half = (inc.ci_high - inc.ci_low) / 2
        assert inc.detectable_per_decision == pytest.approx(half / 1.959964 * 2.801585, rel=1e-5)
