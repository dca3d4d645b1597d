"""Contact policies over real gRPC: each rule, concurrency (caps and budgets), history across
a restart, the removals in GetDecision and GetStats, reloading, and refusing a bad file."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from bandit.contact import PolicyError
from bandit.service import ManualClock
from bandit.types import TreatmentRef
from server.app import RunningServer, start_server
from server.client import OfferBanditClient
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger

CAP_ONE = """
[[cap]]
name = "one a week"
max = 1
days = 7
"""

# 2026-03-02 21:30 UTC = 22:30 in Berlin (CET): inside 21:00–08:00 there, not in New York.
NIGHT_IN_BERLIN = 1_772_487_000.0


class Servers:
    """Real servers with a policy file; all stopped at the end of the test."""

    def __init__(self, tmp: Path, log: str = "") -> None:
        self.tmp = tmp
        self.log = log
        self.started: list[RunningServer] = []
        self.policy = tmp / "policy.toml"
        self.starts = 0

    def start(
        self, policy: str | None, clock: ManualClock | None = None, **overrides: Any
    ) -> tuple[RunningServer, Settings]:
        if policy is not None:
            self.policy.write_text(policy)
        overrides.setdefault("data_dir", self.tmp / "data")
        overrides.setdefault("log", self.log)
        self.starts += 1  # a fixed prefix per start: reproducible, never reused on one log
        overrides.setdefault("event_id_prefix", f"{self.starts:016x}")
        settings = Settings.load(
            host="127.0.0.1",
            port=0,
            policy="vw",
            exploration="--epsilon 0.5",
            control_share=0.05,
            contact_policy=self.policy if self.policy.exists() else "",
            **overrides,
        )
        running = start_server(settings, clock)
        self.started.append(running)
        return running, settings

    def stop_all(self) -> None:
        for r in self.started:
            r.stop(grace=1.0)
        self.started.clear()


@pytest.fixture
def servers(tmp_path: Path, log_url: str) -> Iterator[Servers]:
    """On each log backend."""
    s = Servers(tmp_path, log_url)
    yield s
    s.stop_all()


def _concurrently(n: int, call: Any) -> list[Any]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def _removed(d: pb.Decision) -> set[tuple[str, str, str]]:
    return {(r.treatment.offer_id, r.treatment.channel_id, r.rule) for r in d.removed}


def test_two_concurrent_chooses_cannot_both_pass_a_cap_of_one(servers: Servers) -> None:
    running, _ = servers.start(CAP_ONE)
    with OfferBanditClient(running.address) as client:
        answers = _concurrently(
            24, lambda i: client.choose(customer("c1"), trigger(), OFFERS, CHANNELS)
        )
        contacts = [a for a in answers if a.chosen.offer_id]
        assert len(contacts) == 1  # 24 calls in flight together, one contact
        every = {(o.id, c.id) for o in OFFERS for c in CHANNELS}
        digest = ""
        for a in answers:
            logged = client.get_decision(a.event_id)
            digest = digest or logged.contact_policy
            assert logged.contact_policy == digest != ""
            assert math.isclose(sum(logged.pmf), 1.0, abs_tol=1e-12)
            assert logged.propensity == logged.pmf[logged.chosen_index]
            kept = {(t.offer.id, t.channel.id) for t in logged.treatments if not t.control}
            gone = {(o, c) for o, c, _ in _removed(logged)}
            assert kept | gone == every
            assert not kept & gone
            assert {rule for *_, rule in _removed(logged)} <= {"one a week"}
            if a.event_id != contacts[0].event_id and gone:
                assert [s.control for s in a.ranking] == [True]  # control with certainty
        stats = client.stats()
        removed = sum(len(client.get_decision(a.event_id).removed) for a in answers)
        assert stats.removals == {"one a week": removed}
        assert removed >= 6 * 22
        assert stats.contact_policy == digest
        # another customer is not capped
        other = client.choose(customer("c2"), trigger(), OFFERS, CHANNELS)
        assert len(client.get_decision(other.event_id).removed) == 0


def test_the_contact_history_survives_a_restart(servers: Servers) -> None:
    running, _ = servers.start(CAP_ONE)
    with OfferBanditClient(running.address) as client:
        for _ in range(40):
            a = client.choose(customer("c9"), trigger(), OFFERS, CHANNELS)
            if a.chosen.offer_id:
                break
        assert a.chosen.offer_id
    servers.stop_all()
    running, _ = servers.start(None)  # same file, same log
    with OfferBanditClient(running.address) as client:
        again = client.get_decision(
            client.choose(customer("c9"), trigger(), OFFERS, CHANNELS).event_id
        )
        assert len(again.removed) == len(OFFERS) * len(CHANNELS)
        assert [t.control for t in again.treatments] == [True]


def test_suppression_after_an_unsubscribe_on_its_channel(servers: Servers) -> None:
    policy = """
