"""The Prometheus endpoint, scraped over HTTP while real gRPC calls move its counters."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bandit.records import OutcomeInput
from server.app import RunningServer, start_server
from server.auth import add_token
from server.client import OfferBanditClient
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger


def scrape(running: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert running.metrics is not None
    url = f"http://127.0.0.1:{running.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


Key = tuple[str, tuple[tuple[str, str], ...]]


def scrape_after(running: RunningServer, *keys: Key) -> dict[Key, float]:
    """A scrape once every one of ``keys`` is there: a refused or failed call's status
    reaches the client a moment before the interceptor counts it (bounded wait)."""
    deadline = time.monotonic() + 10
    while True:
        sample = scrape(running)
        if all(k in sample for k in keys) or time.monotonic() > deadline:
            return sample
        time.sleep(0.02)


@pytest.fixture
def measured(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(
        Settings.load(host="127.0.0.1", port=0, data_dir=tmp_path / "data", metrics_port=0)
    )
    yield running
    running.stop(grace=1.0)


def test_the_counters_move_with_the_calls(measured: RunningServer) -> None:
    before = scrape(measured)
    assert before[("offerbandit_decisions", ())] == 0
    assert before[("offerbandit_log_writable", ())] == 1
    with OfferBanditClient(measured.address) as c:
        answers = [c.choose(customer(f"m{i}"), trigger(), OFFERS, CHANNELS) for i in range(5)]
        c.record_outcome("mo1", event_id=answers[0].event_id, revenue=20.0)
        c.record_outcome("mo2", customer_id="nobody", revenue=5.0)
        list(c.stream_outcomes([OutcomeInput("mo3", "", "nobody", "click", 0.0, None)]))
        with pytest.raises(grpc.RpcError):
            c.get_decision("no-such-event")
    rpc = "offerbandit_rpc_total"
    after = scrape_after(measured, (rpc, (("code", "NOT_FOUND"), ("method", "GetDecision"))))
    assert after[(rpc, (("code", "OK"), ("method", "Choose")))] == 5
    assert after[(rpc, (("code", "OK"), ("method", "RecordOutcome")))] == 2
    assert after[(rpc, (("code", "OK"), ("method", "StreamOutcomes")))] == 1
    assert after[(rpc, (("code", "NOT_FOUND"), ("method", "GetDecision")))] == 1
    assert after[("offerbandit_rpc_seconds_count", (("method", "Choose"),))] == 5
    assert after[("offerbandit_rpc_seconds_bucket", (("le", "+Inf"), ("method", "Choose")))] == 5
    assert after[("offerbandit_decisions", ())] == 5
    assert after[("offerbandit_open_windows", ())] == 5
    assert after[("offerbandit_outcomes", (("status", "attributed"),))] == 1
    assert after[("offerbandit_outcomes", (("status", "unattributed"),))] == 2
    version = measured.service.model_version
    assert after[("offerbandit_model_info", (("version", version),))] == 1
    assert after[("offerbandit_model_age_seconds", ())] >= 0


def test_refused_calls_are_counted_with_their_status(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    reader = add_token(tokens, "reader", ["read"])
    running = start_server(
        Settings.load(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path / "data",
            metrics_port=0,
            tokens_file=tokens,
        )
    )
    try:
        with OfferBanditClient(running.address, token=reader) as c:
            c.stats()
            with pytest.raises(grpc.RpcError):
                c.choose(customer(), trigger(), OFFERS, CHANNELS)
        with OfferBanditClient(running.address, token="") as c, pytest.raises(grpc.RpcError):
            c.stats()
        rpc = "offerbandit_rpc_total"
        after = scrape_after(
            running,
            (rpc, (("code", "UNAUTHENTICATED"), ("method", "GetStats"))),
            (rpc, (("code", "PERMISSION_DENIED"), ("method", "Choose"))),
        )
    finally:
        running.stop(grace=1.0)
    assert after[(rpc, (("code", "OK"), ("method", "GetStats")))] == 1
    assert after[(rpc, (("code", "PERMISSION_DENIED"), ("method", "Choose")))] == 1
    assert after[(rpc, (("code", "UNAUTHENTICATED"), ("method", "GetStats")))] == 1
    assert after[("offerbandit_decisions", ())] == 0


def test_no_metrics_unless_asked(tmp_path: Path) -> None:
    running = start_server(Settings.load(host="127.0.0.1", port=0, data_dir=tmp_path / "d"))
    try:
        assert running.metrics is None
    finally:
        running.stop(grace=1.0)


def test_policy_removals_are_counted_per_rule(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[[cap]]\nname = 'weekly'\nmax = 1\ndays = 7\n"
        "[[validity]]\nname = 'expired'\noffer = 'content'\nend = 2000-01-01T00:00:00Z\n"
    )
    running = start_server(
        Settings.load(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path / "data",
            metrics_port=0,
            contact_policy=policy,
            event_id_prefix="00000000000000f3",
        )
    )
    try:
        with OfferBanditClient(running.address) as c:
            answers = [c.choose(customer("same"), trigger(), OFFERS, CHANNELS) for _ in range(40)]
        removed: dict[str, int] = {}
        for a in answers:  # what the answers say each rule removed
            for r in running.service.get_decision(a.event_id).decision.removed:
                removed[r[1]] = removed.get(r[1], 0) + 1
        after = scrape(running)
    finally:
        running.stop(grace=1.0)
    name = "offerbandit_policy_removals_total"
    assert removed["weekly"] > 0  # a contact was made, then the cap removed the rest
    assert removed["expired"] > 0
    assert {k[1][0][1]: v for k, v in after.items() if k[0] == name} == removed
