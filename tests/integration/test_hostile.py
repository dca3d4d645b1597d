"""Issue 14 over real gRPC: hostile numbers, unbounded revenue, malformed messages, long
values in error details, NaN in stats, whole-stream buffering, concurrent-call limits."""

from __future__ import annotations

import logging
import math
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from bandit.records import OutcomeInput
from server import servicer
from server.client import OfferBanditClient, choose_request
from server.converters import outcome_to_pb
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import CHANNELS, OFFERS, ServerFactory, customer, trigger

SERVICE = "/offerbandit.v1.DecisionService/"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _good() -> pb.ChooseRequest:
    return choose_request(customer(), trigger(), OFFERS, CHANNELS)


def _code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    return err.code(), err.details()


# ---- 1. the number policy ---------------------------------------------------------------


def _customer_number(v: float) -> Callable[[pb.ChooseRequest], None]:
    return lambda r: r.customer.features["ltv"].__setattr__("number", v)


HOSTILE_CHOOSE: list[tuple[str, Callable[[pb.ChooseRequest], None], str]] = [
    ("1e300 customer feature", _customer_number(1e300), "customer.features['ltv']"),
    ("-1e16 customer feature", _customer_number(-1e16), "customer.features['ltv']"),
    (
        "1e20 trigger feature",
        lambda r: r.trigger.features["cart_value"].__setattr__("number", 1e20),
        "trigger.features['cart_value']",
    ),
    (
        "1e300 offer feature",
        lambda r: r.offers[0].features["w"].__setattr__("number", 1e300),
        "offers[0].features['w']",
    ),
    (
        "1e39 channel feature",
        lambda r: r.channels[1].features["w"].__setattr__("number", 1e39),
        "channels[1].features['w']",
    ),
    (
        "1e300 fixed cost",
        lambda r: setattr(r.offers[1], "fixed_cost", 1e300),
        "offers[1].fixed_cost",
    ),
    (
        "1e16 contact cost",
        lambda r: setattr(r.channels[0], "contact_cost", 1e16),
        "channels[0].contact_cost",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "field"), HOSTILE_CHOOSE, ids=[c[0] for c in HOSTILE_CHOOSE]
)
def test_numbers_vw_cannot_hold_are_rejected_naming_the_field(
    client: OfferBanditClient,
    case: str,
    mutate: Callable[[pb.ChooseRequest], None],
    field: str,
) -> None:
    req = _good()
    mutate(req)
    code, details = _code(lambda: client.stub.Choose(req))
    assert code == INVALID
    assert details.startswith(field)
    assert "1e+15" in details
    assert client.stats().decisions == 0


def test_tiny_numbers_are_flushed_to_zero_and_logged_so(client: OfferBanditClient) -> None:
    req = _good()
    req.customer.features["ltv"].number = 1e-163  # VW's text parser makes this NaN
    req.offers[0].features["w"].number = -1e-40
    answers = [client.stub.Choose(req) for _ in range(20)]
    assert all(math.isclose(sum(t.probability for t in a.ranking), 1.0) for a in answers)
    logged = client.get_decision(answers[0].event_id)
    assert logged.customer.features["ltv"].number == 0.0
    assert logged.treatments[1].offer.features["w"].number == 0.0
    assert client.stats().score_fallbacks == 0


HOSTILE_OUTCOMES: list[tuple[str, OutcomeInput, str]] = [
    ("revenue 1e300", OutcomeInput("o", "", "c1", "purchase", 1e300, None), "revenue"),
    ("revenue over the cap", OutcomeInput("o", "", "c1", "purchase", 2e9, None), "revenue"),
    ("occurred in 10000 AD", OutcomeInput("o", "", "c1", "purchase", 1.0, 3e11), "occurred_at"),
    ("occurred before 1970", OutcomeInput("o", "", "c1", "purchase", 1.0, -5.0), "occurred_at"),
]


