"""The contact policy in the Choose path, in process (no sockets): a contact queued on the log
but not committed counts, the policy's removals reach the logged decision, and the pmf is over
what was kept."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bandit.contact import ContactPolicy
from bandit.eligibility import ChooseInput
from bandit.errors import InvalidRequest, InvalidState, UnknownEvent
from bandit.records import Activation, ActivationInput
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, Trigger

OFFERS = (Offer("a"), Offer("b"))
CHANNELS = (Channel("email"), Channel("sms"))
CAP_ONE = "[[cap]]\nname = 'once'\nmax = 1\ndays = 7\n"


def _service(tmp_path: Path, policy: str | None) -> DecisionService:
    svc = DecisionService(
        ServiceConfig(
            data_dir=tmp_path,
            policy="vw",
            exploration="--epsilon 0.5",
            background=False,
            event_id_prefix="00000000000000c1",
            contact_policy=None if policy is None else ContactPolicy.parse(policy),
        ),
        ManualClock(1_800_000_000.0),
    )
    svc.start()
    return svc


def _req(cid: str = "c1", **features: str) -> ChooseInput:
    return ChooseInput(Customer(cid, features), Trigger("login"), OFFERS, CHANNELS)


def test_a_contact_still_queued_on_the_log_counts(tmp_path: Path) -> None:
    svc = _service(tmp_path, CAP_ONE)
    try:
        for _ in range(50):
            first, commit = svc.submit_choice(_req(), hold=True)
            assert commit is not None
            if not first.is_control:
                break
            commit.commit_here()
        assert not first.is_control
        assert not commit.done  # queued, not written: the log does not have it yet
        second, again = svc.submit_choice(_req(), hold=True)
        assert again is not None
        assert [t.is_control for t in second.treatments] == [True]
        assert second.pmf == (1.0,)
        assert {rule for _, rule in second.removed} == {"once"}
        assert len(second.removed) == 4
        assert second.contact_policy == svc.config.contact_policy.digest  # type: ignore[union-attr]
        commit.commit_here()
        again.commit_here()
        third = svc.choose(_req())  # from the log now
        assert len(third.removed) == 4
        logged = svc.get_decision(third.event_id).decision
        assert logged.removed == third.removed
        assert logged.contact_policy == third.contact_policy
        assert svc.stats().removals == {"once": 8}
        other = svc.choose(_req("c2"))
        assert other.removed == ()
        assert math.isclose(sum(other.pmf), 1.0)
    finally:
        svc.stop()


def test_an_unknown_time_zone_is_refused_naming_the_field(tmp_path: Path) -> None:
    svc = _service(tmp_path, CAP_ONE)
    try:
        with pytest.raises(InvalidRequest, match=r"customer\.features\.time_zone: unknown"):
            svc.choose(_req(time_zone="Nowhere/Else"))
        assert svc.stats().log.decisions == 0
        assert svc.choose(_req(time_zone="Asia/Tokyo")).contact_policy  # the lock was let go
    finally:
        svc.stop()


def test_without_a_policy_nothing_changes_and_reload_is_refused(tmp_path: Path) -> None:
    svc = _service(tmp_path, None)
    try:
        d = svc.choose(_req())
        assert (d.removed, d.contact_policy) == ((), "")
        with pytest.raises(InvalidState, match="contact_policy"):
            svc.reload_contact_policy(ContactPolicy.parse(CAP_ONE))
    finally:
        svc.stop()


def test_the_log_head_under_a_policy_is_what_the_encoder_writes() -> None:
    from bandit.logcodec import _dumps, _head, decode_head, encode_head, pack_pmf
    from bandit.types import CONTROL_TREATMENT, Context, Decision, TreatmentRef

    for removed in ((), ((TreatmentRef("a", "sms"), "quiet"),)):
        d = Decision(
            "e1",
            Context(Customer("c"), Trigger("t")),
            (CONTROL_TREATMENT,),
            (1.0,),
            0,
            "v0",
            "p",
            1.0,
            removed=removed,
            contact_policy="abc123",
        )
        text = encode_head(d)
        assert text == _dumps(_head(d, with_pmf=False))
        back = decode_head(text, d.treatments, pack_pmf(d.pmf))
        assert (back.removed, back.contact_policy) == (removed, "abc123")


_CACHE_POLICY = """
[[cap]]
name = "two in three days"
max = 2
days = 3
[[cap]]
name = "one sms a day"
channel = "sms"
max = 1
days = 1
[[repeat]]
name = "no repeat"
days = 2
"""


def _cached_run(
    tmp_path: Path, cache: int, bulk: bool = False
) -> list[tuple[str, str, tuple[str, ...]]]:
    """400 Chooses for 12 customers over ~12 days, a fifth deferred and most of those
    activated a few hours later (one by one, or with ``bulk`` those due together in one
    :meth:`~DecisionService.activate_many`): each decision's choice and what the policy
    removed."""
    clock = ManualClock(1_800_000_000.0)
    svc = DecisionService(
        ServiceConfig(
            data_dir=tmp_path,
            policy="vw",
            exploration="--epsilon 0.5",
            seed=3,
            background=False,
            event_id_prefix="00000000000000c2",
            contact_policy=ContactPolicy.parse(_CACHE_POLICY),
            contact_cache_customers=cache,
        ),
        clock,
    )
    svc.start()
    out: list[tuple[str, str, tuple[str, ...]]] = []
    deferred: list[tuple[str, float]] = []
    try:
        for i in range(400):
            clock.set(1_800_000_000.0 + i * 2600.0)
            due = [x for x in deferred if x[1] <= clock.now()]
            for x in due:
                deferred.remove(x)
            if i % 3 and bulk:
                results = svc.activate_many([ActivationInput(e) for e, _ in due])
                assert all(isinstance(r, Activation) for r in results)
            elif i % 3:
                for event_id, _ in due:
                    svc.activate(event_id)
            d = svc.choose(
                ChooseInput(
                    Customer(f"c{(i * 7) % 12}"),
                    Trigger("login"),
                    OFFERS,
                    CHANNELS,
                    defer_activation=i % 5 == 0,
                )
            )
            if i % 5 == 0:
                deferred.append((d.event_id, clock.now() + 3 * 3600.0))
            stored = svc.log.get(d.event_id)
            removed = tuple(sorted(f"{t.key}:{rule}" for t, rule in stored.decision.removed))
            out.append((d.event_id, d.chosen_treatment.ref.key, removed))
        if cache:
            assert 0 < len(svc.contact._recent) <= cache  # type: ignore[union-attr]
    finally:
        svc.stop()
    return out


@pytest.mark.parametrize("cache", [5, 100_000])
def test_cached_contacts_decide_exactly_as_reading_the_log(tmp_path: Path, cache: int) -> None:
    """The per-customer cache (made contacts added, activations dropping the entry, renewal
    after a look-back, a bound smaller than the customers) removes exactly what reading the
    log every time removes — decision by decision, with the same draws."""
    uncached = _cached_run(tmp_path / "off", 0)
    cached = _cached_run(tmp_path / "on", cache)
    assert cached == uncached
    removed = [r for _, _, r in uncached if r]
    assert len(removed) > 50  # the caps bite, so the comparison means something
    assert any("two in three days" in x for r in removed for x in r)
    assert any("one sms a day" in x for r in removed for x in r)


def test_bulk_activations_drop_cached_contacts_as_unary_ones_do(tmp_path: Path) -> None:
    """The run above with the due activations made in batches: the cache (5 customers, and
    unbounded) decides exactly as reading the log every time with one-by-one activations."""
    uncached = _cached_run(tmp_path / "off", 0)
    for cache in (5, 100_000):
        assert _cached_run(tmp_path / f"bulk{cache}", cache, bulk=True) == uncached


def test_a_bulk_activation_drops_its_customers_cached_entries(tmp_path: Path) -> None:
    svc = _service(tmp_path, CAP_ONE)
    gate = svc.contact
    assert gate is not None
    try:
        for c in ("a", "b", "c"):  # a contact each: the gate then caches their history
            for _ in range(50):
                if not svc.choose(_req(c)).is_control:
                    break
        ds = [
            svc.choose(
                ChooseInput(Customer(c), Trigger("login"), OFFERS, CHANNELS, defer_activation=True)
            )
            for c in ("a", "b", "c")
        ]
        assert {"a", "b", "c"} <= set(gate._recent)  # cached at their second Choose
        results = svc.activate_many(
            [
                ActivationInput(ds[0].event_id),
                ActivationInput("nope"),
                ActivationInput(ds[2].event_id),
            ]
        )
        assert [type(r) for r in results] == [Activation, UnknownEvent, Activation]
        assert set(gate._recent) & {"a", "b", "c"} == {"b"}  # refused: b's entry stays
    finally:
        svc.stop()