[[suppression]]
name = "unsubscribed"
outcomes = ["unsubscribe"]
scope = "channel"
days = 0
"""
    running, _ = servers.start(policy)
    with OfferBanditClient(running.address) as client:
        email = [TreatmentRef("content", "email")]
        for _ in range(40):
            a = client.choose(customer("c3"), trigger(), OFFERS, CHANNELS, treatments=email)
            if a.chosen.offer_id:
                break
        assert a.chosen.channel_id == "email"
        client.record_outcome("o1", event_id=a.event_id, type="unsubscribe", revenue=0.0)
        after = client.get_decision(
            client.choose(customer("c3"), trigger(), OFFERS, CHANNELS).event_id
        )
        assert {(o, c) for o, c, _ in _removed(after)} == {(o.id, "email") for o in OFFERS}
        assert {r for *_, r in _removed(after)} == {"unsubscribed"}
        assert {t.channel.id for t in after.treatments if not t.control} == {"sms"}
        # an unsubscribe naming only the customer (no decision, so no channel): every channel
        client.record_outcome("o2", customer_id="c4", type="unsubscribe", revenue=0.0)
        c4 = client.get_decision(
            client.choose(customer("c4"), trigger(), OFFERS, CHANNELS).event_id
        )
        assert len(c4.removed) == 6


def test_quiet_hours_in_the_customers_time_zone(servers: Servers) -> None:
    policy = """
[[quiet_hours]]
name = "no sms at night"
channel = "sms"
start = "21:00"
end = "08:00"
"""
    clock = ManualClock(NIGHT_IN_BERLIN)
    running, _ = servers.start(policy, clock)
    with OfferBanditClient(running.address) as client:
        berlin = client.get_decision(
            client.choose(
                customer("c5", time_zone="Europe/Berlin"), trigger(), OFFERS, CHANNELS
            ).event_id
        )
        assert {r for *_, r in _removed(berlin)} == {"no sms at night"}
        assert {c for _, c, _ in _removed(berlin)} == {"sms"}
        york = client.get_decision(
            client.choose(
                customer("c6", time_zone="America/New_York"), trigger(), OFFERS, CHANNELS
            ).event_id
        )
        assert len(york.removed) == 0  # 16:30 there
        with pytest.raises(grpc.RpcError) as err:
            client.choose(customer("c7", time_zone="Mars/Olympus"), trigger(), OFFERS, CHANNELS)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "customer.features.time_zone" in (err.value.details() or "")
        assert "Mars/Olympus" in (err.value.details() or "")


def test_offer_validity(servers: Servers) -> None:
    policy = """
[[validity]]
name = "black friday only"
offer = "discount_10"
start = 2026-11-27T00:00:00+01:00
end = 2026-11-30T00:00:00+01:00
"""
    clock = ManualClock(NIGHT_IN_BERLIN)
    running, _ = servers.start(policy, clock)
    with OfferBanditClient(running.address) as client:
        before = client.get_decision(
            client.choose(customer(), trigger(), OFFERS, CHANNELS).event_id
        )
        assert _removed(before) == {
            ("discount_10", "email", "black friday only"),
            ("discount_10", "sms", "black friday only"),
        }
        clock.set(1_795_824_000.0)  # 2026-11-28 00:00 UTC
        during = client.get_decision(
            client.choose(customer(), trigger(), OFFERS, CHANNELS).event_id
        )
        assert len(during.removed) == 0


def test_a_count_budget_is_never_overspent_by_concurrent_chooses(servers: Servers) -> None:
    policy = """
