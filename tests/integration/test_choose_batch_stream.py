"""ChooseBatchStream over real gRPC: a campaign's customers in messages under one template,
each message answered in order once its decisions are durable, a refused customer alone, a
bad template refused whole, the contact policy and the holdouts applied in the batch, and a
resumed run deciding nobody twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest

from bandit.choose import in_holdout
from bandit.types import Customer
from offerbandit.campaign import Campaign, audience, run
from server.client import OfferBanditClient, choose_request
from server.converters import batch_template_to_pb, customer_to_pb
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import CHANNELS, OFFERS, ServerFactory, customer, trigger
from tests.integration.test_campaign import CAMPAIGN, _files


def _people(n: int, tag: str = "b") -> list[tuple[Customer, str]]:
    return [(customer(f"{tag}{i}"), f"{tag}:{i}") for i in range(n)]


def test_messages_of_customers_answered_in_order_with_a_refused_customer_alone(
    server: Any,
) -> None:
    template = batch_template_to_pb(trigger(), OFFERS, CHANNELS, defer_activation=True)
    people = _people(25)
    bad = Customer("bad", {"ltv": 1e300})  # beyond the number policy: refused, naming it
    chunks = [people[:10], [*people[10:12], (bad, "b:bad"), *people[12:20]], people[20:]]
    with OfferBanditClient(server.address) as c:
        messages = list(c.choose_batches(template, chunks, timeout=60))
        assert [len(m.results) for m in messages] == [10, 11, 5]
        results = [r for m in messages for r in m.results]
        assert [r.index for r in results] == list(range(26))
        refused = [r for r in results if r.error_code]
        assert [r.index for r in refused] == [12]
        assert refused[0].error_code == "INVALID_ARGUMENT"
        assert refused[0].error.startswith("customer.features['ltv']")
        decided = [r.decision for r in results if not r.error_code]
        assert len({d.event_id for d in decided}) == 25
        for d, (person, request_id) in zip(decided, people, strict=True):
            logged = c.get_decision(d.event_id)  # durable before its result was sent
            assert logged.customer.id == person.id
            assert logged.request_id == request_id
            assert logged.deferred
            assert logged.propensity == d.propensity
        assert c.stats().decisions == 25
        # a retry of the same stream: the logged decisions, nothing decided again
        again = [r for m in c.choose_batches(template, chunks, timeout=60) for r in m.results]
        assert [r.decision.event_id for r in again if not r.error_code] == [
            d.event_id for d in decided
        ]
        assert c.stats().decisions == 25


def test_the_batch_decides_what_choose_stream_decides(make_server: ServerFactory) -> None:
    """Two servers with one event-id key: the same requests through ChooseStream on one and
    ChooseBatchStream on the other give the same decisions, bit for bit."""
    a = make_server(event_id_prefix="00000000000000c1", holdout_share=0.2)
    b = make_server(event_id_prefix="00000000000000c1", holdout_share=0.2)
    people = _people(40)
    kw: dict[str, Any] = {
        "defer_activation": True,
        "campaign_id": "x",
        "campaign_holdout_share": 0.3,
    }
    with OfferBanditClient(a.address) as ca, OfferBanditClient(b.address) as cb:
        stream = list(
            ca.choose_stream(
                [
                    choose_request(p, trigger(), OFFERS, CHANNELS, request_id=r, **kw)
                    for p, r in people
                ]
            )
        )
        template = batch_template_to_pb(trigger(), OFFERS, CHANNELS, **kw)
        chunks = [people[i : i + 16] for i in range(0, 40, 16)]
        batch = [r for m in cb.choose_batches(template, chunks) for r in m.results]
    assert [r.decision for r in stream] == [r.decision for r in batch]
    assert any(r.decision.policy == "holdout" for r in batch)


def test_a_bad_template_or_none_ends_the_stream_with_its_status(server: Any) -> None:
    with OfferBanditClient(server.address) as c:
        bad = batch_template_to_pb(trigger(), OFFERS, [])  # no channel
        with pytest.raises(grpc.RpcError) as err:
            list(c.choose_batches(bad, [_people(2)], timeout=30))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "channels" in (err.value.details() or "")
        ch = c.channel
        call = ch.stream_stream(
            "/offerbandit.v1.DecisionService/ChooseBatchStream",
            pb.ChooseBatch.SerializeToString,
            pb.ChooseBatchResult.FromString,
        )
        no_template = pb.ChooseBatch(
            customers=[pb.BatchCustomer(customer=customer_to_pb(customer("x")))]
        )
        with pytest.raises(grpc.RpcError) as err:
            list(call(iter([no_template]), timeout=30))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "template: is required" in (err.value.details() or "")
        assert c.stats().decisions == 0


def test_a_campaign_through_batches_respects_the_contact_policy_and_holdout_and_resumes(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[[cap]]\nname = 'no sms'\nchannel = 'sms'\nmax = 0\ndays = 1\n")
    running = make_server(contact_policy=policy, event_id_prefix="00000000000000c2")
    campaign_file, audience_file = _files(tmp_path, 700)
    campaign_file.write_text(
        CAMPAIGN.replace('id = "xmas-test"', 'id = "xmas-test"\nholdout = 0.25')
    )
    campaign = Campaign.load(campaign_file)
    with OfferBanditClient(running.address) as c:
        part = run(
            c,
            campaign,
            audience(audience_file),
            tmp_path / "p.csv",
            progress=False,
            limit=300,
            chunk=128,
        )
        assert (part.decided, part.refused) == (300, 0)
        whole = run(
            c, campaign, audience(audience_file), tmp_path / "s.csv", progress=False, chunk=128
        )
        assert (whole.decided, whole.refused) == (700, 0)
        assert c.stats().decisions == 700  # the first 300 not decided again
    first = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    sends = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert list(sends["event_id"][:300]) == list(first["event_id"])
    assert "sms" not in set(sends["channel_id"])
    expected = {
        f"cust-{i}" for i in range(700) if in_holdout(f"cust-{i}", 0.25, "campaign:xmas-test")
    }
    assert set(sends[sends["action"] == "holdout"]["customer_id"]) == expected
    assert whole.holdout == len(expected) > 0
    assert whole.sent > 0


def test_a_message_beyond_max_batch_customers_is_refused(make_server: ServerFactory) -> None:
    running = make_server(max_batch_customers=5)
    template = batch_template_to_pb(trigger(), OFFERS, CHANNELS)
    with OfferBanditClient(running.address) as c:
        ok = list(c.choose_batches(template, [_people(5)], timeout=30))
        assert len(ok[0].results) == 5
        with pytest.raises(grpc.RpcError) as err:
            list(c.choose_batches(template, [_people(6, "big")], timeout=30))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "customers: has 6 customers; the limit is 5" in (err.value.details() or "")
        assert c.stats().decisions == 5