@pytest.mark.parametrize(
    ("case", "outcome", "field"), HOSTILE_OUTCOMES, ids=[c[0] for c in HOSTILE_OUTCOMES]
)
def test_hostile_outcomes_are_rejected(
    client: OfferBanditClient, case: str, outcome: OutcomeInput, field: str
) -> None:
    code, details = _code(lambda: client.stub.RecordOutcome(outcome_to_pb(outcome)))
    assert code == INVALID
    assert details.startswith(field)
    stats = client.stats()
    assert stats.outcomes_unattributed == stats.outcomes_attributed == 0


def test_activation_times_are_checked(client: OfferBanditClient) -> None:
    d = client.stub.Choose(
        choose_request(customer(), trigger(), OFFERS, CHANNELS, defer_activation=True)
    )
    req = pb.ActivateRequest(event_id=d.event_id)
    req.activated_at.seconds = 400_000_000_000
    code, details = _code(lambda: client.stub.Activate(req))
    assert (code, details.split(":")[0]) == (INVALID, "activated_at")


# ---- 2. bounded rewards -----------------------------------------------------------------


def test_revenue_is_clipped_for_learning_and_kept_raw_in_the_log(
    make_server: ServerFactory,
) -> None:
    running = make_server(
        attribution_window_seconds=0.2, close_interval_seconds=0.05, max_learned_revenue=500.0
    )
    with OfferBanditClient(running.address) as c:
        d = c.choose(customer(), trigger(), OFFERS, CHANNELS)
        c.record_outcome("big", event_id=d.event_id, type="purchase", revenue=1e8)
        deadline = time.monotonic() + 10
        while c.stats().learned_decisions < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        logged = c.get_decision(d.event_id)
        assert logged.state == pb.DECISION_STATE_CLOSED
        assert -500.0 <= logged.reward <= 500.0
        if logged.control:
            assert logged.reward == 500.0
    path = running.service.config.log_path
    with sqlite3.connect(path) as db:
        (revenue,) = db.execute("SELECT revenue FROM decisions").fetchone()
        (outcome_revenue,) = db.execute("SELECT revenue FROM outcomes").fetchone()
    assert revenue == outcome_revenue == 1e8


# ---- 5. malformed messages --------------------------------------------------------------

GARBAGE = [
    b"\xff\xff\xff\xff",
    b"\x0a\x05ab",  # truncated: a length of 5 with 2 bytes
    b"\x0a\x02\xff\xfe",  # field 1 as a string that is not UTF-8
    bytes(range(256)),
]
UNARY = ["Choose", "GetDecision", "RecordOutcome", "Activate", "GetStats"]


@pytest.mark.parametrize("method", UNARY)
def test_malformed_messages_get_invalid_argument_without_a_traceback(
    server: Any, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(server.address) as ch:
        call: Any = ch.unary_unary(SERVICE + method, None, None)
        for raw in GARBAGE:
            if method == "GetStats" and raw == GARBAGE[2]:
                continue  # field 1 of GetStatsRequest is a number: not malformed this way
            code, details = _code(lambda raw=raw: call(raw, timeout=10))  # type: ignore[misc]
            assert code == INVALID, (raw, details)
            assert details.startswith("request: malformed "), details
    assert not [r for r in caplog.records if r.exc_info]
    malformed = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed) <= 1  # rate-limited: once per 10 s


def test_a_malformed_item_in_a_stream_is_rejected_alone(server: Any) -> None:
    good = outcome_to_pb(OutcomeInput("g1", "", "c1", "purchase", 1.0, None)).SerializeToString()
    good2 = outcome_to_pb(OutcomeInput("g2", "", "c1", "purchase", 1.0, None)).SerializeToString()
    with grpc.insecure_channel(server.address) as ch:
        call: Any = ch.stream_unary(
            SERVICE + "RecordOutcomes",
            request_serializer=None,
            response_deserializer=pb.RecordOutcomesResponse.FromString,
        )
        reply = call(iter([good, b"\x0a\x02\xff\xfe", good2]), timeout=10)
    assert (reply.accepted, reply.rejected) == (2, 1)
    assert reply.results[1].error_code == "INVALID_ARGUMENT"
    assert reply.results[1].error.startswith("request: malformed Outcome")