[[budget]]
name = "three coupons"
offer = "discount_10"
count = 3
"""
    only = [TreatmentRef("discount_10", "email")]
    running, _ = servers.start(policy)
    with OfferBanditClient(running.address) as client:

        def one(i: int) -> Any:
            return client.choose(customer(f"b{i}"), trigger(), OFFERS, CHANNELS, treatments=only)

        answers = _concurrently(40, one)
        assert sum(1 for a in answers if a.chosen.offer_id) == 3
        spent = [a for a in answers if client.get_decision(a.event_id).removed]
        assert client.stats().removals == {"three coupons": len(spent)}
        assert all(not a.chosen.offer_id for a in spent)
    servers.stop_all()
    running, _ = servers.start(None)  # the coupons stay spent after a restart
    with OfferBanditClient(running.address) as client:
        a = client.choose(customer("b99"), trigger(), OFFERS, CHANNELS, treatments=only)
        assert _removed(client.get_decision(a.event_id)) == {
            ("discount_10", "email", "three coupons")
        }


def test_a_money_budget_stops_the_offer_once_its_costs_are_charged(servers: Servers) -> None:
    policy = """
[[budget]]
name = "shipping money"
offer = "free_shipping"
money = 6.0
"""
    only = [TreatmentRef("free_shipping", "email")]
    running, _ = servers.start(policy)
    with OfferBanditClient(running.address) as client:
        charged = 0
        for i in range(200):
            a = client.choose(customer(f"m{i}"), trigger(), OFFERS, CHANNELS, treatments=only)
            logged = client.get_decision(a.event_id)
            if charged >= 2:
                assert _removed(logged) == {("free_shipping", "email", "shipping money")}
                break
            assert len(logged.removed) == 0
            if a.chosen.offer_id:  # redeemed: 4.0 of fixed cost charged
                client.record_outcome(f"buy{i}", event_id=a.event_id, type="purchase", revenue=30.0)
                charged += 1
        assert charged == 2


def test_reload_refuses_a_bad_file_and_keeps_the_running_policy(servers: Servers) -> None:
    running, settings = servers.start(CAP_ONE)
    with OfferBanditClient(running.address) as client:
        first = client.stats().contact_policy
        servers.policy.write_text('[[cap]]\nmax = "one"\ndays = 7\n')
        assert not running.reload_contact_policy(settings)
        assert client.stats().contact_policy == first
        d = client.get_decision(client.choose(customer(), trigger(), OFFERS, CHANNELS).event_id)
        assert d.contact_policy == first
        servers.policy.write_text(CAP_ONE.replace("max = 1", "max = 2"))
        assert running.reload_contact_policy(settings)
        second = client.stats().contact_policy
        assert second not in ("", first)
        d = client.get_decision(client.choose(customer(), trigger(), OFFERS, CHANNELS).event_id)
        assert d.contact_policy == second


def test_a_bad_policy_file_refuses_the_start(servers: Servers) -> None:
    with pytest.raises(PolicyError, match=r"cap\[0\]\.max"):
        servers.start("[[cap]]\nmax = -1\ndays = 7\n")


def test_a_deferred_decision_is_a_contact_from_its_activation(servers: Servers) -> None:
    running, _ = servers.start(CAP_ONE)
    with OfferBanditClient(running.address) as client:
        for _ in range(40):
            deferred = client.choose(
                customer("d1"), trigger(), OFFERS, CHANNELS, defer_activation=True
            )
            if deferred.chosen.offer_id:
                break
        assert deferred.chosen.offer_id
        # deferred too, so never a contact itself: only the activation below can cap `after`
        before = client.choose(customer("d1"), trigger(), OFFERS, CHANNELS, defer_activation=True)
        assert len(client.get_decision(before.event_id).removed) == 0  # not a contact yet
        client.activate(deferred.event_id)
        after = client.choose(customer("d1"), trigger(), OFFERS, CHANNELS)
        assert {r for *_, r in _removed(client.get_decision(after.event_id))} == {"one a week"}
        assert len(client.get_decision(after.event_id).removed) == 6
