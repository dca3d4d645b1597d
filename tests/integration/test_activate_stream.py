"""ActivateStream over real gRPC (a server on 127.0.0.1:0, on each log backend): per-item
results in order with the status and the code Activate answers, nothing written for a
refused item; and a campaign's sends activated through ``offerbandit campaign activate``,
whose windows then close with the outcomes attributed to them."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pandas as pd
import pytest

from bandit.records import ActivationInput
from offerbandit.campaign import Campaign, audience, main, run
from server.app import RunningServer
from server.client import OfferBanditClient
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import CHANNELS, OFFERS, ServerFactory, customer, trigger
from tests.integration.test_campaign import _files

S = pb.ActivationStatus


def test_each_item_is_answered_in_order_and_only_the_valid_ones_are_written(
    log_url: str, make_server: ServerFactory
) -> None:
    running = make_server(log=log_url, event_id_prefix="00000000000000ac")
    with OfferBanditClient(running.address) as c:
        deferred = [
            c.choose(customer(f"d{i}"), trigger(), OFFERS, CHANNELS, defer_activation=True)
            for i in range(4)
        ]
        plain = c.choose(customer("p"), trigger(), OFFERS, CHANNELS)
        a, b, early, future = (d.event_id for d in deferred)
        decided = c.get_decision(early).decided_at.ToSeconds()
        b_at = c.get_decision(b).decided_at.ToMilliseconds() / 1000 + 0.25  # a send time
        now = time.time()
        items = [
            ActivationInput(a),
            ActivationInput(b, b_at),
            ActivationInput(a),  # resent within the stream
            ActivationInput("nope"),
            ActivationInput(plain.event_id),
            ActivationInput(early, decided - 60.0),
            ActivationInput(future, now + 86_400.0),
            ActivationInput(""),
            ActivationInput("x" * 5000),  # longer than the id limit: not echoed back
        ]
        results = list(c.activate_stream(items, timeout=30))
        assert [r.index for r in results] == list(range(len(items)))
        assert [r.event_id for r in results] == [i.event_id for i in items[:-1]] + [""]
        got = [(S.Name(r.status), r.error_code, r.error.split(":")[0]) for r in results]
        assert got == [
            ("ACTIVATION_STATUS_ACTIVATED", "", ""),
            ("ACTIVATION_STATUS_ACTIVATED", "", ""),
            ("ACTIVATION_STATUS_ALREADY_ACTIVATED", "FAILED_PRECONDITION", "event_id"),
            ("ACTIVATION_STATUS_UNKNOWN_EVENT", "NOT_FOUND", "event_id"),
            ("ACTIVATION_STATUS_NOT_DEFERRED", "FAILED_PRECONDITION", "event_id"),
            ("ACTIVATION_STATUS_INVALID", "INVALID_ARGUMENT", "activated_at"),
            ("ACTIVATION_STATUS_INVALID", "INVALID_ARGUMENT", "activated_at"),
            ("ACTIVATION_STATUS_INVALID", "INVALID_ARGUMENT", "event_id"),
            ("ACTIVATION_STATUS_UNKNOWN_EVENT", "NOT_FOUND", "event_id"),
        ]
        assert "already activated" in results[2].error
        assert "before the decision" in results[5].error
        # the answers say what the log holds
        for r in results[:2]:
            logged = c.get_decision(r.event_id)
            assert logged.state == pb.DECISION_STATE_OPEN
            assert r.window_closes_at.ToSeconds() > logged.activated_at.ToSeconds() > 0
        activated_b = c.get_decision(b).activated_at
        assert activated_b.seconds + activated_b.nanos / 1e9 == pytest.approx(b_at, abs=1e-6)
        for e in (early, future):
            logged = c.get_decision(e)
            assert logged.state == pb.DECISION_STATE_PENDING_ACTIVATION
            assert not logged.HasField("activated_at")
        stats = c.stats()
        assert (stats.activations, stats.pending_activation) == (3, 2)  # a, b and the plain one
        # the unary Activate agrees with the stream's refusal of a resent one
        with pytest.raises(grpc.RpcError) as caught:
            c.activate(a)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.details() == results[2].error


def test_a_malformed_item_is_refused_and_the_stream_goes_on(server: RunningServer) -> None:
    with OfferBanditClient(server.address) as c:
        d = c.choose(customer(), trigger(), OFFERS, CHANNELS, defer_activation=True)
        raw = c.channel.stream_stream(
            "/offerbandit.v1.DecisionService/ActivateStream",
            request_serializer=lambda b: b,
            response_deserializer=pb.ActivateResult.FromString,
        )
        good = pb.ActivateRequest(event_id=d.event_id).SerializeToString()
        results = list(raw(iter([b"\xff\xff\xff", good]), timeout=30))
        assert [(r.index, r.status) for r in results] == [
            (0, S.ACTIVATION_STATUS_INVALID),
            (1, S.ACTIVATION_STATUS_ACTIVATED),
        ]
        assert results[0].error.startswith("request: malformed ActivateRequest")
        assert c.get_decision(d.event_id).state == pb.DECISION_STATE_OPEN


def test_a_campaigns_sends_activate_through_the_stream_then_close_with_their_outcomes(
    make_server: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = make_server(
        event_id_prefix="00000000000000ad",
        attribution_window_seconds=3.0,
        close_interval_seconds=0.2,
    )
    campaign_file, audience_file = _files(tmp_path, 120)
    campaign = Campaign.load(campaign_file)
    with OfferBanditClient(running.address) as c:
        summary = run(c, campaign, audience(audience_file), tmp_path / "send.csv", progress=False)
        sends = pd.read_csv(tmp_path / "send.csv", keep_default_na=False)
        sent = sends[sends["action"] == "send"]
        assert len(sent) == summary.sent > 5
        sent_at = time.time()  # after every decision
        rows = sent[["event_id"]].assign(sent_at=sent_at)
        rows.to_csv(tmp_path / "sent.csv", index=False)
        args = ["activate", "--sent", str(tmp_path / "sent.csv"), "--server", running.address]
        assert main(args) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"{len(sent)} activated, 0 already activated, 0 unknown,")
        assert c.stats().activations == len(sent)
        first = c.get_decision(str(sent["event_id"].iloc[0]))
        at = first.activated_at.seconds + first.activated_at.nanos / 1e9
        assert at == pytest.approx(sent_at, abs=1e-5)  # sent_at went through a CSV
        # every sent customer buys within the window: attributed to its decision
        for i, event_id in enumerate(sent["event_id"]):
            reply = c.record_outcome(f"o-{i}", event_id=str(event_id), revenue=30.0)
            assert reply.status == pb.OUTCOME_STATUS_ATTRIBUTED
        # the platform resends its confirmations: nothing changes, and that is no failure
        assert main(args) == 0
        assert f"0 activated, {len(sent)} already activated" in capsys.readouterr().out
        deadline = time.monotonic() + 60.0
        while c.stats().closed_decisions < len(sent):
            assert time.monotonic() < deadline, "windows did not close"
            time.sleep(0.2)
        stats = c.stats()
        assert stats.outcomes_attributed == len(sent)
        assert stats.attributed_revenue == pytest.approx(30.0 * len(sent))
        assert stats.pending_activation == len(sends) - len(sent)  # control rows: never sent
        for event_id in sent["event_id"]:
            assert c.get_decision(str(event_id)).state == pb.DECISION_STATE_CLOSED


def test_a_bad_sent_at_refuses_the_file_before_anything_is_activated(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with OfferBanditClient(server.address) as c:
        d = c.choose(customer(), trigger(), OFFERS, CHANNELS, defer_activation=True)
        (tmp_path / "sent.csv").write_text(
            f"event_id,sent_at\n{d.event_id},1800000000\n{d.event_id},next tuesday\n"
        )
        code = main(["activate", "--sent", str(tmp_path / "sent.csv"), "--server", server.address])
        assert code == 2
        assert "sent.csv, row 3: sent_at 'next tuesday' is not a time" in capsys.readouterr().err
        assert c.get_decision(d.event_id).state == pb.DECISION_STATE_PENDING_ACTIVATION


def test_rows_that_cannot_be_activated_are_counted_with_their_first_reason(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with OfferBanditClient(server.address) as c:
        d1, d2 = (
            c.choose(customer(f"c{i}"), trigger(), OFFERS, CHANNELS, defer_activation=True)
            for i in range(2)
        )
        plain = c.choose(customer("p"), trigger(), OFFERS, CHANNELS)
    sent = tmp_path / "sent.csv"
    sent.write_text(
        "event_id,sent_at\n"
        f"{d1.event_id},\n{plain.event_id},\nnope,\n{d1.event_id},\n{d2.event_id},1.0\n"
    )
    assert main(["activate", "--sent", str(sent), "--server", server.address]) == 1
    out, err = capsys.readouterr()
    assert (
        out == "1 activated, 1 already activated, 1 unknown, 1 not deferred, 1 invalid, 0 failed\n"
    )
    lines = err.strip().splitlines()[-4:]  # after the progress bar
    assert lines == [
        f"not deferred: 1, the first at {sent}, row 3: FAILED_PRECONDITION: event_id: decision "
        f"'{plain.event_id}' was not deferred",
        f"unknown: 1, the first at {sent}, row 4: NOT_FOUND: event_id: no decision with event id "
        "'nope'",
        f"already activated: 1, the first at {sent}, row 5: FAILED_PRECONDITION: event_id: "
        f"decision '{d1.event_id}' is already activated",
        f"invalid: 1, the first at {sent}, row 6: INVALID_ARGUMENT: activated_at: is before the "
        "decision was made",
    ]