# ---- 6. short error details ---------------------------------------------------------------


def test_long_values_are_quoted_short_so_the_real_status_arrives(client: OfferBanditClient) -> None:
    long = "x" * 20_000
    code, details = _code(lambda: client.stub.GetDecision(pb.GetDecisionRequest(event_id=long)))
    assert code == grpc.StatusCode.NOT_FOUND
    assert len(details) < 200
    assert "(20000 characters)" in details
    req = _good()
    req.treatments.append(pb.TreatmentRef(offer_id=long, channel_id="sms"))
    code, details = _code(lambda: client.stub.Choose(req))
    assert code == INVALID
    assert details.startswith("treatments[0].offer_id")
    assert len(details) < 200
    code, details = _code(
        lambda: client.stub.RecordOutcome(
            outcome_to_pb(OutcomeInput(long, "", "c1", "purchase", 1.0, None))
        )
    )
    assert code == INVALID
    assert len(details) < 200


# ---- 8. GetStats never NaN ----------------------------------------------------------------


def _repeated(fd: Any) -> bool:
    return bool(fd.label == fd.LABEL_REPEATED)


def _doubles(m: Message) -> Iterator[float]:
    for fd, value in m.ListFields():
        if fd.message_type is not None:
            items = value if _repeated(fd) else [value]
            for it in items:
                yield from _doubles(it)
        elif fd.type in (fd.TYPE_DOUBLE, fd.TYPE_FLOAT):
            yield from (value if _repeated(fd) else [value])


def test_stats_never_carry_nan(client: OfferBanditClient) -> None:
    stats = client.stats()
    assert not stats.HasField("incremental")  # nothing closed: no estimate, not NaN
    client.choose(customer(), trigger(), OFFERS, CHANNELS)
    assert all(math.isfinite(x) for x in _doubles(client.stats()))


# ---- 4. bounded memory and concurrency ------------------------------------------------------


def test_outcomes_of_a_stream_are_recorded_as_they_arrive(server: Any) -> None:
    # The second outcome is only sent once the first is visible in the stats: a server that
    # reads the whole stream first never gets there.
    seen = threading.Event()

    def items() -> Iterator[pb.Outcome]:
        yield outcome_to_pb(OutcomeInput("a1", "", "c1", "purchase", 1.0, None))
        with OfferBanditClient(server.address) as other:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if other.stats().outcomes_unattributed == 1:
                    seen.set()
                    break
                time.sleep(0.02)
        yield outcome_to_pb(OutcomeInput("a2", "", "c1", "purchase", 1.0, None))

    with OfferBanditClient(server.address) as c:
        reply = c.stub.RecordOutcomes(items(), timeout=30)
    assert seen.is_set()
    assert reply.accepted == 2


def test_calls_beyond_the_concurrency_limit_get_resource_exhausted(
    make_server: ServerFactory,
) -> None:
    running = make_server(max_concurrent_calls=1)
    release = threading.Event()

    def items() -> Iterator[pb.Outcome]:
        yield outcome_to_pb(OutcomeInput("h1", "", "c1", "purchase", 1.0, None))
        release.wait(30)

    with OfferBanditClient(running.address) as c, OfferBanditClient(running.address) as d:
        future = c.stub.RecordOutcomes.future(items(), timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the stream holds the one slot (in-process
            # look: a gRPC call here could take the slot before the stream does)
            if running.service.stats().log.outcomes.get("unattributed") == 1:
                break
            time.sleep(0.02)
        code, _ = _code(d.stats)
        release.set()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert future.result().accepted == 1
        assert running.service.stats().log.outcomes == {"unattributed": 1}


def _stream_call(address: str) -> Any:
    """StreamOutcomes taking serialized items (so a test can send garbage bytes)."""
    ch = grpc.insecure_channel(address)
    call = ch.stream_stream(
        SERVICE + "StreamOutcomes",
        request_serializer=None,
        response_deserializer=pb.OutcomeResult.FromString,
    )
    return ch, call


def _outcome(outcome_id: str, revenue: float = 1.0) -> bytes:
    o = OutcomeInput(outcome_id, "", "c1", "purchase", revenue, None)
    return outcome_to_pb(o).SerializeToString()


def test_stream_outcomes_answers_each_outcome_before_the_next_is_sent(server: Any) -> None:
    # The client sends an outcome only once the previous one's result has arrived: a server
    # that answered at the stream's end (or per group) would leave the client waiting, and
    # the stream would stop after the first outcome.
    answered: queue.Queue[int] = queue.Queue()
    sent: list[int] = []

    def items() -> Iterator[bytes]:
        for k in range(5):
            sent.append(k)
            yield _outcome(f"i{k}")
            try:
                if answered.get(timeout=30) != k:
                    return
            except queue.Empty:
                return

    ch, call = _stream_call(server.address)
    with ch:
        results = []
        for r in call(items(), timeout=60):
            results.append(r)
            answered.put(r.index)
    assert sent == [0, 1, 2, 3, 4]
    assert [(r.index, r.outcome_id, r.status) for r in results] == [
        (k, f"i{k}", pb.OUTCOME_STATUS_UNATTRIBUTED) for k in range(5)
    ]


def test_stream_outcomes_has_no_length_limit_and_rejects_bad_items_alone(
    make_server: ServerFactory,
) -> None:
    running = make_server(max_stream_outcomes=10)
    bad = {7: b"\x0a\x02\xff\xfe", 20: _outcome("neg", -5.0), 31: _outcome("x" * 20_000)}
    items = [bad.get(k, _outcome(f"s{k}")) for k in range(600)]
    ch, call = _stream_call(running.address)
    with ch:
        results = list(call(iter(items), timeout=60))
    assert [r.index for r in results] == list(range(600))
    rejected = {r.index: r for r in results if r.status == pb.OUTCOME_STATUS_REJECTED}
    assert sorted(rejected) == sorted(bad)
    assert rejected[7].error.startswith("request: malformed Outcome")
    assert rejected[20].error.startswith("revenue")
    assert rejected[31].outcome_id == ""  # a too-long id is not echoed
    assert all(r.error_code == "INVALID_ARGUMENT" for r in rejected.values())
    assert running.service.stats().log.outcomes == {"unattributed": 600 - len(bad)}
    # the same stream through RecordOutcomes stops at its limit (the first 10 recorded)
    with OfferBanditClient(running.address) as c:
        code, details = _code(
            lambda: c.stub.RecordOutcomes(
                iter(
                    [
                        outcome_to_pb(OutcomeInput(f"r{k}", "", "c2", "click", 0.0, None))
                        for k in range(11)
                    ]
                ),
                timeout=30,
            )
        )
    assert code == INVALID
    assert details.startswith("outcomes: the stream carries more than 10 outcomes")
    assert running.service.stats().log.outcomes == {"unattributed": 600 - len(bad) + 10}


def test_record_outcomes_answers_within_what_a_client_receives(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A response a default client cannot receive (over 4 MiB) used to be sent anyway: the
    # outcomes were recorded and the client saw RESOURCE_EXHAUSTED. Now the stream is refused
    # before the first outcome whose result might not fit, and exactly the ones before it are
    # recorded. (The budget is lowered here so that the test stays small.)
    monkeypatch.setattr(servicer, "MAX_RESPONSE_BYTES", 64 * 1024)
    pad = "p" * 200
    items = [
        outcome_to_pb(OutcomeInput(f"{k}{pad}", "", "c1", "click", 0.0, None)) for k in range(1000)
    ]
    with OfferBanditClient(server.address) as c:
        code, details = _code(lambda: c.stub.RecordOutcomes(iter(items), timeout=30))
        assert code == INVALID
        m = re.match(
            r"outcomes: the results of more than (\d+) outcomes would not fit one response "
            r"\(64 KiB\); the first \1 were recorded",
            details,
        )
        assert m, details
        recorded = int(m.group(1))
        assert server.service.stats().log.outcomes == {"unattributed": recorded}
        one = pb.OutcomeResult(
            outcome_id=f"0{pad}", status=pb.OUTCOME_STATUS_UNATTRIBUTED, index=999
        )
        assert recorded * (one.ByteSize() + 3) <= 64 * 1024  # they would have fitted
        assert recorded >= 0.9 * 64 * 1024 / (one.ByteSize() + 5)  # most of the budget used
        # resending is safe, and the rest go through StreamOutcomes
        results = list(c.stub.StreamOutcomes(iter(items), timeout=30))
    statuses = [r.status for r in results]
    assert statuses == [pb.OUTCOME_STATUS_DUPLICATE] * recorded + [
        pb.OUTCOME_STATUS_UNATTRIBUTED
    ] * (1000 - recorded)


def test_stream_outcomes_through_the_client(client: OfferBanditClient) -> None:
    decision = client.choose(customer(), trigger(), OFFERS, CHANNELS)
    outcomes = [
        OutcomeInput("p1", decision.event_id, "", "purchase", 30.0, None),
        OutcomeInput("p1", decision.event_id, "", "purchase", 30.0, None),
        OutcomeInput("p2", "no-such-event", "", "purchase", 1.0, None),
    ]
    results = list(client.stream_outcomes(outcomes, timeout=30))
    assert [r.status for r in results] == [
        pb.OUTCOME_STATUS_ATTRIBUTED,
        pb.OUTCOME_STATUS_DUPLICATE,
        pb.OUTCOME_STATUS_REJECTED,
    ]
    assert results[0].event_id == decision.event_id
    assert results[2].error_code == "NOT_FOUND"


# ---- 7. honest health -----------------------------------------------------------------------


class _FailingDisk:
    """The writer's connection, failing every statement while ``full`` is set (as SQLite
    does on a full disk); everything else goes to the real connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.full = threading.Event()

    def execute(self, sql: str, *args: Any) -> Any:
        if self.full.is_set() and not sql.startswith("ROLLBACK"):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _health(c: OfferBanditClient) -> int:
    return int(c.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)


def _until(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_health_is_not_serving_while_the_log_cannot_write(make_server: ServerFactory) -> None:
    running = make_server()
    log = running.service.log
    disk = _FailingDisk(log._conn)
    log._conn = disk  # type: ignore[assignment]
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    with OfferBanditClient(running.address) as c:
        c.choose(customer(), trigger(), OFFERS, CHANNELS)
        assert _health(c) == serving
        disk.full.set()
        code, details = _code(lambda: c.choose(customer(), trigger(), OFFERS, CHANNELS))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "could not be written" in details
        assert _until(lambda: _health(c) == not_serving)
        disk.full.clear()  # space is back: the probe's write succeeds
        assert _until(lambda: _health(c) == serving)
        c.choose(customer(), trigger(), OFFERS, CHANNELS)
        assert c.stats().decisions == 2


def test_the_wal_stays_bounded_under_steady_writes(tmp_path: Any) -> None:
    # Four writers that never pause: the case where a PASSIVE checkpoint never catches up
    # and, without the locked second pass, the WAL grows by every page written (~64 MB here).
    from bandit.log.sqlite import SqliteDecisionLog as DecisionLog

    log = DecisionLog(tmp_path / "log.sqlite", checkpoint_interval=0.05, wal_frames_limit=64)
    wal = tmp_path / "log.sqlite-wal"
    sizes: list[int] = []

    def write(t: int) -> None:
        for i in range(1500):

            def insert(conn: sqlite3.Connection, key: str = f"k{t}-{i}") -> None:
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, "x" * 2000))

            log.run(insert)
            sizes.append(wal.stat().st_size)

    try:
        threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        log.close()
    assert max(sizes) < 16 * 1024 * 1024
